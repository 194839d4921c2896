// Package packet reads IPv4/IPv6 + TCP/UDP/ICMP headers in place, without
// allocating and without panicking on short or hostile input, and crafts the
// few packets behaviors synthesize (RSTs, ACKs) with correct checksums.
//
// The hot path reads fixed header fields directly; gopacket is used for
// capture files and tests, not here.
package packet

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// IP protocol numbers the engine cares about.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// ProtoName is an IP protocol's name as profiles and the control API
// write it ("tcp", "udp", "icmp", "icmpv6"), or its number.
func ProtoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

// TCPFlags are the flag bits of a TCP header.
type TCPFlags uint8

// TCP flag bits.
const (
	FIN TCPFlags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// String renders the flags as tcpdump does: S, S., F., R, P., . ("none"
// when no bit is set).
func (f TCPFlags) String() string {
	var b [8]byte
	n := 0
	for _, x := range []struct {
		bit TCPFlags
		c   byte
	}{{SYN, 'S'}, {FIN, 'F'}, {RST, 'R'}, {PSH, 'P'}, {URG, 'U'}, {ECE, 'E'}, {CWR, 'W'}, {ACK, '.'}} {
		if f&x.bit != 0 {
			b[n] = x.c
			n++
		}
	}
	if n == 0 {
		return "none"
	}
	return string(b[:n])
}

// Malformed reasons: why a packet could not be fully decoded. The engine's
// rule: a packet whose IP header is unreadable is dropped and counted; a
// packet whose IP header is fine but whose transport header is not is
// forwarded untouched (behaviors that need ports or flags do not see it) and
// counted, because a middlebox must not eat traffic it does not understand.
type Malformed uint8

const (
	OK Malformed = iota
	BadIPVersion
	ShortIP
	BadIPHeaderLen
	BadIPTotalLen
	ShortL4
	BadTCPDataOff
	BadExtChain
)

var malformedNames = [...]string{"ok", "bad-ip-version", "short-ip", "bad-ip-header-len", "bad-ip-total-len", "short-l4", "bad-tcp-data-offset", "bad-ipv6-ext-chain"}

func (m Malformed) String() string {
	if int(m) < len(malformedNames) {
		return malformedNames[m]
	}
	return "unknown"
}

// Parsed is a decoded view of one IP packet. It holds offsets into Buf, not
// copies, so decoding never allocates. A Parsed is reused across packets.
type Parsed struct {
	Buf       []byte // the IP packet, trimmed to its IP total length
	Version   uint8  // 4 or 6; 0 when the IP header is unreadable
	Proto     uint8  // transport protocol after IPv6 extension headers
	Src, Dst  netip.Addr
	L4Off     int // offset of the transport header in Buf
	Fragment  bool
	NonFirst  bool // a non-first fragment: no transport header present
	Malformed Malformed

	// Transport fields; valid when HasPorts (TCP/UDP) or Proto is TCP.
	HasPorts         bool
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            TCPFlags
	Window           uint16
	PayloadOff       int // offset of the TCP/UDP payload in Buf
	ICMPType         uint8
}

// Payload returns the transport payload (TCP or UDP data).
func (p *Parsed) Payload() []byte {
	if !p.HasPorts || p.PayloadOff > len(p.Buf) {
		return nil
	}
	return p.Buf[p.PayloadOff:]
}

// PayloadLen is the number of transport payload bytes.
func (p *Parsed) PayloadLen() int { return len(p.Payload()) }

// IsTCP reports whether the packet carries a readable TCP header.
func (p *Parsed) IsTCP() bool { return p.Proto == ProtoTCP && p.HasPorts }

// SeqLen is the sequence space this TCP segment occupies (data + SYN + FIN).
func (p *Parsed) SeqLen() uint32 {
	n := uint32(p.PayloadLen())
	if p.Flags&SYN != 0 {
		n++
	}
	if p.Flags&FIN != 0 {
		n++
	}
	return n
}

// Decode parses buf into p. It never panics; problems are reported in
// p.Malformed and the fields that could be read stay valid.
func (p *Parsed) Decode(buf []byte) {
	*p = Parsed{Buf: buf}
	if len(buf) < 1 {
		p.Malformed = ShortIP
		return
	}
	switch buf[0] >> 4 {
	case 4:
		p.decode4(buf)
	case 6:
		p.decode6(buf)
	default:
		p.Malformed = BadIPVersion
	}
}

func (p *Parsed) decode4(buf []byte) {
	if len(buf) < 20 {
		p.Malformed = ShortIP
		return
	}
	ihl := int(buf[0]&0x0f) * 4
	if ihl < 20 || ihl > len(buf) {
		p.Malformed = BadIPHeaderLen
		return
	}
	total := int(binary.BigEndian.Uint16(buf[2:4]))
	if total < ihl || total > len(buf) {
		// A GSO super-packet read from TUN may carry total length 0 or a
		// per-segment value; the caller passes the length it read, so only a
		// length larger than the buffer is hostile.
		if total != 0 || len(buf) < ihl {
			p.Malformed = BadIPTotalLen
			return
		}
		total = len(buf)
	}
	p.Buf = buf[:total]
	p.Version = 4
	p.Proto = buf[9]
	p.Src = netip.AddrFrom4([4]byte(buf[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(buf[16:20]))
	frag := binary.BigEndian.Uint16(buf[6:8])
	p.Fragment = frag&0x3fff != 0 // MF set or offset non-zero
	p.NonFirst = frag&0x1fff != 0
	p.L4Off = ihl
	if !p.NonFirst {
		p.decodeL4()
	}
}

func (p *Parsed) decode6(buf []byte) {
	if len(buf) < 40 {
		p.Malformed = ShortIP
		return
	}
	plen := int(binary.BigEndian.Uint16(buf[4:6]))
	total := 40 + plen
	if total > len(buf) {
		p.Malformed = BadIPTotalLen
		return
	}
	if plen == 0 { // jumbogram or GSO super-packet: trust the read length
		total = len(buf)
	}
	p.Buf = buf[:total]
	p.Version = 6
	p.Src = netip.AddrFrom16([16]byte(buf[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(buf[24:40]))
	next := buf[6]
	off := 40
	// Walk a bounded extension-header chain.
	for i := 0; i < 16; i++ {
		switch next {
		case 0, 43, 60, 51: // hop-by-hop, routing, destination options, AH
			if off+8 > total {
				p.Malformed = BadExtChain
				return
			}
			l := (int(p.Buf[off+1]) + 1) * 8
			if next == 51 {
				l = (int(p.Buf[off+1]) + 2) * 4
			}
			next = p.Buf[off]
			off += l
		case 44: // fragment
			if off+8 > total {
				p.Malformed = BadExtChain
				return
			}
			fo := binary.BigEndian.Uint16(p.Buf[off+2 : off+4])
			p.Fragment = true
			p.NonFirst = fo&0xfff8 != 0
			next = p.Buf[off]
			off += 8
		default:
			if off > total {
				p.Malformed = BadExtChain
				return
			}
			p.Proto = next
			p.L4Off = off
			if !p.NonFirst {
				p.decodeL4()
			}
			return
		}
	}
	p.Malformed = BadExtChain
}

func (p *Parsed) decodeL4() {
	l4 := p.Buf[p.L4Off:]
	switch p.Proto {
	case ProtoTCP:
		if len(l4) < 20 {
			p.Malformed = ShortL4
			return
		}
		doff := int(l4[12]>>4) * 4
		if doff < 20 || doff > len(l4) {
			p.Malformed = BadTCPDataOff
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
		p.Seq = binary.BigEndian.Uint32(l4[4:8])
		p.Ack = binary.BigEndian.Uint32(l4[8:12])
		p.Flags = TCPFlags(l4[13])
		p.Window = binary.BigEndian.Uint16(l4[14:16])
		p.PayloadOff = p.L4Off + doff
		p.HasPorts = true
	case ProtoUDP:
		if len(l4) < 8 {
			p.Malformed = ShortL4
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
		p.PayloadOff = p.L4Off + 8
		p.HasPorts = true
	case ProtoICMP, ProtoICMPv6:
		if len(l4) < 4 {
			p.Malformed = ShortL4
			return
		}
		p.ICMPType = l4[0]
	}
}

// TCPOptions returns the raw TCP options bytes (nil if none or not TCP).
func (p *Parsed) TCPOptions() []byte {
	if !p.IsTCP() {
		return nil
	}
	return p.Buf[p.L4Off+20 : p.PayloadOff]
}

// WindowScale returns the window-scale shift a SYN advertises, or -1.
func (p *Parsed) WindowScale() int {
	off, n, ok := p.TCPOption(OptWindowScale)
	if !ok || n != 3 {
		return -1
	}
	return int(p.Buf[off+2])
}
