package report

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/faultbox/faultbox/internal/packet"
)

// ICMPError is what an ICMP or ICMPv6 error message says: its type and
// code, the MTU of a "fragmentation needed" or "packet too big", and the
// ends of the packet it quotes, so that the ladder draws it with that
// packet's connection.
type ICMPError struct {
	Type, Code uint8
	MTU        int            // next-hop MTU (type 3 code 4, ICMPv6 type 2); 0 otherwise
	Src, Dst   netip.AddrPort // of the quoted packet
	Proto      uint8          // of the quoted packet
}

// TooBig reports a "fragmentation needed" or "packet too big": the
// messages path MTU discovery lives on.
func (e *ICMPError) TooBig() bool { return e.MTU > 0 }

// String names the message as the ladder labels it.
func (e *ICMPError) String() string {
	switch {
	case e.TooBig() && e.Src.Addr().Is4():
		return fmt.Sprintf("frag needed, mtu %d", e.MTU)
	case e.TooBig():
		return fmt.Sprintf("packet too big, mtu %d", e.MTU)
	}
	return fmt.Sprintf("type %d code %d", e.Type, e.Code)
}

// parseICMPError reads the ICMP error in p (decoded from b); nil for any
// other packet, or one whose quote does not hold the quoted packet's IP
// header and ports. The quote is usually cut short (576 bytes for IPv4),
// so its IP length fields are not trusted.
func parseICMPError(p *packet.Parsed) *ICMPError {
	if p.Malformed != packet.OK || p.L4Off+8 > len(p.Buf) {
		return nil
	}
	l4 := p.Buf[p.L4Off:]
	e := &ICMPError{Type: l4[0], Code: l4[1]}
	switch {
	case p.Proto == packet.ProtoICMP && p.Version == 4:
		if e.Type != 3 && e.Type != 4 && e.Type != 5 && e.Type != 11 && e.Type != 12 {
			return nil
		}
		if e.Type == 3 && e.Code == 4 {
			e.MTU = int(binary.BigEndian.Uint16(l4[6:8]))
		}
	case p.Proto == packet.ProtoICMPv6 && p.Version == 6:
		if e.Type < 1 || e.Type > 4 {
			return nil
		}
		if e.Type == 2 {
			e.MTU = int(binary.BigEndian.Uint32(l4[4:8]))
		}
	default:
		return nil
	}
	q := l4[8:]
	var ports []byte
	switch {
	case len(q) >= 20 && q[0]>>4 == 4:
		hl := int(q[0]&0x0f) * 4
		if hl < 20 || len(q) < hl+4 {
			return nil
		}
		e.Proto = q[9]
		e.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(q[12:16])), 0)
		e.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(q[16:20])), 0)
		ports = q[hl : hl+4]
	case len(q) >= 44 && q[0]>>4 == 6: // no extension headers: what TCP and UDP send
		e.Proto = q[6]
		e.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(q[8:24])), 0)
		e.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(q[24:40])), 0)
		ports = q[40:44]
	default:
		return nil
	}
	if e.Proto == packet.ProtoTCP || e.Proto == packet.ProtoUDP {
		e.Src = netip.AddrPortFrom(e.Src.Addr(), binary.BigEndian.Uint16(ports[0:2]))
		e.Dst = netip.AddrPortFrom(e.Dst.Addr(), binary.BigEndian.Uint16(ports[2:4]))
	}
	return e
}
