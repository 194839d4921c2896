package behaviors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

var (
	router4 = netip.MustParseAddr("198.18.0.254")
	router6 = netip.MustParseAddr("2001:db8::fe")
)

func newMTU(t testing.TB, mtu int, icmp string) *MTU {
	b, _ := New("mtu")
	m := b.(*MTU)
	m.MTU, m.ICMP = mtu, icmp
	if icmp == "send" {
		m.Router = []string{router4.String(), router6.String()}
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

// decoded parses raw, failing the test if it is not well formed.
func decoded(t *testing.T, raw []byte) *packet.Parsed {
	t.Helper()
	var p packet.Parsed
	p.Decode(raw)
	if p.Version == 0 || p.Malformed != packet.OK || !p.ChecksumsValid() {
		t.Fatalf("malformed (%v) or bad checksums: %x", p.Malformed, raw)
	}
	return &p
}

// The black hole: the handshake and a small request pass, a full-sized
// segment with DF is dropped without a word, both IP versions.
func TestMTU_FilterDropsBigSilently(t *testing.T) {
	for _, addrs := range [][2]netip.Addr{{client4, server4}, {client6, server6}} {
		h := newHarness(t, "mtu", newMTU(t, 1400, "filter"), Match{})
		k := newConn(addrs[0], addrs[1], 1, 2)
		for _, s := range append(k.handshake(), k.seg(true, packet.ACK, []byte("GET / HTTP/1.1\r\n\r\n"))) {
			if v, _ := h.send(s); v != Pass {
				t.Fatal("small packet dropped")
			}
		}
		hdr := 40
		if addrs[0].Is6() {
			hdr = 60
		}
		fits := k.seg(false, packet.ACK, make([]byte, 1400-hdr))
		if v, _ := h.send(fits); v != Pass || len(fits) != 1400 {
			t.Fatalf("a %d-byte packet did not pass", len(fits))
		}
		if v, _ := h.send(k.seg(false, packet.ACK, make([]byte, 1401-hdr))); v != Drop {
			t.Fatal("a 1401-byte packet passed")
		}
		if len(h.injected) != 0 || h.p.Note != "mtu: too big for the link" {
			t.Fatalf("injected %d, note %q", len(h.injected), h.p.Note)
		}
	}
}

// ICMP allowed: each dropped packet is answered like a router answers it,
// with the link's MTU and a quote whose transport checksum is the one the
// packet had on the wire, even when it arrived with only the
// pseudo-header sum of an offloaded segment.
func TestMTU_SendAnswersLikeARouter(t *testing.T) {
	for _, addrs := range [][2]netip.Addr{{client4, server4}, {client6, server6}} {
		m := newMTU(t, 1400, "send")
		h := newHarness(t, "mtu", m, Match{})
		k := newConn(addrs[0], addrs[1], 1, 2)
		for _, s := range k.handshake() {
			h.send(s)
		}
		big := k.seg(false, packet.ACK|packet.PSH, bytes.Repeat([]byte("z"), 1448))
		wire := decoded(t, big)
		wantCsum := binary.BigEndian.Uint16(big[wire.L4Off+16:])
		// As the segment of an offloaded super-packet: pseudo-header sum only.
		partial := bytes.Clone(big)
		binary.BigEndian.PutUint16(partial[wire.L4Off+16:], packet.FoldPseudoHeader(
			packet.PseudoHeaderPartialSum(wire.Src, wire.Dst, packet.ProtoTCP), len(big)-wire.L4Off))
		if v, _ := h.send(partial); v != Drop {
			t.Fatal("too-big packet passed")
		}
		if len(h.injected) != 1 {
			t.Fatalf("%d injected, want 1 ICMP", len(h.injected))
		}
		icmp := decoded(t, h.injected[0])
		l4 := icmp.Buf[icmp.L4Off:]
		quote := l4[8:]
		if addrs[0].Is4() {
			if icmp.Proto != packet.ProtoICMP || l4[0] != 3 || l4[1] != 4 || binary.BigEndian.Uint16(l4[6:8]) != 1400 {
				t.Fatalf("not a fragmentation needed with MTU 1400: %x", l4[:8])
			}
			if icmp.Src != router4 || len(icmp.Buf) != 576 || icmp.Buf[1] != 0xc0 {
				t.Fatalf("from %v, %d bytes, tos %#x: want %v, 576, 0xc0", icmp.Src, len(icmp.Buf), icmp.Buf[1], router4)
			}
		} else {
			if icmp.Proto != packet.ProtoICMPv6 || l4[0] != 2 || binary.BigEndian.Uint32(l4[4:8]) != 1400 {
				t.Fatalf("not a packet too big with MTU 1400: %x", l4[:8])
			}
			if icmp.Src != router6 || len(icmp.Buf) != 1280 {
				t.Fatalf("from %v, %d bytes: want %v, 1280", icmp.Src, len(icmp.Buf), router6)
			}
		}
		if icmp.Dst != addrs[1] {
			t.Fatalf("sent to %v, want the sender %v", icmp.Dst, addrs[1])
		}
		if !bytes.Equal(quote[:wire.L4Off+16], big[:wire.L4Off+16]) || !bytes.Equal(quote[wire.L4Off+18:], big[wire.L4Off+18:len(quote)]) {
			t.Fatal("the quote is not the dropped packet")
		}
		if got := binary.BigEndian.Uint16(quote[wire.L4Off+16:]); got != wantCsum {
			t.Fatalf("quoted TCP checksum %#x, want the wire's %#x", got, wantCsum)
		}
		if st := m.Stats(); st["too_big_dropped"] != 1 || st["icmp_sent"] != 1 {
			t.Fatalf("stats %v", st)
		}
	}
}

// An IPv6 link carries 1280 bytes whatever mtu says; smaller values narrow
// IPv4 only.
func TestMTU_IPv6NeverBelow1280(t *testing.T) {
	h := newHarness(t, "mtu", newMTU(t, 576, "filter"), Match{})
	k := newConn(client6, server6, 1, 2)
	if v, _ := h.send(k.seg(false, packet.ACK, make([]byte, 1280-60))); v != Pass {
		t.Fatal("a 1280-byte IPv6 packet was dropped")
	}
	if v, _ := h.send(k.seg(false, packet.ACK, make([]byte, 1281-60))); v != Drop {
		t.Fatal("a 1281-byte IPv6 packet passed")
	}
}

// The filter: too-big messages from elsewhere are dropped (that is the
// black hole's other half); with icmp: send they pass, and other ICMP
// passes either way.
func TestMTU_FiltersTooBigMessages(t *testing.T) {
	h := newHarness(t, "mtu", newMTU(t, 1400, "send"), Match{})
	h.send(newConn(client4, server4, 1, 2).seg(false, packet.ACK, make([]byte, 1460)))
	h.send(newConn(client6, server6, 1, 2).seg(false, packet.ACK, make([]byte, 1440)))
	msgs := h.injected
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	echo := icmpEcho(client4, server4)
	for _, tc := range []struct {
		mode string
		pkt  []byte
		want Verdict
	}{
		{"filter", msgs[0], Drop}, {"filter", msgs[1], Drop}, {"filter", echo, Pass},
		{"send", msgs[0], Pass}, {"send", msgs[1], Pass},
	} {
		h := newHarness(t, "mtu", newMTU(t, 1400, tc.mode), Match{})
		if v, _ := h.send(tc.pkt); v != tc.want {
			t.Errorf("icmp: %s: verdict %v for type %d, want %v", tc.mode, v, decoded(t, tc.pkt).ICMPType, tc.want)
		}
	}
}

// An ICMP error that is too big itself (with DF: Linux sends them
// without, to be fragmented) is dropped, never answered.
func TestMTU_NeverAnswersAnICMPError(t *testing.T) {
	m := newMTU(t, MinMTU4, "send")
	h := newHarness(t, "mtu", m, Match{})
	k := newConn(client4, server4, 1, 2)
	h.send(k.seg(false, packet.ACK, make([]byte, 200)))
	if len(h.injected) != 1 {
		t.Fatal("no answer to a too-big segment")
	}
	msg := h.injected[0]
	msg[6] |= 0x40
	var p packet.Parsed
	p.Decode(msg)
	p.FixChecksums()
	if v, _ := h.send(msg); v != Drop || len(h.injected) != 1 {
		t.Fatalf("verdict %v, %d injected: an ICMP error was answered", v, len(h.injected))
	}
}

// IPv4 without DF is fragmented: the fragments fit the link, carry the
// right offsets and flags, keep only copied options after the first, and
// reassemble to the original.
func TestMTU_FragmentsWithoutDF(t *testing.T) {
	m := newMTU(t, 600, "filter")
	h := newHarness(t, "mtu", m, Match{})
	orig := withIPv4Options(t, udpPacket(client4, server4, 5000, 53, bytes.Repeat([]byte("0123456789"), 150)))
	if v, _ := h.send(orig); v != Drop || h.p.Note != "mtu: fragmented" {
		t.Fatalf("verdict %v, note %q", v, h.p.Note)
	}
	hl := int(orig[0]&0x0f) * 4
	var payload []byte
	for i, f := range h.injected {
		q := decoded(t, f)
		if len(f) > 600 {
			t.Fatalf("fragment %d is %d bytes", i, len(f))
		}
		fo := binary.BigEndian.Uint16(f[6:8])
		if int(fo&0x1fff)*8 != len(payload) {
			t.Fatalf("fragment %d at offset %d, want %d", i, int(fo&0x1fff)*8, len(payload))
		}
		if last := i == len(h.injected)-1; (fo&0x2000 != 0) == last {
			t.Fatalf("fragment %d: MF %v", i, fo&0x2000 != 0)
		}
		opts := f[20:hl]
		if i == 0 && !bytes.Equal(opts, orig[20:hl]) {
			t.Fatalf("first fragment's options %x, want %x", opts, orig[20:hl])
		}
		if i > 0 && !bytes.Equal(opts, []byte{0x83, 3, 7, 1, 1, 1, 1, 0}) {
			t.Fatalf("fragment %d's options %x: want the copied one only", i, opts)
		}
		if q.Src != client4 || q.Dst != server4 {
			t.Fatal("fragment addresses changed")
		}
		payload = append(payload, f[hl:]...)
	}
	if !bytes.Equal(payload, orig[hl:]) {
		t.Fatal("the fragments do not reassemble to the packet")
	}
	if st := m.Stats(); st["fragmented"] != 1 || st["fragments_sent"] != uint64(len(h.injected)) || st["too_big_dropped"] != 0 {
		t.Fatalf("stats %v", st)
	}
}

// withIPv4Options rebuilds IPv4 packet b with two options: a copied one
// (loose source route, 3 bytes) and one that is not (record route
// pointer-only, 4 bytes), plus end-of-list padding.
func withIPv4Options(t *testing.T, b []byte) []byte {
	opts := []byte{0x83, 3, 7, 0x07, 4, 5, 0, 0}
	out := append(append(append([]byte{}, b[:20]...), opts...), b[20:]...)
	out[0] = 0x45 + byte(len(opts)/4)
	out[6] &^= 0x40
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	var p packet.Parsed
	p.Decode(out)
	p.FixChecksums()
	decoded(t, out)
	return out
}

// icmpEcho builds an ICMP echo request.
func icmpEcho(src, dst netip.Addr) []byte {
	b := make([]byte, 28)
	b[0] = 0x45
	b[3] = 28
	b[8], b[9] = 64, packet.ProtoICMP
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	b[20] = 8
	var p packet.Parsed
	p.Decode(b)
	p.FixChecksums()
	return b
}

func TestMTU_Validate(t *testing.T) {
	for field, mut := range map[string]func(*MTU){
		"mtu":    func(m *MTU) { m.MTU = 67 },
		"icmp":   func(m *MTU) { m.ICMP = "drop" },
		"router": func(m *MTU) { m.ICMP, m.Router = "send", []string{"198.18.0.254", "198.18.0.253"} },
	} {
		b, _ := New("mtu")
		m := b.(*MTU)
		mut(m)
		var fe *FieldError
		if err := m.Validate(); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: error %v", field, err)
		}
	}
	b, _ := New("mtu")
	m := b.(*MTU)
	m.Router = []string{"198.18.0.254", "2001:db8::fe"}
	if err := m.Validate(); err == nil {
		t.Error("router with icmp: filter accepted")
	}
	m.ICMP, m.Router = "send", []string{"198.18.0.254", "not-an-ip"}
	if err := m.Validate(); err == nil {
		t.Error("a bad router address accepted")
	}
	m.Router = []string{"2001:db8::99"}
	if err := m.Validate(); err != nil || m.router4 != defaultRouter4 || m.router6 != netip.MustParseAddr("2001:db8::99") {
		t.Errorf("one router address given: %v, routers %v and %v", err, m.router4, m.router6)
	}
}

func BenchmarkMTU_Fits(b *testing.B) {
	r := newBenchRig(b, "mtu", newMTU(b, 1500, "filter"))
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}

func BenchmarkMTU_TooBigAnswered(b *testing.B) {
	r := newBenchRig(b, "mtu", newMTU(b, 1280, "send"))
	up, _ := benchEstablished(r)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if r.run(up, int64(i)) != Drop {
			b.Fatal("passed")
		}
	}
	if r.chain.Entries[0].Counters.Injected == 0 {
		b.Fatal("nothing injected")
	}
}

// FuzzMTU: whatever arrives, a packet that passes fits the link, and every
// packet the device sends is well formed with correct checksums: its
// fragments fit and reassemble to the packet, its ICMP answers quote it.
//
//	go test ./behaviors -run '^$' -fuzz '^FuzzMTU$' -fuzztime 1m
func FuzzMTU(f *testing.F) {
	k4, k6 := newConn(client4, server4, 1, 2), newConn(client6, server6, 1, 2)
	noDF := udpPacket(client4, server4, 5000, 53, make([]byte, 1600))
	for _, s := range [][]byte{
		k4.seg(false, packet.ACK, make([]byte, 1448)), k6.seg(false, packet.ACK, make([]byte, 1428)),
		k4.seg(true, packet.SYN, nil), noDF, icmpEcho(client4, server4),
	} {
		f.Add(s, uint16(1400), true)
		f.Add(s, uint16(576), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, mtu uint16, send bool) {
		m := &MTU{MTU: max(MinMTU4, int(mtu)), ICMP: "filter"}
		if send {
			m.ICMP, m.Router = "send", []string{router4.String(), router6.String()}
		}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, "mtu", m, Match{})
		in := bytes.Clone(raw)
		var orig packet.Parsed
		orig.Decode(in)
		if orig.Version == 0 {
			return // the engine drops these before any behavior
		}
		orig.Buf = bytes.Clone(orig.Buf)
		v, _ := h.send(raw)
		limit := m.MTU
		if orig.Version == 6 {
			limit = max(limit, MinMTU6)
		}
		if v == Pass && len(orig.Buf) > limit {
			t.Fatalf("a %d-byte packet passed a %d-byte link", len(orig.Buf), limit)
		}
		var reassembled []byte
		for _, pkt := range h.injected {
			var q packet.Parsed
			q.Decode(pkt)
			if q.Version == 0 || !q.ChecksumsValid() {
				t.Fatalf("injected packet unreadable or with bad checksums: %x", pkt)
			}
			if q.Proto == orig.Proto && q.Src == orig.Src && q.Dst == orig.Dst && q.Version == 4 && q.Fragment {
				if len(pkt) > m.MTU {
					t.Fatalf("a %d-byte fragment for a %d-byte link", len(pkt), m.MTU)
				}
				reassembled = append(reassembled, pkt[int(pkt[0]&0x0f)*4:]...)
				continue
			}
			quote := q.Buf[q.L4Off+8:]
			if !send || len(quote) == 0 || !bytes.Equal(quote[:min(len(quote), orig.L4Off)], orig.Buf[:min(len(quote), orig.L4Off)]) {
				t.Fatalf("injected packet is neither a fragment nor an answer quoting the packet: %x", pkt)
			}
		}
		if reassembled != nil && !bytes.Equal(reassembled, orig.Buf[int(orig.Buf[0]&0x0f)*4:]) {
			t.Fatal("fragments do not reassemble to the packet")
		}
	})
}
