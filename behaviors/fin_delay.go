package behaviors

import (
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// FINDelay (registered as "fin-delay") holds FIN segments for Delay before
// forwarding them; the direction comes from the match. Nothing else is
// held, so a later segment, a RST in particular, overtakes the FIN. Toward
// the client this widens the keep-alive race
// (docs/field-failures.md#elb-keepalive-race): the client reuses a
// connection the server has already closed; a server that closes fully
// answers the request with a RST, which arrives before the late FIN
// (ECONNRESET instead of EOF). A server with a lingering close, Apache's,
// sends no RST: the client reads EOF when the FIN arrives.
//
//	behaviors:
//	  - type: fin-delay
//	    match: {direction: downstream, tcp_flags: [fin]}
//	    delay: 20ms
type FINDelay struct {
	Delay time.Duration `param:"delay" help:"how long each FIN is held (required); everything else passes at once"`

	finsDelayed uint64
}

func (d *FINDelay) Validate() error {
	if d.Delay <= 0 {
		return Errorf("delay", "is required and must be positive")
	}
	return nil
}

// PerSegment: only the FIN is held, not the data it may be coalesced with.
func (*FINDelay) PerSegment() bool { return true }

func (d *FINDelay) Handle(p *Packet) Verdict {
	if p.IsTCP() && p.Flags&packet.FIN != 0 {
		p.Depart += int64(d.Delay)
		d.finsDelayed++
	}
	return Pass
}

func (d *FINDelay) Stats() map[string]uint64 { return map[string]uint64{"fins_delayed": d.finsDelayed} }

func (d *FINDelay) Waiting() Wait { return Wait{For: "FINs", Seen: d.finsDelayed} }

func init() {
	Register("fin-delay", "hold FINs for a delay; everything else (RSTs too) passes at once and overtakes them",
		func() Behavior { return &FINDelay{} })
}
