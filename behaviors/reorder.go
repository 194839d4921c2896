package behaviors

import (
	"time"

	"github.com/faultbox/faultbox/internal/units"
)

// Reorder holds back some packets so that the packets behind them overtake:
// each packet (or, with gap n, every n-th packet of its direction) is
// chosen with probability p and leaves `delay` later than it would have.
//
// netem's `reorder` works the other way round (chosen packets skip a delay
// the others get); holding the chosen one back does not slow the rest of
// the link. Put it after delay and rate in a profile: a delay without
// `reorder: true` or a rate placed after it would queue the overtaking
// packets behind the held one again.
type Reorder struct {
	P     units.Probability `param:"p" help:"the probability that a candidate packet is held back (required)"`
	Delay time.Duration     `param:"delay" help:"how much later a chosen packet leaves (required)"`
	Gap   int               `param:"gap" unit:"packets" help:"only every gap-th packet of its direction is a candidate; 0: every packet"`

	count [2]int // packets since the last candidate, per direction
}

func (r *Reorder) Validate() error {
	switch {
	case r.P == 0:
		return Errorf("p", "is required: the probability that a packet is held back")
	case r.Delay <= 0:
		return Errorf("delay", "must be positive: how long a chosen packet is held back")
	case r.Gap < 0:
		return Errorf("gap", "must not be negative")
	}
	return nil
}

// PerSegment: reordering is a property of wire packets.
func (r *Reorder) PerSegment() bool { return true }

func (r *Reorder) Handle(p *Packet) Verdict {
	if r.Gap > 1 {
		i := dir(p)
		if r.count[i]++; r.count[i] < r.Gap {
			return Pass
		}
		r.count[i] = 0
	}
	if chance(p, r.P) {
		p.Depart += int64(r.Delay)
	}
	return Pass
}

func init() {
	Register("reorder", "hold back some packets so that later ones overtake them", func() Behavior { return &Reorder{} })
}
