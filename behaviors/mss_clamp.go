package behaviors

import (
	"encoding/binary"

	"github.com/faultbox/faultbox/internal/packet"
)

// MSSClamp (registered as "mss-clamp") lowers the MSS option of the SYNs
// and SYN-ACKs it sees, as routers and firewalls in front of a narrower
// link do (iptables TCPMSS --set-mss / --clamp-mss-to-pmtu, Cisco
// "ip tcp adjust-mss"): both ends then send segments that fit, whatever
// ICMP does. Give mss (one value for both IP versions) or mtu (the MSS is
// mtu minus 40 for IPv4, minus 60 for IPv6: the IP and TCP headers without
// options, as clamp-mss-to-pmtu does). An MSS at or below the clamp stays;
// a SYN without the option is left alone (the peer then assumes 536 over
// IPv4 and 1220 over IPv6, RFC 9293, below any clamp worth setting).
//
//	behaviors:
//	  - type: mss-clamp
//	    mtu: 1400
type MSSClamp struct {
	MSS int `param:"mss" unit:"bytes" help:"the largest MSS a SYN or SYN-ACK may announce, both IP versions (or give mtu)"`
	MTU int `param:"mtu" unit:"bytes" help:"the link MTU to clamp for: MSS mtu-40 over IPv4, mtu-60 over IPv6 (or give mss)"`

	mss4, mss6       uint16
	clamped, checked uint64
}

func (c *MSSClamp) Validate() error {
	switch {
	case c.MSS != 0 && c.MTU != 0:
		return Errorf("mtu", "give mss or mtu, not both")
	case c.MSS != 0:
		if c.MSS < 88 || c.MSS > 65495 {
			return Errorf("mss", "%d is out of range 88-65495", c.MSS)
		}
		c.mss4, c.mss6 = uint16(c.MSS), uint16(c.MSS)
	case c.MTU != 0:
		if c.MTU < MinMTU6 || c.MTU > 65535 {
			return Errorf("mtu", "%d is out of range %d-65535", c.MTU, MinMTU6)
		}
		c.mss4, c.mss6 = uint16(c.MTU-40), uint16(c.MTU-60)
	default:
		return Errorf("mss", "is required: the largest MSS to let through (or mtu, to derive it per IP version)")
	}
	return nil
}

func (c *MSSClamp) Handle(p *Packet) Verdict {
	if !p.IsTCP() || p.Flags&packet.SYN == 0 {
		return Pass
	}
	limit := c.mss4
	if p.Version == 6 {
		limit = c.mss6
	}
	off, n, ok := p.TCPOption(packet.OptMSS)
	if !ok || n != 4 {
		return Pass
	}
	opt := p.Buf[off+2 : off+4]
	c.checked++
	if binary.BigEndian.Uint16(opt) <= limit {
		return Pass
	}
	binary.BigEndian.PutUint16(opt, limit)
	p.MarkModified()
	p.Note = "mss-clamp: MSS lowered"
	c.clamped++
	return Pass
}

func (c *MSSClamp) Stats() map[string]uint64 {
	return map[string]uint64{"syns_with_mss": c.checked, "clamped": c.clamped}
}

func init() {
	Register("mss-clamp", "lower the MSS option of SYNs and SYN-ACKs to mss (or to fit mtu), as routers in front of a narrower link do",
		func() Behavior { return &MSSClamp{} })
}
