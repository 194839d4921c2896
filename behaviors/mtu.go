package behaviors

import (
	"encoding/binary"
	"net/netip"
	"strings"

	"github.com/faultbox/faultbox/internal/packet"
)

// MTU (registered as "mtu") is a narrower link in the path: a packet
// longer than mtu bytes does not fit it. A router in front of such a link
// (RFC 1191, RFC 8201) drops an IPv4 packet with Don't Fragment set and
// answers "fragmentation needed" with the link's MTU, fragments an IPv4
// packet without DF, and drops every too-big IPv6 packet (routers never
// fragment IPv6) answering "packet too big". Path MTU discovery lives on
// those answers:
//
//   - icmp: filter (default) is the PMTUD black hole: the device sends no
//     answer and drops every "fragmentation needed" and "packet too big"
//     that passes it, as a firewall filtering ICMP does. Handshakes and
//     small requests work; the first full-sized segment never arrives.
//   - icmp: send is the working path: the device answers each dropped
//     packet like a Linux router does (one answer per packet: Linux does
//     not rate-limit PMTUD messages), from the router address of the
//     packet's IP version, quoting the packet (IPv4: up to 576 bytes in
//     all, RFC 1812; IPv6: up to 1280, RFC 4443).
//
// Sizes are judged per wire packet: the behavior sees every segment of an
// offloaded super-packet on its own (PerSegment), so a 64 KiB TSO burst
// of 1448-byte segments is 1500-byte packets here, as on the wire.
//
//	behaviors:
//	  - type: mtu
//	    mtu: 1400
//	    icmp: filter
type MTU struct {
	MTU    int      `param:"mtu" unit:"bytes" help:"the largest IP packet the link carries (68-65535; IPv6 packets of up to 1280 bytes always fit)"`
	ICMP   string   `param:"icmp" values:"filter|send" default:"filter" help:"filter: drop too-big packets without a word, and every ICMP fragmentation needed / packet too big passing through (the black hole); send: answer each like a router"`
	Router []string `param:"router" default:"198.18.0.254, 2001:db8::fe" help:"icmp send only: the source addresses of the answers, at most one IPv4 and one IPv6 (the router's own; the defaults belong to no lab host)"`

	send             bool
	router4, router6 netip.Addr
	ipID             uint16 // identification of the device's own IPv4 packets

	tooBig, icmpSent, icmpFiltered, fragmented, fragments uint64
}

// Link MTUs: every IPv4 host takes 68-byte datagrams (RFC 791); a link
// that carries IPv6 carries 1280-byte packets (RFC 8200), so an mtu below
// that narrows IPv4 only.
const (
	MinMTU4 = 68
	MinMTU6 = 1280
)

// The device's own addresses when router is not given: in the lab's
// prefixes, and no lab host's. A host takes a too-big message from any
// source; where reverse-path filtering is strict, give addresses routed
// back through the device.
var (
	defaultRouter4 = netip.MustParseAddr("198.18.0.254")
	defaultRouter6 = netip.MustParseAddr("2001:db8::fe")
)

// Quote limits: the whole ICMP error stays within these sizes.
const (
	icmp4QuoteLimit = 576  // RFC 1812 4.3.2.3
	icmp6QuoteLimit = 1280 // RFC 4443 2.4(c)
)

func (m *MTU) Validate() error {
	if m.MTU < MinMTU4 || m.MTU > 65535 {
		return Errorf("mtu", "%d is out of range %d-65535", m.MTU, MinMTU4)
	}
	switch strings.ToLower(m.ICMP) {
	case "", "filter":
		m.send = false
	case "send":
		m.send = true
	default:
		return Errorf("icmp", "%q is not filter or send", m.ICMP)
	}
	m.router4, m.router6 = netip.Addr{}, netip.Addr{}
	for _, s := range m.Router {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return Errorf("router", "%q is not an IP address", s)
		}
		a = a.Unmap()
		if a.Is4() {
			if m.router4.IsValid() {
				return Errorf("router", "two IPv4 addresses (%s, %s): give one per IP version", m.router4, a)
			}
			m.router4 = a
		} else {
			if m.router6.IsValid() {
				return Errorf("router", "two IPv6 addresses (%s, %s): give one per IP version", m.router6, a)
			}
			m.router6 = a
		}
	}
	if !m.send && len(m.Router) > 0 {
		return Errorf("router", "is only used with icmp: send")
	}
	if !m.router4.IsValid() {
		m.router4 = defaultRouter4
	}
	if !m.router6.IsValid() {
		m.router6 = defaultRouter6
	}
	return nil
}

// PerSegment: the size that matters is each wire packet's.
func (*MTU) PerSegment() bool { return true }

func (m *MTU) Handle(p *Packet) Verdict {
	if isTooBigMessage(p) && !m.send {
		m.icmpFiltered++
		p.Note = "mtu: ICMP too-big filtered"
		return Drop
	}
	limit := m.MTU
	if p.Version == 6 {
		limit = max(limit, MinMTU6)
	}
	if len(p.Buf) <= limit {
		return Pass
	}
	if p.Version == 4 && !dontFragment(p) {
		if m.fragment(p) {
			m.fragmented++
			p.Note = "mtu: fragmented"
			return Drop // its fragments were injected in its place
		}
	}
	m.tooBig++
	p.Note = "mtu: too big for the link"
	if m.send && m.answer(p) {
		m.icmpSent++
	}
	return Drop
}

// dontFragment reports an IPv4 packet's DF bit.
func dontFragment(p *Packet) bool { return p.Buf[6]&0x40 != 0 }

// isTooBigMessage reports an ICMP "fragmentation needed" (type 3 code 4)
// or ICMPv6 "packet too big" (type 2): the messages PMTUD depends on.
func isTooBigMessage(p *Packet) bool {
	if p.Malformed != packet.OK {
		return false
	}
	switch p.Proto {
	case packet.ProtoICMP:
		return p.Version == 4 && p.ICMPType == 3 && p.Buf[p.L4Off+1] == 4
	case packet.ProtoICMPv6:
		return p.Version == 6 && p.ICMPType == 2
	}
	return false
}

// isICMPError reports ICMP error messages, which are never answered with
// another (RFC 1122 3.2.2, RFC 4443 2.4(e)).
func isICMPError(p *Packet) bool {
	switch p.Proto {
	case packet.ProtoICMP:
		t := p.ICMPType
		return p.Malformed != packet.OK || t == 3 || t == 4 || t == 5 || t == 11 || t == 12
	case packet.ProtoICMPv6:
		return p.Malformed != packet.OK || p.ICMPType < 128
	}
	return false
}

// answer sends the too-big message for p, as a router would. It reports
// whether one was sent: never about an ICMP error or a non-first IPv4
// fragment (RFC 1812 4.3.2.7).
func (m *MTU) answer(p *Packet) bool {
	if isICMPError(p) || (p.Version == 4 && p.NonFirst) {
		return false
	}
	b := p.scratch
	var n int
	if p.Version == 4 {
		n = m.buildFragNeeded(b, p)
	} else {
		n = m.buildPacketTooBig(b, p)
	}
	if n == 0 {
		return false
	}
	p.Inject(b[:n], p.Depart, "mtu: ICMP too big to the sender")
	return true
}

// buildFragNeeded writes an ICMP "fragmentation needed" for IPv4 packet p
// into b and returns its length (0 if b is too small).
func (m *MTU) buildFragNeeded(b []byte, p *Packet) int {
	quote := min(len(p.Buf), icmp4QuoteLimit-28)
	n := 28 + quote
	if len(b) < n {
		return 0
	}
	m.ipID++
	clear(b[:28])
	b[0] = 0x45
	// Linux gives errors the original's TOS with Internet control precedence.
	b[1] = p.Buf[1]&0x1e | 0xc0
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	binary.BigEndian.PutUint16(b[4:6], m.ipID)
	b[8] = 64
	b[9] = packet.ProtoICMP
	src, dst := m.router4.As4(), p.Src.As4()
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	b[20], b[21] = 3, 4 // destination unreachable, fragmentation needed
	binary.BigEndian.PutUint16(b[26:28], uint16(m.MTU))
	copy(b[28:n], p.Buf[:quote])
	finishQuotedChecksum(b[28:n], p)
	return finishICMP(b[:n])
}

// buildPacketTooBig writes an ICMPv6 "packet too big" for IPv6 packet p
// into b and returns its length (0 if b is too small).
func (m *MTU) buildPacketTooBig(b []byte, p *Packet) int {
	quote := min(len(p.Buf), icmp6QuoteLimit-48)
	n := 48 + quote
	if len(b) < n {
		return 0
	}
	clear(b[:48])
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(n-40))
	b[6] = packet.ProtoICMPv6
	b[7] = 64
	src, dst := m.router6.As16(), p.Src.As16()
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
	b[40] = 2 // packet too big
	binary.BigEndian.PutUint32(b[44:48], uint32(max(m.MTU, MinMTU6)))
	copy(b[48:n], p.Buf[:quote])
	finishQuotedChecksum(b[48:n], p)
	return finishICMP(b[:n])
}

// finishQuotedChecksum writes the transport checksum the quoted packet
// carried on the wire into its copy q: a segment of an offloaded
// super-packet holds only the pseudo-header sum its sender's NIC was to
// finish, and the quote may be too short to compute it from.
func finishQuotedChecksum(q []byte, p *Packet) {
	var off int
	switch p.Proto {
	case packet.ProtoTCP:
		off = 16
	case packet.ProtoUDP:
		off = 6
	default:
		return
	}
	if p.Fragment || p.Malformed != packet.OK || p.L4Off+off+2 > len(q) {
		return
	}
	l4 := p.Buf[p.L4Off:]
	field := binary.BigEndian.Uint16(l4[off:])
	// The sum with the field counted as zero: adding its complement
	// cancels it in one's-complement arithmetic.
	acc := packet.PseudoHeaderPartialSum(p.Src, p.Dst, p.Proto) + uint64(len(l4))
	acc = packet.PartialSum(l4, acc) + uint64(^field)
	c := packet.FinishChecksum(acc)
	if p.Proto == packet.ProtoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(q[p.L4Off+off:], c)
}

// finishICMP fills the checksums of the ICMP packet b and returns its length.
func finishICMP(b []byte) int {
	var q packet.Parsed
	q.Decode(b)
	q.FixChecksums()
	return len(b)
}

// fragment injects IPv4 packet p (without DF) as fragments that fit the
// link (RFC 791), each as long as the link and the device's scratch
// buffer allow. It reports false when p cannot be fragmented (an unusable
// header or an MTU too small for it): p is then dropped as too big.
func (m *MTU) fragment(p *Packet) bool {
	hl := int(p.Buf[0]&0x0f) * 4
	step := (min(m.MTU, len(p.scratch)) - hl) &^ 7 // payload per fragment, a multiple of 8
	if p.Malformed == packet.BadIPHeaderLen || hl < 20 || step < 8 {
		return false
	}
	frag := binary.BigEndian.Uint16(p.Buf[6:8])
	baseOff, lastMF := int(frag&0x1fff)*8, frag&0x2000 != 0
	data := p.Buf[hl:]
	if baseOff+len(data) > 0xffff {
		return false // no offset could express its end
	}
	for start := 0; start < len(data); start += step {
		end := min(start+step, len(data))
		b := p.scratch[:hl+end-start]
		copy(b, p.Buf[:hl])
		if start > 0 {
			keepCopiedOptions(b[20:hl])
		}
		copy(b[hl:], data[start:end])
		f := uint16((baseOff+start)/8) | uint16(p.Buf[6]&0x80)<<8 // the reserved bit stays as it was
		if end < len(data) || lastMF {
			f |= 0x2000
		}
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		binary.BigEndian.PutUint16(b[6:8], f)
		b[10], b[11] = 0, 0
		binary.BigEndian.PutUint16(b[10:12], packet.Checksum(b[:hl]))
		p.Inject(b, p.Depart, "mtu: fragment")
		m.fragments++
	}
	return true
}

// keepCopiedOptions blanks (with No-Operation) the IPv4 options that only
// the first fragment carries: those without the copied flag (RFC 791).
func keepCopiedOptions(opts []byte) {
	for i := 0; i < len(opts); {
		switch t := opts[i]; {
		case t == 0: // end of options
			return
		case t == 1:
			i++
			continue
		case i+1 >= len(opts) || opts[i+1] < 2:
			clear(opts[i:]) // unreadable: end the list here
			return
		default:
			l := min(int(opts[i+1]), len(opts)-i)
			if t&0x80 == 0 {
				for j := i; j < i+l; j++ {
					opts[j] = 1
				}
			}
			i += l
		}
	}
}

func (m *MTU) Stats() map[string]uint64 {
	return map[string]uint64{
		"too_big_dropped": m.tooBig,
		"icmp_sent":       m.icmpSent,
		"icmp_filtered":   m.icmpFiltered,
		"fragmented":      m.fragmented,
		"fragments_sent":  m.fragments,
	}
}

func init() {
	Register("mtu", "a narrower link: drop (or fragment) packets over mtu; filter or send the ICMP too-big messages PMTUD needs",
		func() Behavior { return &MTU{MTU: 1400, ICMP: "filter"} })
}
