package behaviors

import "github.com/faultbox/faultbox/internal/units"

// Corrupt flips one random bit in the payload of some packets (probability
// p). Packets without payload and IP fragments pass untouched: flipping a
// header bit would be another fault (a different port, flag or address),
// and a fragment's checksum covers bytes this packet does not hold.
//
// checksum says what the receiver sees:
//   - incorrect (default, like netem): the checksums are left wrong, so the
//     receiver's stack drops the packet and TCP retransmits it;
//   - correct: the checksums are recomputed, so the corruption reaches the
//     application, as behind a middlebox that rewrites packets.
type Corrupt struct {
	P        units.Probability `param:"p" help:"the probability that a packet with payload gets one bit flipped (required)"`
	Checksum string            `param:"checksum" values:"incorrect|correct" default:"incorrect" help:"incorrect: checksums left wrong, so the receiver drops the packet; correct: recomputed, so the corruption reaches the application"`

	correct bool
}

func (c *Corrupt) Validate() error {
	switch c.Checksum {
	case "", "incorrect":
		c.correct = false
	case "correct":
		c.correct = true
	default:
		return Errorf("checksum", "%q is not correct or incorrect", c.Checksum)
	}
	if c.P == 0 {
		return Errorf("p", "is required: the probability that a packet is corrupted")
	}
	return nil
}

// PerSegment: the bit is flipped in one wire packet, with its own checksum.
func (c *Corrupt) PerSegment() bool { return true }

func (c *Corrupt) Handle(p *Packet) Verdict {
	pl := p.Payload()
	if len(pl) == 0 || p.Fragment || !chance(p, c.P) {
		return Pass
	}
	if !c.correct {
		// Start from correct checksums (one read from TUN may hold only
		// the pseudo-header sum the kernel was to finish), so that exactly
		// the flipped bit makes them wrong.
		p.FixChecksums()
	}
	bit := p.Rand.IntN(len(pl) * 8)
	pl[bit/8] ^= 1 << (bit % 8)
	if c.correct {
		p.MarkModified() // the engine fixes the checksums
	} else {
		p.KeepChecksums()
	}
	p.Note = "corrupt: bit flipped"
	return Pass
}

func init() {
	Register("corrupt", "flip a random payload bit, with checksums left wrong or recomputed", func() Behavior { return &Corrupt{} })
}
