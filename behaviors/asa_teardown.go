package behaviors

import (
	"fmt"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// ASATeardown (registered as "asa-teardown") is the Cisco ASA of the 2015
// report (docs/field-failures.md#cisco-asa-off-by-one-rst): when the
// client closes (FIN and/or RST), it forwards or swallows the FIN, sends
// the server one RST at the server's expected next sequence number +
// Offset, and then forgets the connection: every later packet of the flow,
// both ways, is dropped, the server's challenge ACKs and retransmissions
// included.
//
// "Expected next" is the server's RCV.NXT after what the device forwarded:
// a forwarded FIN counts (the report: FIN at 276, server ACKs 277, RST at
// 276 = RCV.NXT-1, the default); a swallowed one does not. Current Linux
// accepts exactly that RST in CLOSE_WAIT; other offsets, a swallowed FIN or
// older stacks leave the server socket stuck.
//
// The match must select both directions, or the forgetting is partial. Put
// delaying behaviors before this one in the chain: the RST departs just
// behind the FIN as it leaves this behavior.
type ASATeardown struct {
	On          []string      `param:"on" values:"fin|rst" help:"the client segments that tear the connection down"`
	FIN         string        `param:"fin" values:"forward|swallow" help:"what becomes of the client's FIN: passed to the server or dropped"`
	Offset      int           `param:"offset" unit:"sequence numbers" help:"added to the server's RCV.NXT to give the RST's sequence number, any sign (-1: the ASA's off-by-one)"`
	OffsetMode  string        `param:"offset_mode" values:"fixed|window" default:"fixed" help:"fixed: the RST at RCV.NXT+offset; window: at a random offset inside the server's receive window, never 0"`
	RSTToClient bool          `param:"rst_to_client" help:"also reset the client, at its exact RCV.NXT"`
	ForgetFor   time.Duration `param:"forget_for" help:"how long the flow's packets are dropped after the teardown, ending at the first packet after it; 0: until a new SYN on the same tuple"`

	onFIN, onRST, swallow, window bool

	rstInjected, finSwallowed, droppedAfterForget, challengeACKsDropped uint64
	clientFINs, clientRSTs                                              uint64 // closes seen (Waiting)
}

type asaFlow struct {
	torn bool
	at   int64 // when the flow was torn down
}

func (a *ASATeardown) Validate() error {
	a.onFIN, a.onRST = false, false
	if len(a.On) == 0 {
		return Errorf("on", "needs at least one of fin, rst")
	}
	for _, s := range a.On {
		switch strings.ToLower(s) {
		case "fin":
			a.onFIN = true
		case "rst":
			a.onRST = true
		default:
			return Errorf("on", "%q is not fin or rst", s)
		}
	}
	switch strings.ToLower(a.FIN) {
	case "", "forward":
		a.swallow = false
	case "swallow":
		a.swallow = true
	default:
		return Errorf("fin", "%q is not forward or swallow", a.FIN)
	}
	switch strings.ToLower(a.OffsetMode) {
	case "", "fixed":
		a.window = false
	case "window":
		a.window = true
	default:
		return Errorf("offset_mode", "%q is not fixed or window", a.OffsetMode)
	}
	if a.ForgetFor < 0 {
		return Errorf("forget_for", "%v is negative", a.ForgetFor)
	}
	return nil
}

// PerSegment: the RST needs the exact sequence state of every segment.
func (*ASATeardown) PerSegment() bool { return true }

func (a *ASATeardown) Handle(p *Packet) Verdict {
	st := FlowState[asaFlow](p)
	if st == nil {
		return Pass
	}
	if st.torn {
		if p.From == flow.Client && p.Flags&(packet.SYN|packet.ACK) == packet.SYN {
			*st = asaFlow{} // a new connection on the same tuple
			return Pass
		}
		if a.ForgetFor > 0 && p.Now-st.at >= int64(a.ForgetFor) {
			return Pass
		}
		a.droppedAfterForget++
		p.Note = "asa-teardown: flow forgotten"
		// A challenge ACK (RFC 5961) carries the server's SND.NXT; a
		// zero-window or keepalive probe, also a bare ACK, one less.
		if p.From == flow.Server && isBareACK(p) && p.Seq == p.Flow.Ends[flow.Server].NextSeq {
			a.challengeACKsDropped++
			p.Note = "asa-teardown: challenge ACK dropped"
		}
		return Drop
	}
	if p.From != flow.Client {
		return Pass
	}
	if p.Flags&packet.RST != 0 {
		a.clientRSTs++
	} else if p.Flags&packet.FIN != 0 {
		a.clientFINs++
	}
	rst := a.onRST && p.Flags&packet.RST != 0
	fin := a.onFIN && p.Flags&packet.FIN != 0 && p.Flags&packet.RST == 0
	if !rst && !fin {
		return Pass
	}
	f := p.Flow
	// The flow table has counted p: the server's RCV.NXT includes the FIN.
	expected := f.ExpectedSeq(flow.Server)
	verdict := Pass
	switch {
	case rst:
		verdict = Drop // the client's own RST is replaced by the ASA's
		p.Note = "asa-teardown: client RST replaced"
	case a.swallow:
		a.finSwallowed++
		expected = f.Ends[flow.Client].FinSeq
		if p.PayloadLen() == 0 {
			verdict = Drop
			p.Note = "asa-teardown: FIN swallowed"
		} else { // the data goes through, the FIN does not
			stripFIN(p)
		}
	}
	depart := p.Depart
	if verdict == Pass {
		depart += rstGap // behind the FIN, never ahead of it
	}
	p.InjectTCP(flow.Client, expected+uint32(a.offset(p)), f.ExpectedSeq(flow.Client),
		packet.RST|packet.ACK, depart, "asa-teardown: rst to server")
	a.rstInjected++
	if a.RSTToClient {
		p.InjectTCP(flow.Server, f.ExpectedSeq(flow.Client), expected,
			packet.RST|packet.ACK, depart, "asa-teardown: rst to client")
		a.rstInjected++
	}
	st.torn, st.at = true, p.Now
	p.Event("asa-teardown: flow forgotten")
	return verdict
}

// offset returns the configured offset, or in window mode a random one
// inside the server's receive window but never 0: RFC 5961 stacks answer it
// with a challenge ACK instead of resetting.
func (a *ASATeardown) offset(p *Packet) int {
	if !a.window {
		return a.Offset
	}
	w := p.Flow.Ends[flow.Server].Window
	if w < 2 {
		return 1
	}
	return 1 + p.Rand.IntN(int(w-1))
}

func (a *ASATeardown) Stats() map[string]uint64 {
	return map[string]uint64{
		"rst_injected":           a.rstInjected,
		"fin_swallowed":          a.finSwallowed,
		"dropped_after_forget":   a.droppedAfterForget,
		"challenge_acks_dropped": a.challengeACKsDropped, // included in dropped_after_forget
	}
}

func (a *ASATeardown) Waiting() Wait {
	w := Wait{}
	switch {
	case a.onFIN && a.onRST:
		w.For, w.Seen = "client FINs or RSTs", a.clientFINs+a.clientRSTs
	case a.onRST:
		w.For, w.Seen = "client RSTs", a.clientRSTs
	default:
		w.For, w.Seen = "client FINs", a.clientFINs
	}
	switch {
	case w.Seen > 0:
	case a.onFIN && a.clientRSTs > 0:
		w.Note = fmt.Sprintf("%s came instead: a client that closes with unread data, "+
			"like a cancelled download, sends a RST, not a FIN; on: [fin, rst] acts on both", count(a.clientRSTs, "client RST"))
	default:
		w.Note = "it acts only when the client closes the connection"
	}
	return w
}

func init() {
	Register("asa-teardown", "Cisco ASA close: FIN, one RST at the server's RCV.NXT+offset (default -1), then forget the flow",
		func() Behavior { return &ASATeardown{On: []string{"fin"}, FIN: "forward", Offset: -1} })
}
