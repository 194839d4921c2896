package packet

import (
	"encoding/binary"
	"net/netip"
)

// sum adds b to a running one's-complement sum (not yet folded).
func sum(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b[0:4])) + uint64(binary.BigEndian.Uint32(b[4:8]))
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

func fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = (acc >> 16) + (acc & 0xffff)
	}
	return uint16(acc)
}

// Checksum is the Internet checksum (RFC 1071) of b.
func Checksum(b []byte) uint16 { return ^fold(sum(b, 0)) }

func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint64 {
	var acc uint64
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		acc = sum(s[:], acc)
		acc = sum(d[:], acc)
	} else {
		s, d := src.As16(), dst.As16()
		acc = sum(s[:], acc)
		acc = sum(d[:], acc)
	}
	return acc + uint64(proto) + uint64(length)
}

// PartialSum adds b's 16-bit words to acc, an unfolded one's-complement
// sum: headers that differ only in a few fields (the segments of one
// super-packet) can share the sum of the rest and add their own fields.
func PartialSum(b []byte, acc uint64) uint64 { return sum(b, acc) }

// FinishChecksum folds and inverts a PartialSum into a checksum field.
func FinishChecksum(acc uint64) uint16 { return ^fold(acc) }

// PseudoHeaderPartialSum is the pseudo-header's PartialSum without its
// length, which FoldPseudoHeader adds: the packets of one flow share it.
func PseudoHeaderPartialSum(src, dst netip.Addr, proto uint8) uint64 {
	return pseudoSum(src, dst, proto, 0)
}

// FoldPseudoHeader is the folded (not inverted) pseudo-header sum, from its
// PseudoHeaderPartialSum and the transport length, that an offloaded packet
// carries in its checksum field: the kernel, or tun's Complete, adds the
// transport bytes and inverts.
func FoldPseudoHeader(partial uint64, length int) uint16 { return fold(partial + uint64(length)) }

// FixChecksums recomputes the IPv4 header checksum and the TCP/UDP/ICMP
// checksum of a decoded packet after its bytes were changed. It does nothing
// for fragments, whose transport checksum covers bytes not in this packet.
func (p *Parsed) FixChecksums() {
	b := p.Buf
	if p.Version == 4 {
		ihl := p.L4Off
		b[10], b[11] = 0, 0
		binary.BigEndian.PutUint16(b[10:12], Checksum(b[:ihl]))
	}
	if p.Fragment || p.Malformed != OK {
		return
	}
	l4 := b[p.L4Off:]
	var off int
	switch p.Proto {
	case ProtoTCP:
		off = 16
	case ProtoUDP:
		off = 6
	case ProtoICMP:
		off = 2
	case ProtoICMPv6:
		off = 2
	default:
		return
	}
	if len(l4) < off+2 {
		return
	}
	l4[off], l4[off+1] = 0, 0
	var acc uint64
	if p.Proto != ProtoICMP { // ICMPv4 has no pseudo-header
		acc = pseudoSum(p.Src, p.Dst, p.Proto, len(l4))
	}
	c := ^fold(sum(l4, acc))
	if p.Proto == ProtoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:off+2], c)
}

// ChecksumsValid reports whether the IPv4 header and transport checksums
// are correct. Used by tests and fuzz targets.
func (p *Parsed) ChecksumsValid() bool {
	b := p.Buf
	if p.Version == 4 && Checksum(b[:p.L4Off]) != 0 {
		return false
	}
	if p.Fragment || p.Malformed != OK {
		return true
	}
	l4 := b[p.L4Off:]
	var acc uint64
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoICMPv6:
		acc = pseudoSum(p.Src, p.Dst, p.Proto, len(l4))
	case ProtoICMP:
	default:
		return true
	}
	if p.Proto == ProtoUDP && len(l4) >= 8 && l4[6] == 0 && l4[7] == 0 && p.Version == 4 {
		return true // UDP over IPv4 without a checksum
	}
	return fold(sum(l4, acc)) == 0xffff
}

// TCPSpec describes a TCP segment to synthesize.
type TCPSpec struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            TCPFlags
	Window           uint16
	Payload          []byte
}

// BuildTCP writes an IPv4 or IPv6 TCP segment described by s into buf and
// returns its length, with every checksum correct. buf must hold at least
// 60 + len(s.Payload) bytes; BuildTCP returns 0 if it does not.
func BuildTCP(buf []byte, s TCPSpec) int {
	const ttl = 64
	ipLen := 20
	if s.Src.Is6() && !s.Src.Is4In6() {
		ipLen = 40
	}
	n := ipLen + 20 + len(s.Payload)
	if len(buf) < n {
		return 0
	}
	b := buf[:n]
	clear(b[:ipLen+20])
	if ipLen == 20 {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:4], uint16(n))
		b[6] = 0x40 // don't fragment
		b[8] = ttl
		b[9] = ProtoTCP
		s4, d4 := s.Src.As4(), s.Dst.As4()
		copy(b[12:16], s4[:])
		copy(b[16:20], d4[:])
	} else {
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:6], uint16(n-40))
		b[6] = ProtoTCP
		b[7] = ttl
		s16, d16 := s.Src.As16(), s.Dst.As16()
		copy(b[8:24], s16[:])
		copy(b[24:40], d16[:])
	}
	t := b[ipLen:]
	binary.BigEndian.PutUint16(t[0:2], s.SrcPort)
	binary.BigEndian.PutUint16(t[2:4], s.DstPort)
	binary.BigEndian.PutUint32(t[4:8], s.Seq)
	binary.BigEndian.PutUint32(t[8:12], s.Ack)
	t[12] = 5 << 4
	t[13] = byte(s.Flags)
	binary.BigEndian.PutUint16(t[14:16], s.Window)
	copy(t[20:], s.Payload)
	var p Parsed
	p.Decode(b)
	p.FixChecksums()
	return n
}
