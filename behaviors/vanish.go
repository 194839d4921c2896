package behaviors

import (
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// Vanish (registered as "vanish") makes the client disappear from a flow
// after a trigger: the dial-up user who hangs up, the buggy browser of the
// FIN_WAIT_2 report (docs/field-failures.md#fin-wait-2). From then on
// nothing from the client reaches the server; the server's packets still
// reach the client unless also_server is set.
//
// The default trigger, client-acked-server-fin, fires on the client's ACK
// of the server's FIN. That ACK passes, so the server moves to FIN_WAIT_2
// and waits there for a FIN that never comes; a FIN the client piggybacks on
// that same ACK is stripped. With trigger: server-fin the client's ACK is
// lost too and the server stays in FIN_WAIT_1, retransmitting its FIN.
//
//	behaviors:
//	  - type: vanish
//	    trigger: client-acked-server-fin
type Vanish struct {
	Trigger
	AlsoServer bool `param:"also_server" help:"black-hole the server's packets to the client too"`

	flowsVanished, dropped, finsStripped uint64
}

type vanishFlow struct{ trig TriggerState }

func (v *Vanish) Validate() error { return v.Trigger.Validate() }

// PerSegment: the trigger reads the exact ACK of each segment.
func (*Vanish) PerSegment() bool { return true }

func (v *Vanish) Handle(p *Packet) Verdict {
	st := FlowState[vanishFlow](p)
	if st == nil {
		return Pass
	}
	if v.Trigger.Fires(p, &st.trig) {
		v.flowsVanished++
		p.Event("vanish: client gone")
		if v.kind == trigClientAckedServerFIN && p.From == flow.Client && p.Flags&packet.FIN != 0 {
			stripFIN(p) // the ACK arrives, the FIN never does
			v.finsStripped++
		}
		return Pass
	}
	if !st.trig.Fired() || (p.From == flow.Server && !v.AlsoServer) {
		return Pass
	}
	v.dropped++
	p.Note = "vanish: black-holed"
	return Drop
}

func (v *Vanish) Stats() map[string]uint64 {
	return map[string]uint64{"flows_vanished": v.flowsVanished, "dropped": v.dropped, "fins_stripped": v.finsStripped}
}

func (v *Vanish) Waiting() Wait { return v.Trigger.wait(v.flowsVanished) }

func init() {
	Register("vanish", "after a trigger (default: client ACKed the server's FIN), drop everything the client sends",
		func() Behavior { return &Vanish{Trigger: Trigger{Kind: "client-acked-server-fin"}} })
}
