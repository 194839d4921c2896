package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/faultbox/faultbox/internal/packet"
)

var (
	src4, dst4 = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	src6, dst6 = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
)

// superSpec describes a hand-built super-packet as the kernel hands it over:
// full IP length, checksum field holding only the pseudo-header sum.
type superSpec struct {
	v6      bool
	udp     bool
	seq     uint32
	flags   packet.TCPFlags
	opts    []byte // TCP options, a multiple of 4 bytes
	payload int
	mss     uint16
	ipID    uint16
}

// buildSuper writes the super-packet at buf[Headroom:] and returns it as a
// Packet with its Offload, like Read would.
func buildSuper(t testing.TB, s superSpec) Packet {
	ipLen, l4Len := 20, 20+len(s.opts)
	if s.v6 {
		ipLen = 40
	}
	if s.udp {
		l4Len = 8
	}
	n := ipLen + l4Len + s.payload
	buf := make([]byte, Headroom+n)
	b := buf[Headroom:]
	proto := uint8(packet.ProtoTCP)
	if s.udp {
		proto = packet.ProtoUDP
	}
	src, dst := src4, dst4
	if s.v6 {
		src, dst = src6, dst6
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(n-40))
		b[6], b[7] = proto, 64
		s16, d16 := src.As16(), dst.As16()
		copy(b[8:], s16[:])
		copy(b[24:], d16[:])
	} else {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		binary.BigEndian.PutUint16(b[4:], s.ipID)
		b[6], b[8], b[9] = 0x40, 64, proto
		s4, d4 := src.As4(), dst.As4()
		copy(b[12:], s4[:])
		copy(b[16:], d4[:])
		binary.BigEndian.PutUint16(b[10:], packet.Checksum(b[:20]))
	}
	l4 := b[ipLen:]
	binary.BigEndian.PutUint16(l4[0:], 40000)
	binary.BigEndian.PutUint16(l4[2:], 443)
	o := Offload{NeedsCsum: true, GSOSize: s.mss, HdrLen: uint16(ipLen + l4Len), CsumStart: uint16(ipLen)}
	if s.udp {
		binary.BigEndian.PutUint16(l4[4:], uint16(n-ipLen))
		o.CsumOffset = 6
		o.GSOType = GSOUDPL4
	} else {
		binary.BigEndian.PutUint32(l4[4:], s.seq)
		binary.BigEndian.PutUint32(l4[8:], 0x01020304)
		l4[12] = uint8(l4Len/4) << 4
		l4[13] = byte(s.flags)
		binary.BigEndian.PutUint16(l4[14:], 502)
		copy(l4[20:], s.opts)
		o.CsumOffset = 16
		o.GSOType = GSOTCPv4
		if s.v6 {
			o.GSOType = GSOTCPv6
		}
	}
	for i := range s.payload {
		l4[l4Len+i] = byte(i*7 + i>>8)
	}
	binary.BigEndian.PutUint16(l4[o.CsumOffset:], ^pseudoCsum(src, dst, proto, n-ipLen))
	return Packet{Buf: buf, Off: Headroom, Len: n, Offload: o}
}

// pseudoCsum is the test's own one's-complement pseudo-header checksum.
func pseudoCsum(src, dst netip.Addr, proto uint8, l4len int) uint16 {
	var acc uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			acc += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	acc += uint32(proto) + uint32(l4len)
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return ^uint16(acc)
}

func outBufs(n int) []Packet {
	out := make([]Packet, n)
	for i := range out {
		out[i].Buf = make([]byte, BufSize)
	}
	return out
}

var tsOpts = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps

func TestSplit_TCPSegmentsAreCompleteAndCorrect(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    superSpec
		segs int
	}{
		{"v4 ts options seq wrap", superSpec{seq: 0xffffe000, flags: packet.ACK | packet.PSH | packet.FIN | packet.CWR, opts: tsOpts, payload: 10000, mss: 1448, ipID: 0xfffe}, 7},
		{"v6 ts+sack options", superSpec{v6: true, seq: 1000, flags: packet.ACK | packet.PSH | packet.CWR, opts: append(append([]byte{}, tsOpts...), 1, 1, 5, 10, 0, 0, 0, 9, 0, 0, 0, 10), payload: 3*1208 + 100, mss: 1208}, 4},
		{"v4 exact multiple", superSpec{seq: 7, flags: packet.ACK, payload: 4 * 1460, mss: 1460, ipID: 9}, 4},
		{"v6 64k", superSpec{v6: true, seq: 1, flags: packet.ACK | packet.PSH, opts: tsOpts, payload: 65535 - 40 - 32, mss: 1428}, 46},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := buildSuper(t, tc.s)
			orig := append([]byte(nil), p.Data()...)
			out := outBufs(64)
			n, err := Split(&p, out)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.segs {
				t.Fatalf("%d segments, want %d", n, tc.segs)
			}
			if !bytes.Equal(orig, p.Data()) {
				t.Error("Split modified its input")
			}
			hdr := int(p.Offload.CsumStart) + 20 + len(tc.s.opts)
			var payload []byte
			for i := range n {
				q := out[i]
				if q.Off != Headroom || q.Offload != (Offload{}) {
					t.Fatalf("segment %d: off %d offload %+v", i, q.Off, q.Offload)
				}
				first, last := i == 0, i == n-1
				ipv, tcp := decodeSeg(t, q.Data(), tc.s.v6)
				if !tc.s.v6 {
					ip := ipv.(*layers.IPv4)
					if int(ip.Length) != q.Len || ip.Id != tc.s.ipID+uint16(i) {
						t.Errorf("segment %d: ip length %d id %#x, want %d %#x", i, ip.Length, ip.Id, q.Len, tc.s.ipID+uint16(i))
					}
					if _, r := ip.VerifyChecksum(); !r.Valid {
						t.Errorf("segment %d: bad IPv4 checksum %+v", i, r)
					}
				} else if ip := ipv.(*layers.IPv6); int(ip.Length) != q.Len-40 {
					t.Errorf("segment %d: payload length %d, want %d", i, ip.Length, q.Len-40)
				}
				if want := tc.s.seq + uint32(i)*uint32(tc.s.mss); tcp.Seq != want {
					t.Errorf("segment %d: seq %d, want %d", i, tcp.Seq, want)
				}
				wantLen := int(tc.s.mss)
				if last {
					wantLen = tc.s.payload - i*int(tc.s.mss)
				}
				if len(tcp.Payload) != wantLen || q.Len != hdr+wantLen {
					t.Errorf("segment %d: payload %d len %d, want %d %d", i, len(tcp.Payload), q.Len, wantLen, hdr+wantLen)
				}
				f := tc.s.flags
				if tcp.ACK != (f&packet.ACK != 0) || tcp.FIN != (last && f&packet.FIN != 0) ||
					tcp.PSH != (last && f&packet.PSH != 0) || tcp.CWR != (first && f&packet.CWR != 0) {
					t.Errorf("segment %d: ack %v fin %v psh %v cwr %v", i, tcp.ACK, tcp.FIN, tcp.PSH, tcp.CWR)
				}
				if !bytes.Equal(q.Data()[p.Offload.CsumStart+20:hdr], tc.s.opts) {
					t.Errorf("segment %d: options changed", i)
				}
				if _, r := tcp.VerifyChecksum(); !r.Valid {
					t.Errorf("segment %d: bad TCP checksum %+v", i, r)
				}
				payload = append(payload, tcp.Payload...)
			}
			if !bytes.Equal(payload, orig[hdr:]) {
				t.Error("segments' payloads do not add up to the super-packet's")
			}
		})
	}
}

// decodeSeg decodes a segment with gopacket, independent of our parser.
func decodeSeg(t *testing.T, b []byte, v6 bool) (gopacket.NetworkLayer, *layers.TCP) {
	t.Helper()
	first := layers.LayerTypeIPv4
	if v6 {
		first = layers.LayerTypeIPv6
	}
	pk := gopacket.NewPacket(b, first, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	tcp, ok := pk.TransportLayer().(*layers.TCP)
	if !ok {
		t.Fatalf("no TCP layer in %x", b)
	}
	if err := tcp.SetNetworkLayerForChecksum(pk.NetworkLayer()); err != nil {
		t.Fatal(err)
	}
	return pk.NetworkLayer(), tcp
}

func TestSplit_UDPL4(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		p := buildSuper(t, superSpec{v6: v6, udp: true, payload: 3000, mss: 1200, ipID: 5})
		out := outBufs(8)
		n, err := Split(&p, out)
		if err != nil || n != 3 {
			t.Fatalf("v6=%v: n=%d err=%v, want 3 segments", v6, n, err)
		}
		first := layers.LayerTypeIPv4
		if v6 {
			first = layers.LayerTypeIPv6
		}
		for i := range n {
			pk := gopacket.NewPacket(out[i].Data(), first, gopacket.Default)
			udp, ok := pk.TransportLayer().(*layers.UDP)
			if !ok {
				t.Fatalf("v6=%v segment %d: no UDP layer", v6, i)
			}
			udp.SetNetworkLayerForChecksum(pk.NetworkLayer())
			want := []int{1200, 1200, 600}[i]
			if len(udp.Payload) != want || int(udp.Length) != want+8 {
				t.Errorf("v6=%v segment %d: payload %d length %d, want %d", v6, i, len(udp.Payload), udp.Length, want)
			}
			if _, r := udp.VerifyChecksum(); !r.Valid {
				t.Errorf("v6=%v segment %d: bad UDP checksum %+v", v6, i, r)
			}
			if ip, ok := pk.NetworkLayer().(*layers.IPv4); ok && ip.Id != 5+uint16(i) {
				t.Errorf("segment %d: ip id %d", i, ip.Id)
			}
		}
	}
}

func TestComplete_FinishesPartialChecksum(t *testing.T) {
	for _, dst := range []netip.Addr{dst4, dst6} {
		src := src4
		if dst.Is6() {
			src = src6
		}
		buf := make([]byte, BufSize)
		n := packet.BuildTCP(buf[Headroom:], packet.TCPSpec{Src: src, Dst: dst, SrcPort: 1, DstPort: 2, Seq: 3, Flags: packet.ACK, Payload: []byte("hello, world")})
		p := Packet{Buf: buf, Off: Headroom, Len: n}
		ipLen := n - 20 - 12
		field := p.Data()[ipLen+16:]
		good := binary.BigEndian.Uint16(field)
		binary.BigEndian.PutUint16(field, ^pseudoCsum(src, dst, packet.ProtoTCP, n-ipLen))
		p.Offload = Offload{NeedsCsum: true, CsumStart: uint16(ipLen), CsumOffset: 16}

		// Split of a non-GSO packet copies and completes it too.
		out := outBufs(1)
		if k, err := Split(&p, out); err != nil || k != 1 || binary.BigEndian.Uint16(out[0].Data()[ipLen+16:]) != good || out[0].Offload.NeedsCsum {
			t.Errorf("%v: Split of plain packet: n=%d err=%v", dst, k, err)
		}
		if err := Complete(&p); err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint16(field); got != good || p.Offload.NeedsCsum {
			t.Errorf("%v: completed checksum %#x, want %#x (NeedsCsum %v)", dst, got, good, p.Offload.NeedsCsum)
		}
	}
}

// A checksum start inside the IP header (no kernel sends one) is refused,
// not written over the header: the fuzz target found such a packet leaving
// with its version byte overwritten.
func TestComplete_RefusesAStartInsideTheIPHeader(t *testing.T) {
	for _, tc := range []struct {
		dst   netip.Addr
		start uint16
	}{{dst4, 0}, {dst4, 19}, {dst6, 0}, {dst6, 39}} {
		src := src4
		if tc.dst.Is6() {
			src = src6
		}
		buf := make([]byte, BufSize)
		n := packet.BuildTCP(buf[Headroom:], packet.TCPSpec{Src: src, Dst: tc.dst, SrcPort: 1, DstPort: 2, Seq: 3, Flags: packet.ACK, Payload: []byte("hello")})
		p := Packet{Buf: buf, Off: Headroom, Len: n, Offload: Offload{NeedsCsum: true, CsumStart: tc.start}}
		before := append([]byte(nil), p.Data()...)
		if err := Complete(&p); !errors.Is(err, ErrBadOffload) {
			t.Errorf("%v csum_start %d: err %v, want ErrBadOffload", tc.dst, tc.start, err)
		}
		if !bytes.Equal(p.Data(), before) {
			t.Errorf("%v csum_start %d: packet changed", tc.dst, tc.start)
		}
	}
}

func TestSplit_HostileHeadersGiveErrors(t *testing.T) {
	good := func() Packet {
		return buildSuper(t, superSpec{seq: 1, flags: packet.ACK, opts: tsOpts, payload: 3000, mss: 1000})
	}
	for _, tc := range []struct {
		name string
		mod  func(p *Packet) []Packet
		want error
	}{
		{"gso_size 0", func(p *Packet) []Packet { p.Offload.GSOSize = 0; return nil }, ErrBadOffload},
		{"hdr_len beyond packet", func(p *Packet) []Packet { p.Offload.HdrLen = uint16(p.Len + 1); return nil }, ErrBadOffload},
		{"truncated to 30 bytes", func(p *Packet) []Packet { p.Len = 30; return nil }, ErrBadOffload},
		{"tcp data offset beyond", func(p *Packet) []Packet { p.Len = 40; p.Data()[2], p.Data()[3] = 0, 40; return nil }, ErrBadOffload},
		{"v4 packet says tcpv6", func(p *Packet) []Packet { p.Offload.GSOType = GSOTCPv6; return nil }, ErrBadOffload},
		{"unknown gso type", func(p *Packet) []Packet { p.Offload.GSOType = 9; return nil }, ErrBadOffload},
		{"not IP", func(p *Packet) []Packet { p.Data()[0] = 0x25; return nil }, ErrBadOffload},
		{"len beyond buffer", func(p *Packet) []Packet { p.Len += 100; return nil }, ErrBadOffload},
		{"negative off", func(p *Packet) []Packet { p.Off = -1; return nil }, ErrBadOffload},
		{"segment larger than 64k", func(p *Packet) []Packet { p.Offload.GSOSize = 65535; return nil }, ErrBadOffload},
		{"too few outs", func(p *Packet) []Packet { return outBufs(2) }, ErrShortOut},
		{"small out buffers", func(p *Packet) []Packet {
			o := outBufs(3)
			o[2].Buf = o[2].Buf[:Headroom+100]
			return o
		}, ErrShortOut},
		{"no outs", func(p *Packet) []Packet { return []Packet{} }, ErrShortOut},
	} {
		p := good()
		out := tc.mod(&p)
		if out == nil {
			out = outBufs(4)
		}
		if _, err := Split(&p, out); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	p := good()
	if err := Complete(&p); !errors.Is(err, ErrBadOffload) {
		t.Errorf("Complete of a GSO packet: %v", err)
	}
	p.Offload = Offload{NeedsCsum: true, CsumStart: uint16(p.Len - 1), CsumOffset: 0}
	if err := Complete(&p); !errors.Is(err, ErrBadOffload) {
		t.Errorf("Complete with the field beyond the packet: %v", err)
	}
	p.Offload = Offload{NeedsCsum: true, CsumStart: 65535, CsumOffset: 65535}
	if err := Complete(&p); !errors.Is(err, ErrBadOffload) {
		t.Errorf("Complete with huge offsets: %v", err)
	}
}

// TestSplit_RandomInputNeverPanics feeds mutated super-packets and random
// offload descriptors; any panic fails the test.
func TestSplit_RandomInputNeverPanics(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	out := outBufs(70)
	for i := 0; i < 20000; i++ {
		p := buildSuper(t, superSpec{v6: r.IntN(2) == 0, udp: r.IntN(4) == 0, seq: r.Uint32(), flags: packet.TCPFlags(r.Uint32()), opts: tsOpts[:4*r.IntN(4)], payload: r.IntN(5000), mss: uint16(r.IntN(2000))})
		d := p.Buf[p.Off:]
		for k := r.IntN(4); k > 0; k-- {
			d[r.IntN(min(len(d), 80))] = byte(r.Uint32())
		}
		if r.IntN(3) == 0 {
			p.Len = r.IntN(p.Len + 1)
		}
		if r.IntN(3) == 0 {
			p.Offload = Offload{GSOType: uint8(r.IntN(5)), NeedsCsum: r.IntN(2) == 0, HdrLen: uint16(r.Uint32()), GSOSize: uint16(r.IntN(3000)), CsumStart: uint16(r.IntN(200)), CsumOffset: uint16(r.IntN(40))}
		}
		Split(&p, out[:r.IntN(len(out)+1)])
		Complete(&p)
	}
}

// BenchmarkSplit: a 64 KB super-packet cut into complete segments, into
// partial ones, and looked at in place (SegmentViews).
func BenchmarkSplit(b *testing.B) {
	p := buildSuper(b, superSpec{seq: 1, flags: packet.ACK | packet.PSH, opts: tsOpts, payload: 65535 - 20 - 32, mss: 1448})
	out := outBufs(64)
	for _, split := range []struct {
		name string
		fn   func(*Packet, []Packet) (int, error)
	}{{"full", Split}, {"partial", SplitPartial}} {
		b.Run(split.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(p.Len))
			for b.Loop() {
				if n, err := split.fn(&p, out); err != nil || n != 46 {
					b.Fatalf("n=%d err=%v", n, err)
				}
			}
		})
	}
	b.Run("views", func(b *testing.B) {
		var v SegmentViews
		b.ReportAllocs()
		b.SetBytes(int64(p.Len))
		for b.Loop() {
			n, err := v.Start(&p)
			if err != nil || n != 46 {
				b.Fatalf("n=%d err=%v", n, err)
			}
			for i := range n {
				v.View(i)
			}
			v.Restore()
		}
	})
}

// FuzzSplit: any bytes with any offload descriptor give segments or an
// error, never a panic; segments of a successful split are valid packets.
// SegmentViews agree with SplitPartial on every segment, and leave the
// super-packet as it was.
func FuzzSplit(f *testing.F) {
	p := buildSuper(f, superSpec{seq: 1, flags: packet.ACK | packet.FIN, opts: tsOpts, payload: 3000, mss: 1000})
	f.Add(p.Data(), GSOTCPv4, true, uint16(52), uint16(1000), uint16(20), uint16(16))
	p = buildSuper(f, superSpec{v6: true, udp: true, payload: 2000, mss: 700})
	f.Add(p.Data(), GSOUDPL4, true, uint16(48), uint16(700), uint16(40), uint16(6))
	out, part := outBufs(70), outBufs(70)
	var views SegmentViews
	f.Fuzz(func(t *testing.T, data []byte, gso uint8, csum bool, hdrLen, gsoSize, csumStart, csumOff uint16) {
		buf := make([]byte, Headroom+len(data))
		copy(buf[Headroom:], data)
		p := Packet{Buf: buf, Off: Headroom, Len: len(data), Offload: Offload{GSOType: gso, NeedsCsum: csum, HdrLen: hdrLen, GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOff}}
		if m, err := SplitPartial(&p, part); err == nil && p.Offload.IsGSO() {
			checkViews(t, &views, &p, part[:m], data)
		}
		n, err := Split(&p, out)
		if err != nil || !p.Offload.IsGSO() {
			return
		}
		for i := range n {
			var h packet.Parsed
			h.Decode(out[i].Data())
			if h.Malformed != packet.OK || !h.ChecksumsValid() {
				t.Fatalf("segment %d of %d: malformed %v or bad checksum", i, n, h.Malformed)
			}
		}
	})
}

// checkViews checks that views of p give SplitPartial's segments and leave
// p's bytes (data) as they were; headers too long to view are left to Split.
func checkViews(t *testing.T, views *SegmentViews, p *Packet, segs []Packet, data []byte) {
	t.Helper()
	n, err := views.Start(p)
	if errors.Is(err, ErrLongHeaders) {
		return
	}
	if err != nil || n != len(segs) {
		t.Fatalf("views: %d segments, %v; SplitPartial %d", n, err, len(segs))
	}
	for i := range n {
		v := views.View(i)
		if !bytes.Equal(v.Data(), segs[i].Data()) || v.Offload != segs[i].Offload {
			t.Fatalf("view %d of %d differs from SplitPartial's segment", i, n)
		}
	}
	views.Restore()
	if !bytes.Equal(p.Data(), data) {
		t.Fatal("views left the super-packet changed")
	}
}

// TestSplitPartial_CompletesToTheSameSegmentsAsSplit checks that a partially
// checksummed segment, once completed the way the kernel would, is byte for
// byte the segment Split produces.
func TestSplitPartial_CompletesToTheSameSegmentsAsSplit(t *testing.T) {
	for _, spec := range []superSpec{
		{seq: 0xfffffff0, flags: packet.ACK | packet.PSH | packet.FIN, payload: 3000, mss: 1000, ipID: 7},
		{v6: true, seq: 1, flags: packet.ACK, opts: []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, payload: 2500, mss: 1000},
		{udp: true, payload: 2100, mss: 1000},
	} {
		sp := buildSuper(t, spec)
		v6 := spec.v6
		full := make([]Packet, 8)
		part := make([]Packet, 8)
		for i := range full {
			full[i].Buf = make([]byte, BufSize)
			part[i].Buf = make([]byte, BufSize)
		}
		n, err := Split(&sp, full)
		if err != nil {
			t.Fatal(err)
		}
		m, err := SplitPartial(&sp, part)
		if err != nil || m != n {
			t.Fatalf("SplitPartial: %d segments, %v", m, err)
		}
		for i := 0; i < n; i++ {
			if !part[i].Offload.NeedsCsum {
				t.Fatalf("segment %d not marked NeedsCsum", i)
			}
			if err := Complete(&part[i]); err != nil {
				t.Fatal(err)
			}
			if string(part[i].Data()) != string(full[i].Data()) {
				t.Fatalf("v6=%v segment %d differs after Complete", v6, i)
			}
		}
	}
}

// TestSegmentViews_AreSplitPartialInPlace: every view is byte for byte the
// segment SplitPartial copies out, Copy gives the same, and once restored
// the super-packet is as it was, whatever the MSS (smaller than the
// headers too).
func TestSegmentViews_AreSplitPartialInPlace(t *testing.T) {
	for _, spec := range []superSpec{
		{seq: 0xfffffff0, flags: packet.ACK | packet.PSH | packet.FIN | packet.CWR, opts: tsOpts, payload: 10000, mss: 1448, ipID: 0xfffe},
		{v6: true, seq: 1, flags: packet.ACK, opts: tsOpts, payload: 65535 - 40 - 32, mss: 1428},
		{udp: true, payload: 2100, mss: 1000},
		{seq: 5, flags: packet.ACK, payload: 100, mss: 30}, // MSS below the header length
		{seq: 5, flags: packet.ACK | packet.FIN, payload: 0, mss: 1000},
	} {
		sp := buildSuper(t, spec)
		orig := append([]byte(nil), sp.Data()...)
		segs := outBufs(64)
		n, err := SplitPartial(&sp, segs)
		if err != nil {
			t.Fatal(err)
		}
		var v SegmentViews
		if m, err := v.Start(&sp); err != nil || m != n {
			t.Fatalf("%+v: Start: %d segments (want %d), %v", spec, m, n, err)
		}
		for i := 0; i < n; i++ {
			q := v.View(i)
			if !bytes.Equal(q.Data(), segs[i].Data()) || q.Offload != segs[i].Offload {
				t.Fatalf("%+v: view %d differs from SplitPartial's segment", spec, i)
			}
			if q.Off < Headroom {
				t.Fatalf("view %d at offset %d", i, q.Off)
			}
			var c Packet
			c.Buf = make([]byte, BufSize)
			if err := v.Copy(i, &c); err != nil || !bytes.Equal(c.Data(), segs[i].Data()) || c.Offload != segs[i].Offload {
				t.Fatalf("%+v: copy %d differs (%v)", spec, i, err)
			}
			if !bytes.Equal(sp.Data(), orig) {
				t.Fatalf("%+v: super-packet not restored after segment %d", spec, i)
			}
		}
		v.View(n - 1)
		v.Restore()
		if !bytes.Equal(sp.Data(), orig) {
			t.Fatalf("%+v: super-packet not restored", spec)
		}
	}
	var v SegmentViews
	plain := buildSuper(t, superSpec{payload: 100, mss: 1000})
	plain.Offload = Offload{}
	if _, err := v.Start(&plain); !errors.Is(err, ErrBadOffload) {
		t.Errorf("a plain packet: %v", err)
	}
}

// TestSegmentViews_LeaveLongHeadersToSplit: an IPv6 super-packet whose
// extension headers pass what views hold is refused with ErrLongHeaders
// (the engine then splits it by copying), and Split makes valid segments.
func TestSegmentViews_LeaveLongHeadersToSplit(t *testing.T) {
	sp := buildSuper(t, superSpec{v6: true, udp: true, payload: 2000, mss: 700})
	const optLen = 264 // destination options, (32+1)*8 bytes
	d := sp.Data()
	long := make([]byte, Headroom+len(d)+optLen)
	b := long[Headroom:]
	copy(b, d[:40])
	copy(b[40+optLen:], d[40:])
	b[6] = 60 // next header: destination options
	b[40], b[41] = packet.ProtoUDP, optLen/8-1
	b[42], b[43] = 1, 200 // two PadN options fill the header
	b[244], b[245] = 1, optLen-2-202-2
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	p := Packet{Buf: long, Off: Headroom, Len: len(b), Offload: sp.Offload}

	var v SegmentViews
	if _, err := v.Start(&p); !errors.Is(err, ErrLongHeaders) {
		t.Fatalf("Start: %v, want ErrLongHeaders", err)
	}
	segs := outBufs(8)
	n, err := Split(&p, segs)
	if err != nil || n != 3 {
		t.Fatalf("Split: %d segments, %v; want 3", n, err)
	}
	for i := range n {
		var h packet.Parsed
		h.Decode(segs[i].Data())
		if h.Malformed != packet.OK || !h.ChecksumsValid() || h.PayloadOff != 40+optLen+8 {
			t.Fatalf("segment %d: malformed %v, payload at %d", i, h.Malformed, h.PayloadOff)
		}
	}
}
