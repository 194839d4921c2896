package behaviors

import "github.com/faultbox/faultbox/internal/units"

// Duplicate sends a copy of each packet with probability p, as netem's
// `duplicate`. The copy is the packet as it is at this point of the chain,
// leaving at its departure so far; behaviors after this one change and
// delay only the original.
type Duplicate struct {
	P units.Probability `param:"p" help:"the probability that a packet is sent twice (required)"`
}

func (d *Duplicate) Validate() error {
	if d.P == 0 {
		return Errorf("p", "is required: the probability that a packet is duplicated")
	}
	return nil
}

// PerSegment: a copy stands for one wire packet.
func (d *Duplicate) PerSegment() bool { return true }

func (d *Duplicate) Handle(p *Packet) Verdict {
	if !chance(p, d.P) {
		return Pass
	}
	// The copy leaves without the original's offload state, so its
	// checksums must be complete: fix them in a copy (the original's may
	// be a partial sum the kernel was to finish).
	if n := len(p.Buf); n <= len(p.scratch) {
		c := *p.Parsed
		c.Buf = p.scratch[:n]
		copy(c.Buf, p.Buf)
		c.FixChecksums()
		p.Inject(c.Buf, p.Depart, "duplicate")
		return Pass
	}
	p.Inject(p.Buf, p.Depart, "duplicate")
	return Pass
}

func init() {
	Register("duplicate", "send a copy of some packets", func() Behavior { return &Duplicate{} })
}
