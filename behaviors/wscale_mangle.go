package behaviors

import (
	"strings"

	"github.com/faultbox/faultbox/internal/packet"
)

// WScaleMangle (registered as "wscale-mangle") rewrites or strips the
// window scale option (RFC 7323) of one handshake segment, as the routers
// and firewalls did that broke Linux when 2.6.17 raised its default scale:
// they set the shift to 0 and left the option in place. The peers then
// disagree on the scale:
//
//   - mode rewrite, on syn-ack (the default, shift 0): the client reads
//     every window the server advertises unscaled, 2^shift times too
//     small, and sends toward the server in trickles (its uploads stall);
//     the other direction is unharmed;
//   - mode strip, on syn-ack: the client sees no option and turns scaling
//     off both ways; the server, which saw the client's option, still
//     scales, so it also reads the client's unscaled windows as 2^shift
//     times larger and overruns them;
//   - on syn: the same with the roles swapped (downloads stall).
//
// The option's bytes are rewritten in place (stripping writes NOPs), so
// the segment keeps its length.
type WScaleMangle struct {
	On    string `param:"on" values:"syn-ack|syn" default:"syn-ack" help:"the handshake segment whose window scale option the box mangles"`
	Mode  string `param:"mode" values:"rewrite|strip" default:"rewrite" help:"rewrite: set the option's shift to shift and leave it in place; strip: overwrite the option with NOPs"`
	Shift int    `param:"shift" help:"the shift mode rewrite writes, 0 to 14 (0: what the routers that broke Linux 2.6.17 wrote)"`

	want  packet.TCPFlags // SYN and ACK bits of the segment to mangle
	strip bool

	mangled, absent uint64
}

func (w *WScaleMangle) Validate() error {
	switch strings.ToLower(w.On) {
	case "", "syn-ack":
		w.want = packet.SYN | packet.ACK
	case "syn":
		w.want = packet.SYN
	default:
		return Errorf("on", "%q is not syn-ack or syn", w.On)
	}
	switch strings.ToLower(w.Mode) {
	case "", "rewrite":
		w.strip = false
	case "strip":
		w.strip = true
	default:
		return Errorf("mode", "%q is not rewrite or strip", w.Mode)
	}
	if w.Shift < 0 || w.Shift > 14 {
		return Errorf("shift", "%d is out of range 0-14 (RFC 7323 section 2.3)", w.Shift)
	}
	return nil
}

func (w *WScaleMangle) Handle(p *Packet) Verdict {
	if !p.IsTCP() || p.Flags&(packet.SYN|packet.ACK) != w.want {
		return Pass
	}
	off, n, ok := p.TCPOption(packet.OptWindowScale)
	if !ok || n != 3 {
		w.absent++
		return Pass
	}
	if w.strip {
		p.Buf[off], p.Buf[off+1], p.Buf[off+2] = packet.OptNOP, packet.OptNOP, packet.OptNOP
		p.Note = "wscale-mangle: window scale option stripped"
	} else {
		p.Buf[off+2] = uint8(w.Shift)
		p.Note = "wscale-mangle: window scale rewritten"
	}
	p.MarkModified()
	w.mangled++
	return Pass
}

func (w *WScaleMangle) Stats() map[string]uint64 {
	return map[string]uint64{"mangled": w.mangled, "without_option": w.absent}
}

func init() {
	Register("wscale-mangle", "rewrite (default: shift 0) or strip the window scale option of the SYN-ACK (or SYN): the peers disagree on the scale",
		func() Behavior { return &WScaleMangle{On: "syn-ack", Mode: "rewrite"} })
}
