package main

import (
	"encoding/binary"
	"net/netip"

	"github.com/faultbox/faultbox/internal/packet"
)

// named is a hand-made packet and its corpus file name.
type named struct {
	name string
	data []byte
}

// handMade returns the packets no lab capture has: IPv4 options, IPv6
// extension-header chains, fragments, ICMP errors quoting TCP headers, odd
// TCP options, and every way a header can lie (bad IHL, data offset, lengths,
// checksums, truncation).
func handMade() []named {
	synOpts := []byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7} // MSS, SACK-permitted, TS, NOP, WS 7
	sackOpts := []byte{1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 1, 1, 1, 5, 26,
		0, 0, 0x10, 0, 0, 0, 0x14, 0, 0, 0, 0x20, 0, 0, 0, 0x24, 0, 0, 0, 0x30, 0, 0, 0, 0x34, 0} // NOP NOP TS NOP NOP SACK(3 blocks)
	syn := tcpHdr(40000, 80, 1000, 0, packet.SYN, synOpts, nil)
	data := tcpHdr(40000, 80, 1001, 5001, packet.ACK|packet.PSH, nil, []byte("GET / HTTP/1.1\r\nHost: server\r\n\r\n"))
	rr := []byte{7, 11, 4, 198, 18, 0, 1, 0, 0, 0, 0, 1} // record route with room for one more, NOP
	ts := []byte{68, 12, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0}   // timestamp option
	var out []named
	add := func(name string, b []byte) { out = append(out, named{name, b}) }

	add("ipv4-options-rr-ts-tcp-syn", ip4(packet.ProtoTCP, append(rr, ts...), syn, 0))
	add("ipv4-options-eol-only-tcp-data", ip4(packet.ProtoTCP, []byte{0, 0, 0, 0}, data, 0))
	add("ipv4-options-40-bytes-udp", ip4(packet.ProtoUDP, make([]byte, 40), udpHdr(5353, 53, []byte("q")), 0))
	add("ipv4-ihl-4", mangle(ip4(packet.ProtoTCP, nil, syn, 0), func(b []byte) { b[0] = 0x44 }))
	add("ipv4-ihl-15-beyond-packet", ip4raw(0x4f, packet.ProtoTCP, syn[:20]))
	add("ipv4-ihl-6-options-garbage", ip4(packet.ProtoTCP, []byte{0x83, 0xff, 0, 0}, syn, 0))
	add("ipv4-total-length-too-big", mangle(ip4(packet.ProtoTCP, nil, data, 0), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 9000) }))
	add("ipv4-total-length-below-ihl", mangle(ip4(packet.ProtoTCP, nil, data, 0), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 10) }))
	add("ipv4-total-length-zero", mangle(ip4(packet.ProtoTCP, nil, data, 0), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 0) }))
	add("ipv4-total-length-short-trailing-bytes", append(ip4(packet.ProtoTCP, nil, data, 0), 0xde, 0xad, 0xbe, 0xef))
	add("ipv4-bad-header-checksum", mangle(ip4(packet.ProtoTCP, nil, data, 0), func(b []byte) { b[10] ^= 0xff }))
	add("tcp4-bad-checksum", mangle(ip4(packet.ProtoTCP, nil, data, 0), func(b []byte) { b[20+16] ^= 0x5a }))
	add("tcp6-bad-checksum", mangle(ip6(packet.ProtoTCP, nil, data), func(b []byte) { b[40+16] ^= 0x5a }))
	add("udp4-bad-checksum", mangle(ip4(packet.ProtoUDP, nil, udpHdr(40000, 53, []byte("query")), 0), func(b []byte) { b[26] ^= 1 }))
	add("udp4-zero-checksum", mangle(ip4(packet.ProtoUDP, nil, udpHdr(40000, 53, []byte("query")), 0), func(b []byte) { b[26], b[27] = 0, 0 }))
	add("udp4-length-field-lies", mangle(ip4(packet.ProtoUDP, nil, udpHdr(40000, 53, []byte("query")), 0), func(b []byte) { b[24], b[25] = 0xff, 0xff }))
	add("udp6-zero-checksum", mangle(ip6(packet.ProtoUDP, nil, udpHdr(40000, 53, []byte("q"))), func(b []byte) { b[46], b[47] = 0, 0 }))
	add("udp4-short-header", ip4(packet.ProtoUDP, nil, []byte{1, 2, 3}, 0))

	add("tcp-data-offset-3", mangle(ip4(packet.ProtoTCP, nil, data, 0), func(b []byte) { b[32] = 3 << 4 }))
	add("tcp-data-offset-15-short", mangle(ip4(packet.ProtoTCP, nil, data[:24], 0), func(b []byte) { b[32] = 15 << 4 }))
	add("tcp-data-offset-0", mangle(ip6(packet.ProtoTCP, nil, data), func(b []byte) { b[52] = 0 }))
	add("tcp-header-truncated-19", ip4(packet.ProtoTCP, nil, data[:19], 0))
	add("tcp-options-sack-blocks-ts", ip4(packet.ProtoTCP, nil, tcpHdr(40000, 80, 1001, 5001, packet.ACK, sackOpts, nil), 0))
	add("tcp6-options-sack-blocks-ts", ip6(packet.ProtoTCP, nil, tcpHdr(80, 40000, 5001, 1001, packet.ACK, sackOpts, nil)))
	add("tcp-options-bad-lengths", ip4(packet.ProtoTCP, nil, tcpHdr(40000, 80, 1, 0, packet.SYN, []byte{3, 0, 2, 1, 8, 40, 1, 1}, nil), 0))
	add("tcp-options-wscale-255-len-overrun", ip4(packet.ProtoTCP, nil, tcpHdr(40000, 80, 1, 0, packet.SYN, []byte{1, 1, 1, 3, 3, 255, 5, 34}, nil), 0))
	add("tcp-options-eol-then-garbage", ip6(packet.ProtoTCP, nil, tcpHdr(40000, 80, 1, 0, packet.SYN|packet.ACK, []byte{0, 3, 3, 14}, nil)))
	add("tcp-all-flags-port-0", ip4(packet.ProtoTCP, nil, tcpHdr(0, 0, 0xffffffff, 0xffffffff, 0xff, nil, []byte("x")), 0))

	add("ipv4-frag-first-tcp", ip4(packet.ProtoTCP, nil, data[:24], 0x2000))
	add("ipv4-frag-tiny-first-tcp-8-bytes", ip4(packet.ProtoTCP, nil, data[:8], 0x2000))
	add("ipv4-frag-middle-tcp", ip4(packet.ProtoTCP, nil, data[24:], 0x2000|3))
	add("ipv4-frag-last-udp", ip4(packet.ProtoUDP, nil, []byte("the rest of a datagram"), 185))
	add("ipv4-frag-offset-max", ip4(packet.ProtoUDP, nil, []byte("x"), 0x1fff))

	hbh := ext(packet.ProtoICMPv6, 0, []byte{1, 4, 0, 0, 0, 0}) // next filled by chain
	add("ipv6-hbh-dst-rt-frag-tcp", ip6chain(packet.ProtoTCP, data, 0, 60, 43, 44))
	add("ipv6-hbh-dst-tcp-syn", ip6chain(packet.ProtoTCP, syn, 0, 60))
	add("ipv6-ah-tcp", ip6chain(packet.ProtoTCP, data, 51))
	add("ipv6-frag-first-tcp", ip6chain(packet.ProtoTCP, data[:24], 44))
	add("ipv6-frag-nonfirst", mangle(ip6chain(packet.ProtoTCP, data[24:], 44), func(b []byte) { b[42], b[43] = 0, 0x18 }))
	add("ipv6-ext-len-beyond-packet", mangle(ip6chain(packet.ProtoTCP, data, 60), func(b []byte) { b[41] = 200 }))
	add("ipv6-ext-chain-17-deep", ip6chain(packet.ProtoTCP, data, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60))
	add("ipv6-ext-chain-loop-hbh-late", ip6chain(packet.ProtoTCP, data, 60, 0, 0))
	add("ipv6-hbh-only-no-next", ip6chain(59, nil, 0))
	add("ipv6-no-next-header", ip6(59, nil, []byte("padding")))
	add("ipv6-payload-length-zero", mangle(ip6(packet.ProtoTCP, nil, data), func(b []byte) { b[4], b[5] = 0, 0 }))
	add("ipv6-payload-length-too-big", mangle(ip6(packet.ProtoTCP, nil, data), func(b []byte) { b[4], b[5] = 0x10, 0 }))
	add("ipv6-39-bytes", ip6(packet.ProtoTCP, nil, nil)[:39])
	add("ipv6-hbh-truncated", ip6(0, nil, hbh[:4]))

	q4 := ip4(packet.ProtoTCP, nil, data, 0)
	q6 := ip6(packet.ProtoTCP, nil, data)
	add("icmp4-frag-needed-quoting-tcp", ip4rev(packet.ProtoICMP, icmp(3, 4, 1400, q4[:48])))
	add("icmp4-time-exceeded-quoting-tcp-8-bytes", ip4rev(packet.ProtoICMP, icmp(11, 0, 0, q4[:28])))
	add("icmp4-port-unreachable-quoting-udp", ip4rev(packet.ProtoICMP, icmp(3, 3, 0, ip4(packet.ProtoUDP, nil, udpHdr(40000, 9999, []byte("x")), 0))))
	add("icmp4-short", ip4(packet.ProtoICMP, nil, []byte{3, 3, 0}, 0))
	add("icmp6-packet-too-big-quoting-tcp", ip6rev(packet.ProtoICMPv6, icmp(2, 0, 1280, q6[:68])))
	add("icmp6-dest-unreachable-quoting-ext-tcp", ip6rev(packet.ProtoICMPv6, icmp(1, 4, 0, ip6chain(packet.ProtoTCP, data, 0, 44)[:80])))
	add("icmp6-echo-request", ip6(packet.ProtoICMPv6, nil, icmp(128, 0, 0x00010001, []byte("ping"))))

	add("zero-length", []byte{})
	add("one-byte-v4", []byte{0x45})
	add("one-byte-v6", []byte{0x60})
	add("version-0", mangle(ip4(packet.ProtoTCP, nil, syn, 0), func(b []byte) { b[0] = 0x05 }))
	add("version-15", []byte{0xff, 0xff, 0xff, 0xff})
	add("ipv4-19-bytes", ip4(packet.ProtoTCP, nil, syn, 0)[:19])
	add("ipv4-gre", ip4(47, nil, []byte{0, 0, 8, 0, 0x45, 0, 0, 20}, 0))
	return out
}

func mangle(b []byte, fn func([]byte)) []byte { fn(b); return b }

func fix(b []byte) []byte {
	var p packet.Parsed
	p.Decode(b)
	p.FixChecksums()
	return b
}

// tcpHdr is a TCP header with options (padded to 4 bytes) and payload;
// the checksum is fixed when it is put in an IP packet.
func tcpHdr(sport, dport uint16, seq, ack uint32, flags packet.TCPFlags, opts, payload []byte) []byte {
	ol := (len(opts) + 3) &^ 3
	b := make([]byte, 20+ol+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = byte((20+ol)/4) << 4
	b[13] = byte(flags)
	binary.BigEndian.PutUint16(b[14:], 65535)
	copy(b[20:], opts)
	copy(b[20+ol:], payload)
	return b
}

func udpHdr(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	return b
}

// icmp is an ICMP/ICMPv6 message: type, code, 4 bytes of rest (MTU, id/seq)
// and the quoted packet.
func icmp(typ, code uint8, rest uint32, quote []byte) []byte {
	b := make([]byte, 8+len(quote))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint32(b[4:], rest)
	copy(b[8:], quote)
	return b
}

// ip4 is client → server IPv4 with header options and fragment field.
func ip4(proto uint8, opts, l4 []byte, frag uint16) []byte {
	return ip4from(client4, server4, proto, opts, l4, frag)
}

// ip4rev is server → client (ICMP errors go back to the sender).
func ip4rev(proto uint8, l4 []byte) []byte { return ip4from(server4, client4, proto, nil, l4, 0) }

func ip4from(src, dst netip.Addr, proto uint8, opts, l4 []byte, frag uint16) []byte {
	ihl := 20 + (len(opts)+3)&^3
	b := make([]byte, ihl+len(l4))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8], b[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	copy(b[ihl:], l4)
	return fix(b)
}

// ip4raw is an IPv4 header with a given first byte (version and IHL) and
// no checksum fix: for headers that lie about their length.
func ip4raw(first, proto uint8, rest []byte) []byte {
	b := make([]byte, 20+len(rest))
	b[0] = first
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = 64, proto
	s, d := client4.As4(), server4.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], rest)
	return b
}

// ip6 is client → server IPv6 whose first next header is next, followed by
// ext (already chained) and l4.
func ip6(next uint8, ext, l4 []byte) []byte { return ip6from(client6, server6, next, ext, l4) }

func ip6rev(next uint8, l4 []byte) []byte { return ip6from(server6, client6, next, nil, l4) }

func ip6from(src, dst netip.Addr, next uint8, ext, l4 []byte) []byte {
	b := make([]byte, 40+len(ext)+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	b[6], b[7] = next, 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], ext)
	copy(b[40+len(ext):], l4)
	return fix(b)
}

// ext is one extension header of kind typ (8-byte units; AH in 4-byte
// units) carrying body, whose next header is next.
func ext(next, typ uint8, body []byte) []byte {
	n := (2 + len(body) + 7) &^ 7
	b := make([]byte, n)
	b[0] = next
	switch typ {
	case 51: // AH: length in 4-byte units minus 2
		b[1] = byte(n/4 - 2)
	case 44: // fragment: fixed 8 bytes, offset 0, M flag set
		b = b[:8]
		b[1] = 0
		b[3] = 1
		binary.BigEndian.PutUint32(b[4:], 0xcafe)
		return b
	default:
		b[1] = byte(n/8 - 1)
	}
	copy(b[2:], body)
	return b
}

// ip6chain is an IPv6 packet with the extension headers kinds in order,
// then transport proto with l4.
func ip6chain(proto uint8, l4 []byte, kinds ...uint8) []byte {
	var chain []byte
	for i, k := range kinds {
		next := proto
		if i+1 < len(kinds) {
			next = kinds[i+1]
		}
		body := []byte{1, 4, 0, 0, 0, 0} // a PadN option
		if k == 43 {
			body = []byte{4, 0, 0, 0, 0, 0} // routing type 4 (SRH-like), segments left 0
		}
		chain = append(chain, ext(next, k, body)...)
	}
	first := proto
	if len(kinds) > 0 {
		first = kinds[0]
	}
	return ip6(first, chain, l4)
}
