// Package behaviors holds the faults faultbox can apply, one per file, each
// registered by name, and the small contract between them and the engine.
//
// A behavior sees each packet that its match selects, with the packet's flow
// and direction, and returns a verdict: Pass (possibly later, by moving
// Depart, or modified in place) or Drop. It may also inject packets it
// synthesizes. See README.md in this folder for how to write one.
package behaviors

import (
	"math/rand/v2"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// Verdict is what happens to a packet after a behavior has seen it.
type Verdict uint8

const (
	Pass Verdict = iota // forward (at Depart, possibly modified)
	Drop                // discard; later behaviors do not see it
)

// Behavior is one fault in a profile's chain.
type Behavior interface {
	Handle(p *Packet) Verdict
}

// PerSegment is implemented by behaviors that must see every TCP segment as
// the endpoints sent it (sequence-exact or per-packet decisions). The
// engine splits offloaded super-packets only for flows such a behavior
// matches; everything else keeps the fast path.
type PerSegment interface {
	PerSegment() bool
}

// Validator is implemented by behaviors whose parameters have constraints
// beyond their types. A returned *FieldError names the offending parameter.
type Validator interface {
	Validate() error
}

// Stats is implemented by behaviors with counters of their own; the engine
// adds them to `lab status`.
type Stats interface {
	Stats() map[string]uint64
}

// Env is what the engine offers a behavior beyond the packet: sending
// packets it synthesizes (routed by destination address and recorded in the
// capture) and recording events in the run's event log.
type Env interface {
	Inject(pkt []byte, depart int64, note string)
	// Event records that something happened to p (note must be a constant
	// or long-lived string: the log stores it without copying).
	Event(p *Packet, note string)
}

// Packet is one packet on its way through the chain, with everything a
// behavior may consult or change. It is reused; do not keep it.
type Packet struct {
	*packet.Parsed
	Flow   *flow.Flow // nil unless the packet is readable TCP
	From   flow.Side  // the side that sent it; Client means upstream
	Now    int64      // arrival time, ns on the engine clock
	Depart int64      // when it leaves; behaviors only move it later
	Rand   *rand.Rand // the current behavior's source, seeded from the run

	slot     *any   // the current behavior's per-flow state
	owner    uint32 // the current entry's id, which tags its per-flow state
	env      Env
	scratch  []byte
	counters *EntryCounters
	modified bool
	keepCsum bool
	Note     string // set by a behavior to annotate the capture
}

// Upstream reports whether the packet travels from the connection's
// initiator toward its peer.
func (p *Packet) Upstream() bool { return p.From == flow.Client }

// MarkModified records that a behavior changed the packet's bytes; the
// engine fixes checksums unless the behavior did so on purpose (corrupt).
func (p *Packet) MarkModified() { p.modified = true }

// KeepChecksums marks the packet modified with its checksums left as the
// behavior wrote them (corrupt uses it to send deliberately bad checksums).
func (p *Packet) KeepChecksums() { p.modified, p.keepCsum = true, true }

// KeepsChecksums reports whether the engine must leave checksums alone.
func (p *Packet) KeepsChecksums() bool { return p.keepCsum }

// Modified reports whether a behavior changed the packet.
func (p *Packet) Modified() bool { return p.modified }

// stripFIN clears the FIN flag of TCP segment p in place: its data and ACK
// go on, its FIN never arrives.
func stripFIN(p *Packet) {
	p.Buf[p.L4Off+13] &^= byte(packet.FIN) // the flags byte of the TCP header
	p.Flags &^= packet.FIN
	p.MarkModified()
}

// FlowState returns the current behavior's state for this packet's flow,
// zero on first use. It returns nil when there is no flow.
func FlowState[T any](p *Packet) *T {
	if p.slot == nil {
		return nil
	}
	inc := p.Flow.Incarnation
	if c, ok := (*p.slot).(*flowCell[T]); ok {
		if c.incarnation != inc || c.owner != p.owner { // left by an evicted flow or a removed entry: reuse its memory
			var zero T
			c.v, c.incarnation, c.owner = zero, inc, p.owner
		}
		return &c.v
	}
	c := &flowCell[T]{incarnation: inc, owner: p.owner}
	*p.slot = c
	return &c.v
}

// flowCell is a behavior's state for one flow, tagged with the flow
// incarnation and the chain entry it belongs to.
type flowCell[T any] struct {
	incarnation uint32
	owner       uint32
	v           T
}

// Inject sends a synthesized packet. pkt is copied.
func (p *Packet) Inject(pkt []byte, depart int64, note string) {
	if p.counters != nil {
		p.counters.Injected++
	}
	p.env.Inject(pkt, depart, note)
}

// InjectTCP synthesizes a segment of this packet's flow as if sent by side
// from, with correct checksums, and injects it at depart.
func (p *Packet) InjectTCP(from flow.Side, seq, ack uint32, flags packet.TCPFlags, depart int64, note string) {
	f := p.Flow
	if f == nil {
		return
	}
	n := packet.BuildTCP(p.scratch, packet.TCPSpec{
		Src: f.Addr(from), Dst: f.Addr(from.Other()),
		SrcPort: f.Port(from), DstPort: f.Port(from.Other()),
		Seq: seq, Ack: ack, Flags: flags,
	})
	if n > 0 {
		p.Inject(p.scratch[:n], depart, note)
	}
}

// Event records an event about this packet in the run's event log.
func (p *Packet) Event(note string) { p.env.Event(p, note) }

// Bind prepares p for the next behavior of the chain; the engine calls it.
func (p *Packet) Bind(r *rand.Rand, slot *any, env Env, scratch []byte) {
	p.Rand, p.slot, p.env, p.scratch = r, slot, env, scratch
}

// Reset clears the per-packet fields before a new packet; the engine calls it.
func (p *Packet) Reset(parsed *packet.Parsed, f *flow.Flow, from flow.Side, now int64) {
	*p = Packet{Parsed: parsed, Flow: f, From: from, Now: now, Depart: now}
}
