package behaviors

import (
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/units"
)

// HandshakeDrop drops handshake segments: registered as "syn-drop" (the
// client's SYN), "synack-drop" (the server's SYN-ACK) and "ack-drop" (the
// client's bare ACK completing the handshake, or with all_bare_acks any
// bare ACK). It drops the first count such segments of each flow (0: all),
// each with probability (0: always), which reproduces SYN-ACK retransmit
// timelines and the lost bare ACKs of TCP_DEFER_ACCEPT
// (docs/field-failures.md#juniper-dx-defer-accept).
//
//	behaviors:
//	  - type: synack-drop
//	    count: 5
type HandshakeDrop struct {
	Count       int               `param:"count" unit:"segments" help:"drop only the first count such segments of each flow; 0: no limit"`
	Probability units.Probability `param:"probability" help:"the probability that each such segment is dropped; 0: every one"`
	AllBareACKs bool              `param:"all_bare_acks" help:"ack-drop only: drop every bare ACK the client sends, not only the one completing the handshake"`

	kind    handshakeSeg
	note    string
	dropped uint64
}

type handshakeSeg uint8

const (
	segSYN handshakeSeg = iota
	segSYNACK
	segACK
)

type handshakeFlow struct{ seen int }

func (h *HandshakeDrop) Validate() error {
	if h.Count < 0 {
		return Errorf("count", "%d is negative", h.Count)
	}
	if h.AllBareACKs && h.kind != segACK {
		return Errorf("all_bare_acks", "is only used by ack-drop")
	}
	return nil
}

// PerSegment: one decision per handshake segment.
func (*HandshakeDrop) PerSegment() bool { return true }

func (h *HandshakeDrop) Handle(p *Packet) Verdict {
	if !p.IsTCP() || !h.selects(p) {
		return Pass
	}
	if h.Count > 0 {
		st := FlowState[handshakeFlow](p)
		if st == nil || st.seen >= h.Count {
			return Pass
		}
		st.seen++
	}
	if h.Probability > 0 && !chance(p, h.Probability) {
		return Pass
	}
	h.dropped++
	p.Note = h.note
	return Drop
}

func (h *HandshakeDrop) selects(p *Packet) bool {
	switch h.kind {
	case segSYN:
		return p.Flags&(packet.SYN|packet.ACK) == packet.SYN
	case segSYNACK:
		return p.Flags&(packet.SYN|packet.ACK) == packet.SYN|packet.ACK
	}
	if !isBareACK(p) {
		return false
	}
	if h.AllBareACKs {
		return true
	}
	// The handshake ACK (and its repeats for retransmitted SYN-ACKs)
	// acknowledges exactly the server's SYN.
	srv := &p.Flow.Ends[flow.Server]
	return p.From == flow.Client && srv.SawSYN && p.Ack == srv.ISN+1
}

// isBareACK reports a TCP segment with ACK as its only control flag
// (PSH, URG, ECE, CWR aside) and no payload.
func isBareACK(p *Packet) bool {
	return p.Flags&(packet.SYN|packet.FIN|packet.RST|packet.ACK) == packet.ACK && p.PayloadLen() == 0
}

func (h *HandshakeDrop) Stats() map[string]uint64 { return map[string]uint64{"dropped": h.dropped} }

func init() {
	Register("syn-drop", "drop the client's SYNs (the first count per flow, or with a probability)",
		func() Behavior { return &HandshakeDrop{kind: segSYN, note: "syn-drop: dropped"} })
	Register("synack-drop", "drop the server's SYN-ACKs (the first count per flow, or with a probability)",
		func() Behavior { return &HandshakeDrop{kind: segSYNACK, note: "synack-drop: dropped"} })
	Register("ack-drop", "drop the client's bare handshake ACKs (or all bare ACKs), the first count per flow or with a probability",
		func() Behavior { return &HandshakeDrop{kind: segACK, note: "ack-drop: dropped"} })
}
