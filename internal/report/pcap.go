package report

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/faultbox/faultbox/internal/packet"
)

// Packet is one packet as the device handled it, rebuilt from a capture
// written by internal/capture: the inbound record of its arrival on the
// sender's port paired with the outbound record of its departure on the
// receiver's port. The capture's conventions, which this relies on:
//   - a packet that passes has an inbound record without a comment and an
//     outbound record, whose comment says "delayed 20ms", "NOTE (held 20ms)"
//     or what a behavior changed;
//   - a packet a behavior dropped has only an inbound record, whose
//     comment says why ("dropped by syn-drop");
//   - a packet a behavior injected has only an outbound record, whose
//     comment starts with "injected: ".
type Packet struct {
	From, To string    // port (lab host) names; From is "" when injected
	In, Out  time.Time // arrival and departure; zero when not seen
	Injected bool
	Dropped  bool
	Delayed  bool
	Modified bool   // left different from how it arrived
	Note     string // capture comments; "injected: " removed

	Proto    uint8
	Src, Dst netip.AddrPort
	Flags    packet.TCPFlags
	Seq, Ack uint32
	Window   uint16
	Len      int // TCP/UDP payload bytes; the IP packet's length otherwise
	Size     int // the IP packet's length, as on the wire
	ICMPType uint8
	ICMP     *ICMPError // what an ICMP error says and quotes; nil for other packets

	ipID  uint16 // IPv4 identification, to pair records of one packet
	order int    // index of its first record in the file
}

// When is the first time the device saw the packet.
func (p *Packet) When() time.Time {
	if p.In.IsZero() {
		return p.Out
	}
	return p.In
}

// Mark highlights p in the ladder with note.
func (p *Packet) Mark(note string) Mark {
	return Mark{Src: p.Src, Dst: p.Dst, At: p.When(), Note: note}
}

// Capture is a capture file read back as packets.
type Capture struct {
	Ports     []string // interface names, in file order
	Packets   []Packet // selected packets in the order the device first saw them
	Records   int      // records read
	Truncated bool     // stopped at maxCapturePackets
}

// maxCapturePackets bounds the packets kept in memory from one capture.
const maxCapturePackets = 1 << 20

const injectedPrefix = "injected: "

type tupleKey struct {
	src, dst netip.AddrPort
	proto    uint8
}

// ReadCapture reads a pcapng file and pairs its records into packets,
// keeping those f selects.
func ReadCapture(path string, f Filter) (*Capture, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	defer fh.Close()
	r, err := pcapgo.NewNgReader(fh, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", path, err)
	}
	c := &Capture{}
	pending := map[tupleKey][]int{} // packets seen arriving, not yet leaving
	var parsed packet.Parsed
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c, fmt.Errorf("capture %s: record %d: %w", path, c.Records+1, err)
		}
		c.Records++
		for len(c.Ports) < r.NInterfaces() {
			intf, _ := r.Interface(len(c.Ports))
			c.Ports = append(c.Ports, intf.Name)
		}
		parsed.Decode(data)
		if parsed.Version == 0 {
			continue
		}
		p := recordPacket(&parsed, data, c.Records)
		if !f.match(&p) {
			continue
		}
		port := ""
		if ci.InterfaceIndex < len(c.Ports) {
			port = c.Ports[ci.InterfaceIndex]
		}
		if !c.add(p, port, ci.Timestamp, opts, pending) {
			break
		}
	}
	c.finish(pending)
	return c, nil
}

// recordPacket is what one record's headers say of its packet; order is
// the record's number in the file.
func recordPacket(parsed *packet.Parsed, data []byte, order int) Packet {
	p := Packet{Proto: parsed.Proto, Flags: parsed.Flags, Seq: parsed.Seq, Ack: parsed.Ack,
		Window: parsed.Window, Len: len(parsed.Buf), Size: len(parsed.Buf), ICMPType: parsed.ICMPType, order: order}
	p.Src = netip.AddrPortFrom(parsed.Src, parsed.SrcPort)
	p.Dst = netip.AddrPortFrom(parsed.Dst, parsed.DstPort)
	if parsed.HasPorts {
		p.Len = parsed.PayloadLen()
	}
	if parsed.Proto == packet.ProtoICMP || parsed.Proto == packet.ProtoICMPv6 {
		p.ICMP = parseICMPError(parsed)
	}
	if parsed.Version == 4 && len(data) >= 6 {
		p.ipID = binary.BigEndian.Uint16(data[4:6])
	}
	return p
}

// add takes in one record of packet p on port at ts: an arrival (pending
// until its departure, or dropped), an injection, or the departure of a
// packet that arrived earlier. It reports false when the capture is full.
func (c *Capture) add(p Packet, port string, ts time.Time, opts pcapgo.NgPacketOptions, pending map[tupleKey][]int) bool {
	note := strings.Join(opts.Comments, "; ")
	key := tupleKey{p.Src, p.Dst, p.Proto}
	egress := opts.Flags != nil && opts.Flags.Direction == pcapgo.NgEpbFlagDirectionOutbound
	switch {
	case !egress: // arrival; unknown direction counts as arrival
		p.From, p.In, p.Note = port, ts, note
		if note != "" { // only drops annotate an arrival
			p.Dropped = true
		} else {
			pending[key] = append(pending[key], len(c.Packets))
		}
	case strings.HasPrefix(note, injectedPrefix):
		p.To, p.Out, p.Injected = port, ts, true
		p.Note = strings.TrimPrefix(note, injectedPrefix)
		p.Delayed = strings.Contains(p.Note, "(held ")
	default:
		if i, ok := takePending(pending, key, &p, c.Packets); ok {
			c.Packets[i].depart(port, ts, note, &p)
			return true
		}
		p.To, p.Out, p.Note = port, ts, note // departure of a packet never seen arriving
	}
	if len(c.Packets) >= maxCapturePackets {
		c.Truncated = true
		return false
	}
	c.Packets = append(c.Packets, p)
	return true
}

// finish marks the packets never seen leaving as dropped and puts every
// packet in the order the device first saw them.
func (c *Capture) finish(pending map[tupleKey][]int) {
	for _, idx := range pending {
		for _, i := range idx {
			c.Packets[i].Dropped = true
			c.Packets[i].Note = "not seen leaving the device before the capture ended"
		}
	}
	slices.SortStableFunc(c.Packets, func(a, b Packet) int {
		if d := a.When().Compare(b.When()); d != 0 {
			return d
		}
		// The device records what it injects in answer to a packet before
		// that packet's arrival; at one instant the arrival comes first.
		if a.Injected != b.Injected {
			if a.Injected {
				return 1
			}
			return -1
		}
		return a.order - b.order
	})
}

// takePending finds the arrival that departure out belongs to: the oldest
// pending packet of its tuple with the same header, else (a behavior
// changed it) the oldest of its tuple.
func takePending(pending map[tupleKey][]int, key tupleKey, out *Packet, pkts []Packet) (int, bool) {
	idx := pending[key]
	if len(idx) == 0 {
		return 0, false
	}
	at := 0
	for j, i := range idx {
		in := &pkts[i]
		if in.Seq == out.Seq && in.Ack == out.Ack && in.Flags == out.Flags && in.Len == out.Len && in.ipID == out.ipID {
			at = j
			break
		}
	}
	i := idx[at]
	pending[key] = slices.Delete(idx, at, at+1)
	return i, true
}

// depart completes an arrival with its departure record.
func (p *Packet) depart(port string, at time.Time, note string, out *Packet) {
	p.To, p.Out = port, at
	if out.Seq != p.Seq || out.Ack != p.Ack || out.Flags != p.Flags || out.Len != p.Len || out.Window != p.Window {
		// Show what the receiver got.
		p.Modified = true
		p.Seq, p.Ack, p.Flags, p.Len, p.Window = out.Seq, out.Ack, out.Flags, out.Len, out.Window
	}
	if note == "" {
		return
	}
	p.Note = note
	if strings.HasPrefix(note, "delayed ") || strings.Contains(note, "(held ") {
		p.Delayed = true
	} else {
		p.Modified = true
	}
}

// match reports whether f selects p. An ICMP error is selected with the
// packet it quotes.
func (f *Filter) match(p *Packet) bool {
	src, dst, proto := p.Src, p.Dst, p.Proto
	if p.ICMP != nil {
		src, dst, proto = p.ICMP.Src, p.ICMP.Dst, p.ICMP.Proto
	}
	if len(f.Ports) == 0 && len(f.Conns) == 0 {
		return proto == packet.ProtoTCP || proto == packet.ProtoUDP
	}
	for _, port := range f.Ports {
		if src.Port() == port || dst.Port() == port {
			return true
		}
	}
	for _, c := range f.Conns {
		if (SameEnd(src, c.A) && SameEnd(dst, c.B)) || (SameEnd(src, c.B) && SameEnd(dst, c.A)) {
			return true
		}
	}
	return false
}

// Between reports whether p goes between a and b, in either direction.
func (p *Packet) Between(a, b netip.AddrPort) bool {
	return (SameEnd(p.Src, a) && SameEnd(p.Dst, b)) || (SameEnd(p.Src, b) && SameEnd(p.Dst, a))
}

// SameEnd compares endpoints, ignoring IPv4-mapped IPv6 spelling.
func SameEnd(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}
