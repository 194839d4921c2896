package behaviors

import "github.com/faultbox/faultbox/internal/units"

// Helpers shared by the link-shaping behaviors (delay, rate, loss, reorder,
// duplicate, corrupt, outage, trace). A shaping behavior emulates one link,
// not one connection, so its state lives in the behavior, one copy per
// direction, instead of in FlowState. The engine runs a chain's behaviors
// from one goroutine, which is what lets this state go without a lock.

// dir is the index of p's direction in per-direction state: 0 upstream
// (from the connection's initiator), 1 downstream. Packets without a flow
// count as upstream, as they do for Match.
func dir(p *Packet) int {
	if p.Upstream() {
		return 0
	}
	return 1
}

// holdUntil moves p's departure to t if t is later; behaviors never move a
// departure earlier.
func holdUntil(p *Packet, t int64) {
	if t > p.Depart {
		p.Depart = t
	}
}

// chance draws an event of probability q from the behavior's own source. It
// draws nothing when q is 0 or 1, so a disabled knob does not shift the
// random sequence of the others.
func chance(p *Packet, q units.Probability) bool {
	switch {
	case q <= 0:
		return false
	case q >= 1:
		return true
	}
	return p.Rand.Float64() < float64(q)
}

// epoch is the time origin of a schedule (outage, trace): the arrival of
// the first packet the behavior sees. The engine clock's zero is not a
// meaningful instant, and a profile's "after 10s" means after traffic
// started.
type epoch struct {
	t   int64
	set bool
}

// rel returns the time p reaches the behavior (its Depart so far) relative
// to the origin, fixing the origin at p's arrival on first use.
func (e *epoch) rel(p *Packet) int64 {
	if !e.set {
		e.t, e.set = p.Now, true
	}
	return p.Depart - e.t
}
