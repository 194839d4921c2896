package behaviors

import (
	"encoding/binary"
	"strings"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// SeqRandomize (registered as "seq-randomize") is a firewall's TCP
// sequence number randomization, on by default on Cisco ASA and Firepower
// threat defense devices: it adds a per-flow offset to every sequence
// number one side (side) sends and takes it off every acknowledgment
// number the other side sends, so that the two ends never see each
// other's real sequence numbers yet agree on everything. Everything, that
// is, but what the box does not translate: with rewrite_sack false (the
// failure, Cisco: "TCP sequence randomization effectively breaks TCP
// SACK") the SACK blocks of the other side's ACKs stay in the randomized
// space, so the randomized side receives blocks far outside its window
// whenever the other side reports a loss. rewrite_sack true translates
// them too, as a box that does it right.
//
// The offset is drawn per flow from the run's seed when the client's SYN
// passes (offset fixes it instead; 1 to a few thousand puts the stale
// blocks inside the window, over the wrong bytes). Flows whose SYN the
// behavior did not see pass untouched. Match both directions.
//
// The engine's flow table reads the packets before behaviors do, so it
// sees the randomized side's sequence numbers unshifted and the other
// side's ACKs shifted: behaviors after this one in the chain that reason
// about acknowledgments (asa-teardown, idle-timeout RSTs) would mix the
// two spaces. Give them flows of their own.
type SeqRandomize struct {
	Side        string `param:"side" values:"server|client" default:"server" help:"whose sequence numbers the box offsets; the other side's acknowledgment numbers are translated back"`
	RewriteSACK bool   `param:"rewrite_sack" help:"translate the SACK blocks of the other side's ACKs too, as a box that does it right; false leaves them in the randomized space"`
	Offset      uint32 `param:"offset" unit:"sequence numbers" help:"the offset of every flow; 0: drawn per flow from the run's seed (a small one puts the stale SACK blocks inside the window)"`

	randomized flow.Side

	flows, sackLeft, sackRewritten uint64
}

type seqFlow struct {
	active bool
	isn    uint32 // the client's ISN, to tell its SYN's retransmissions from a new connection
	offset uint32
}

func (s *SeqRandomize) Validate() error {
	switch strings.ToLower(s.Side) {
	case "", "server":
		s.randomized = flow.Server
	case "client":
		s.randomized = flow.Client
	default:
		return Errorf("side", "%q is not server or client", s.Side)
	}
	return nil
}

func (s *SeqRandomize) Handle(p *Packet) Verdict {
	st := FlowState[seqFlow](p)
	if st == nil {
		return Pass
	}
	if p.From == flow.Client && p.Flags&(packet.SYN|packet.ACK) == packet.SYN && (!st.active || st.isn != p.Seq) {
		st.active, st.isn, st.offset = true, p.Seq, s.Offset
		for st.offset == 0 {
			st.offset = p.Rand.Uint32()
		}
		s.flows++
		p.Event("seq-randomize: flow's sequence numbers offset")
	}
	if !st.active {
		return Pass
	}
	tcp := p.Buf[p.L4Off:]
	if p.From == s.randomized {
		p.Seq += st.offset
		binary.BigEndian.PutUint32(tcp[4:8], p.Seq)
		p.MarkModified()
		return Pass
	}
	if p.Flags&packet.ACK == 0 {
		return Pass
	}
	p.Ack -= st.offset
	binary.BigEndian.PutUint32(tcp[8:12], p.Ack)
	p.MarkModified()
	off, n, ok := p.TCPOption(packet.OptSACK)
	if !ok {
		return Pass
	}
	if !s.RewriteSACK {
		s.sackLeft++
		p.Note = "seq-randomize: SACK blocks left in the randomized space"
		return Pass
	}
	// Each block is a left and a right edge of 4 bytes; a truncated last
	// block is left as it is, as a receiver ignores it.
	for b := off + 2; b+8 <= off+n; b += 8 {
		for _, e := range [2]int{b, b + 4} {
			binary.BigEndian.PutUint32(p.Buf[e:], binary.BigEndian.Uint32(p.Buf[e:])-st.offset)
		}
	}
	s.sackRewritten++
	p.Note = "seq-randomize: SACK blocks translated"
	return Pass
}

func (s *SeqRandomize) Stats() map[string]uint64 {
	return map[string]uint64{"flows": s.flows, "sack_left": s.sackLeft, "sack_rewritten": s.sackRewritten}
}

func init() {
	Register("seq-randomize", "TCP sequence number randomization (Cisco ASA): offset one side's SEQ and the other's ACK per flow, SACK blocks left as they are unless rewrite_sack",
		func() Behavior { return &SeqRandomize{Side: "server"} })
}
