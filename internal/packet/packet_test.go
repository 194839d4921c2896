package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// serialize builds a packet with gopacket, the independent reference.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tcpLayer(net gopacket.NetworkLayer) *layers.TCP {
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 0xfffffff0, Ack: 7, SYN: true, ACK: true, Window: 29200,
		Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		}}
	tcp.SetNetworkLayerForChecksum(net)
	return tcp
}

func TestDecode_IPv4WithOptionsAndTCPOptions(t *testing.T) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2},
		Options: []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}}} // record route
	raw := serialize(t, ip, tcpLayer(ip), gopacket.Payload("hello"))
	var p Parsed
	p.Decode(raw)
	if p.Malformed != OK || p.Version != 4 || p.L4Off != 28 {
		t.Fatalf("decode: %+v", p)
	}
	if p.Src != netip.MustParseAddr("198.18.0.1") || p.SrcPort != 40000 || p.DstPort != 80 || p.Seq != 0xfffffff0 || p.Ack != 7 {
		t.Fatalf("fields: %+v", p)
	}
	if p.Flags != SYN|ACK || string(p.Payload()) != "hello" || p.WindowScale() != 7 || p.SeqLen() != 6 {
		t.Fatalf("flags %v payload %q wscale %d seqlen %d", p.Flags, p.Payload(), p.WindowScale(), p.SeqLen())
	}
	if !p.ChecksumsValid() {
		t.Fatal("gopacket's checksums judged invalid")
	}
}

func TestDecode_IPv6ExtensionHeaderChain(t *testing.T) {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6HopByHop,
		SrcIP: netip.MustParseAddr("2001:db8::1").AsSlice(), DstIP: netip.MustParseAddr("2001:db8::2").AsSlice()}
	hop := &layers.IPv6HopByHop{}
	hop.NextHeader = layers.IPProtocolIPv6Destination
	hop.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
	dst := &layers.IPv6Destination{}
	dst.NextHeader = layers.IPProtocolTCP
	dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
	tcp := tcpLayer(ip)
	raw := serialize(t, ip, hop, dst, tcp, gopacket.Payload("x"))
	var p Parsed
	p.Decode(raw)
	if p.Malformed != OK || p.Proto != ProtoTCP || p.L4Off != 56 || p.DstPort != 80 || string(p.Payload()) != "x" {
		t.Fatalf("decode: %+v", p)
	}
}

func TestDecode_TruncatedAndHostileNeverPanic(t *testing.T) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2}}
	raw := serialize(t, ip, tcpLayer(ip), gopacket.Payload("hello"))
	for n := 0; n < len(raw); n++ {
		var p Parsed
		p.Decode(raw[:n]) // must not panic
		if n < 20 && p.Malformed == OK {
			t.Fatalf("truncated to %d bytes decoded as OK", n)
		}
	}
	cases := map[string]func([]byte){
		"ihl 4":          func(b []byte) { b[0] = 0x44 },
		"ihl 15":         func(b []byte) { b[0] = 0x4f },
		"total too big":  func(b []byte) { binary.BigEndian.PutUint16(b[2:], 9000) },
		"data offset 3":  func(b []byte) { b[20+12] = 3 << 4 },
		"data offset 15": func(b []byte) { b[20+12] = 15 << 4 },
		"version 5":      func(b []byte) { b[0] = 0x55 },
	}
	want := map[string]Malformed{"ihl 4": BadIPHeaderLen, "ihl 15": ShortL4, "total too big": BadIPTotalLen,
		"data offset 3": BadTCPDataOff, "data offset 15": BadTCPDataOff, "version 5": BadIPVersion}
	for name, mangle := range cases {
		b := append([]byte(nil), raw...)
		mangle(b)
		var p Parsed
		p.Decode(b)
		if p.Malformed != want[name] {
			t.Errorf("%s: malformed=%v, want %v", name, p.Malformed, want[name])
		}
	}
}

func TestDecode_FragmentsHaveNoPortsAfterTheFirst(t *testing.T) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2},
		Flags: 0, FragOffset: 100}
	raw := serialize(t, ip, gopacket.Payload("not a udp header"))
	var p Parsed
	p.Decode(raw)
	if !p.Fragment || !p.NonFirst || p.HasPorts {
		t.Fatalf("fragment: %+v", p)
	}
}

func TestBuildTCP_ChecksumsMatchGopacket(t *testing.T) {
	for _, c := range []struct{ src, dst string }{{"198.18.0.2", "198.18.0.1"}, {"2001:db8::2", "2001:db8::1"}} {
		buf := make([]byte, 100)
		n := BuildTCP(buf, TCPSpec{Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), SrcPort: 80, DstPort: 40000,
			Seq: 276, Ack: 1000, Flags: RST | ACK, Payload: []byte("ab")})
		var first gopacket.LayerType = layers.LayerTypeIPv4
		if netip.MustParseAddr(c.src).Is6() {
			first = layers.LayerTypeIPv6
		}
		pkt := gopacket.NewPacket(buf[:n], first, gopacket.Default)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || !tcp.RST || !tcp.ACK || tcp.Seq != 276 || tcp.Ack != 1000 || string(tcp.Payload) != "ab" {
			t.Fatalf("%s: gopacket sees %v", c.src, pkt)
		}
		var p Parsed
		p.Decode(buf[:n])
		if !p.ChecksumsValid() {
			t.Fatalf("%s: invalid checksums", c.src)
		}
		// Recompute with gopacket and compare the checksum bytes.
		var net gopacket.NetworkLayer
		if ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			net = ip4
		} else {
			net = pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		}
		tcp.SetNetworkLayerForChecksum(net)
		want := serialize(t, net.(gopacket.SerializableLayer), tcp, gopacket.Payload(tcp.Payload))
		if string(want) != string(buf[:n]) {
			t.Fatalf("%s: built\n%x\ngopacket\n%x", c.src, buf[:n], want)
		}
	}
}

func TestFixChecksums_AfterModification(t *testing.T) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2}}
	raw := serialize(t, ip, tcpLayer(ip), gopacket.Payload("hello"))
	var p Parsed
	p.Decode(raw)
	p.Buf[len(p.Buf)-1] ^= 0xff
	if p.ChecksumsValid() {
		t.Fatal("corruption not detected")
	}
	p.FixChecksums()
	if !p.ChecksumsValid() {
		t.Fatal("checksums not fixed")
	}
}

func BenchmarkDecode(b *testing.B) {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
		SrcIP: netip.MustParseAddr("2001:db8::1").AsSlice(), DstIP: netip.MustParseAddr("2001:db8::2").AsSlice()}
	raw := serialize(b, ip, tcpLayer(ip), gopacket.Payload(make([]byte, 1400)))
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		p.Decode(raw)
	}
}

func FuzzDecode(f *testing.F) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2}}
	f.Add(serialize(f, ip, tcpLayer(ip), gopacket.Payload("hello")))
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
		SrcIP: netip.MustParseAddr("2001:db8::1").AsSlice(), DstIP: netip.MustParseAddr("2001:db8::2").AsSlice()}
	f.Add(serialize(f, ip6, tcpLayer(ip6)))
	f.Add([]byte{0x45})
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 44, 64})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parsed
		p.Decode(b)
		_ = p.Payload()
		_ = p.WindowScale()
		_ = p.HasFastOpen()
		if off, n, ok := p.TCPOption(OptSACK); ok && (off < p.L4Off+20 || off+n > p.PayloadOff) {
			t.Fatalf("option at %d+%d outside the TCP options %d-%d", off, n, p.L4Off+20, p.PayloadOff)
		}
		_ = p.SeqLen()
		if p.Malformed == OK && p.Version != 0 {
			c := append([]byte(nil), p.Buf...)
			var q Parsed
			q.Decode(c)
			q.FixChecksums()
			if !q.Fragment && (q.Proto == ProtoTCP || q.Proto == ProtoUDP) && !q.ChecksumsValid() {
				t.Fatalf("FixChecksums left invalid checksums on %x", c)
			}
		}
	})
}

func TestPartialSums_MatchTheWholeSums(t *testing.T) {
	b := []byte{0x45, 0, 0x05, 0xdc, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2, 0xab}
	for n := 0; n <= len(b); n++ {
		for cut := 0; cut <= n; cut += 2 {
			if got, want := FinishChecksum(PartialSum(b[cut:n], PartialSum(b[:cut], 0))), Checksum(b[:n]); got != want {
				t.Errorf("%d bytes summed in two parts at %d: %#04x, want %#04x", n, cut, got, want)
			}
		}
	}
	for _, a := range [][2]netip.Addr{
		{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.255.254")},
		{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:ffff::2")},
	} {
		base := PseudoHeaderPartialSum(a[0], a[1], ProtoTCP)
		for _, length := range []int{0, 1, 20, 1480, 65535, 70000} {
			// The pseudo-header in IPv6's layout (RFC 8200 8.1), whose
			// 32-bit length sums as IPv4's 16-bit one for lengths that fit.
			ph := append(a[0].AsSlice(), a[1].AsSlice()...)
			ph = binary.BigEndian.AppendUint32(ph, uint32(length))
			ph = append(ph, 0, 0, 0, ProtoTCP)
			if got, want := FoldPseudoHeader(base, length), ^Checksum(ph); got != want {
				t.Errorf("%v length %d: %#04x, want %#04x", a, length, got, want)
			}
		}
	}
}

func TestTCPFlags_StringAsTcpdump(t *testing.T) {
	for f, want := range map[TCPFlags]string{
		SYN: "S", SYN | ACK: "S.", ACK: ".", PSH | ACK: "P.", FIN | ACK: "F.", RST: "R", RST | ACK: "R.",
		FIN | SYN | RST | PSH | ACK | URG | ECE | CWR: "SFRPUEW.", 0: "none",
	} {
		if got := f.String(); got != want {
			t.Errorf("%#02x: %q, want %q", uint8(f), got, want)
		}
	}
}

func TestProtoName_AsProfilesWriteIt(t *testing.T) {
	for p, want := range map[uint8]string{ProtoTCP: "tcp", ProtoUDP: "udp", ProtoICMP: "icmp", ProtoICMPv6: "icmpv6", 47: "47"} {
		if got := ProtoName(p); got != want {
			t.Errorf("%d: %q, want %q", p, got, want)
		}
	}
}
