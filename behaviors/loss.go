package behaviors

import "github.com/faultbox/faultbox/internal/units"

// Loss drops packets at random, independently (model bernoulli, the
// default: each packet is lost with probability p) or in bursts (model
// gilbert-elliott, netem's `loss gemodel p r 1-h 1-k`).
//
// The Gilbert-Elliott model has two states per direction, Good and Bad.
// In the Good state a packet is lost with probability k, in the Bad state
// with probability h; after each packet the state changes from Good to Bad
// with probability p and from Bad to Good with probability r. The keys are
// named after the fields of netem's gemodel, whose values are loss
// probabilities:
//
//	p  Good -> Bad        netem's 1st gemodel argument, p
//	r  Bad -> Good        2nd, r;    0 or unset means 1-p, as netem
//	h  loss in Bad        3rd, written 1-h in tc-netem(8); default 1
//	k  loss in Good       4th, written 1-k in tc-netem(8); default 0
//
// With the defaults (h 1, k 0) it is the simple Gilbert model: loss bursts
// last 1/r packets on average, the loss rate is p/(p+r).
//
// Only the packets the match selects count, so `match: {tcp_flags:
// [bare-ack]}` loses bare ACKs and leaves the model's state untouched by
// data segments.
type Loss struct {
	Model string            `param:"model" values:"bernoulli|gilbert-elliott" default:"bernoulli" help:"bernoulli: each packet lost on its own with probability p; gilbert-elliott: loss in bursts (netem's gemodel)"`
	P     units.Probability `param:"p" help:"bernoulli: the loss probability; gilbert-elliott: the probability of moving from Good to Bad"`
	R     units.Probability `param:"r" help:"gilbert-elliott: the probability of moving from Bad to Good; 0: 1-p"`
	H     units.Probability `param:"h" help:"gilbert-elliott: the loss probability in Bad (netem writes 1-h)"`
	K     units.Probability `param:"k" help:"gilbert-elliott: the loss probability in Good (netem writes 1-k)"`

	ge  bool
	r   units.Probability // R, or 1-P
	bad [2]bool           // Gilbert-Elliott state per direction
}

func (l *Loss) Validate() error {
	switch l.Model {
	case "", "bernoulli":
		l.ge = false
		if l.R != 0 || l.K != 0 || l.H != 1 {
			return Errorf("model", "r, h and k belong to model gilbert-elliott")
		}
	case "gilbert-elliott", "gemodel":
		l.ge = true
		l.r = l.R
		if l.r == 0 {
			l.r = 1 - l.P
		}
	default:
		return Errorf("model", "%q is not bernoulli or gilbert-elliott", l.Model)
	}
	return nil
}

// PerSegment: losses count wire packets.
func (l *Loss) PerSegment() bool { return true }

func (l *Loss) Handle(p *Packet) Verdict {
	if !l.ge {
		if chance(p, l.P) {
			return Drop
		}
		return Pass
	}
	i := dir(p)
	loss, leave := l.K, l.P
	if l.bad[i] {
		loss, leave = l.H, l.r
	}
	lost := chance(p, loss)
	if chance(p, leave) {
		l.bad[i] = !l.bad[i]
	}
	if lost {
		return Drop
	}
	return Pass
}

func init() {
	Register("loss", "random packet loss, Bernoulli or Gilbert-Elliott bursts (netem gemodel), per direction", func() Behavior { return &Loss{H: 1} })
}
