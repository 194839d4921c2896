package behaviors

import "github.com/faultbox/faultbox/internal/units"

// Discard (registered as "drop") discards the packets its match selects: all of them, the first Count
// of each flow, or each with Probability.
type Discard struct {
	Probability units.Probability `param:"probability" help:"the probability that a matched packet is dropped; 0: every one"`
	Count       int               `param:"count" unit:"packets" help:"drop only the first count matched packets of each flow; 0: no limit"`

	dropped uint64
}

type dropFlow struct{ n int }

func (d *Discard) Validate() error {
	if d.Count < 0 {
		return Errorf("count", "%d is negative", d.Count)
	}
	return nil
}

func (d *Discard) Handle(p *Packet) Verdict {
	if d.Count > 0 {
		if st := FlowState[dropFlow](p); st != nil {
			if st.n >= d.Count {
				return Pass
			}
			st.n++
		}
	}
	if d.Probability > 0 && !chance(p, d.Probability) {
		return Pass
	}
	d.dropped++
	return Drop
}

func (d *Discard) Stats() map[string]uint64 { return map[string]uint64{"dropped": d.dropped} }

func init() {
	Register("drop", "discard matched packets (all, the first count per flow, or with a probability)", func() Behavior { return &Discard{} })
}
