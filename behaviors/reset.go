package behaviors

import (
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// Reset (registered as "reset") tears a connection down with valid RSTs at
// a trigger, the way an IPS, a load balancer or a proxy gives up on a
// connection: after N bytes, at time T, on a regex in the first payload.
// The RSTs carry exactly the sequence number each receiver expects next
// (RFC 5961), so both kernels accept them. Afterwards the flow is left
// alone: the endpoints' own reactions (their RSTs) pass.
//
//	behaviors:
//	  - type: reset
//	    trigger: regex
//	    pattern: "^POST /upload"
//	    to: both
type Reset struct {
	Trigger
	To   string `param:"to" values:"client|server|both" default:"both" help:"which ends get the RSTs"`
	Drop bool   `param:"drop" help:"also drop the trigger packet, as an IPS drops the offending segment"`

	toClient, toServer bool
	flowsReset         uint64
	rstInjected        uint64
}

type resetFlow struct{ trig TriggerState }

func (r *Reset) Validate() error {
	if err := r.Trigger.Validate(); err != nil {
		return err
	}
	var err error
	r.toClient, r.toServer, err = parseSides("to", r.To)
	return err
}

// PerSegment: the RSTs need the exact sequence state of every segment.
func (*Reset) PerSegment() bool { return true }

func (r *Reset) Handle(p *Packet) Verdict {
	st := FlowState[resetFlow](p)
	if st == nil || !r.Trigger.Fires(p, &st.trig) {
		return Pass
	}
	r.flowsReset++
	depart := p.Depart + rstGap // just behind the trigger packet it follows
	if r.Drop {
		depart = p.Depart
	}
	if r.toServer {
		injectRST(p, flow.Server, r.Drop, depart, "reset: rst to server")
		r.rstInjected++
	}
	if r.toClient {
		injectRST(p, flow.Client, r.Drop, depart, "reset: rst to client")
		r.rstInjected++
	}
	p.Event("reset: flow reset")
	if r.Drop {
		p.Note = "reset: trigger packet dropped"
		return Drop
	}
	return Pass
}

func (r *Reset) Stats() map[string]uint64 {
	return map[string]uint64{"flows_reset": r.flowsReset, "rst_injected": r.rstInjected}
}

// rstGap separates an injected RST from the packet it must follow, so the
// engine's scheduler, which releases packets in Depart order, cannot let the
// RST overtake it.
const rstGap = int64(time.Microsecond)

// injectRST sends a RST toward side to, as if from its peer, with exactly
// the sequence number that side expects next (its RCV.NXT) and the ACK of
// what the peer has received. dropped says the current packet p will not
// be forwarded: the sequence space it occupies never reaches its receiver.
func injectRST(p *Packet, to flow.Side, dropped bool, depart int64, note string) {
	seq := rcvNxt(p, to, dropped)
	ack := rcvNxt(p, to.Other(), dropped)
	p.InjectTCP(to.Other(), seq, ack, packet.RST|packet.ACK, depart, note)
}

// rcvNxt is the sequence number side s expects next. The flow table has
// already counted p; when p is dropped and it was the newest segment toward
// s, s never saw it and still expects p.Seq. (A dropped retransmission of
// the newest segment is indistinguishable here and would be undercounted;
// behaviors that keep dropping freeze the value at their first drop.)
func rcvNxt(p *Packet, s flow.Side, dropped bool) uint32 {
	e := p.Flow.ExpectedSeq(s)
	if dropped && p.From != s {
		if n := p.SeqLen(); n > 0 && e == p.Seq+n {
			return p.Seq
		}
	}
	return e
}

// parseSides reads a client | server | both parameter ("" is both).
func parseSides(field, v string) (client, server bool, err error) {
	switch strings.ToLower(v) {
	case "", "both":
		return true, true, nil
	case "client":
		return true, false, nil
	case "server":
		return false, true, nil
	}
	return false, false, Errorf(field, "%q is not client, server or both", v)
}

func (r *Reset) Waiting() Wait { return r.Trigger.wait(r.flowsReset) }

func init() {
	Register("reset", "inject valid RSTs (to client, server or both) at a trigger: bytes, time, regex, ...",
		func() Behavior { return &Reset{} })
}
