package tun

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

// datagrams cuts a UDP super-packet into the datagrams a kernel with
// checksum offload hands over (partial checksums), in fresh buffers.
func datagrams(t *testing.T, s superSpec) []Packet {
	t.Helper()
	s.udp = true
	super := buildSuper(t, s)
	out := outBufs(64)
	n, err := SplitPartial(&super, out)
	if err != nil {
		t.Fatal(err)
	}
	return out[:n]
}

// joined is the run as the kernel receives it: the first packet (headers
// rewritten) followed by the others' payloads.
func joined(run []Packet, hdrLen int) []byte {
	b := append([]byte(nil), run[0].Data()...)
	for _, p := range run[1:] {
		b = append(b, p.Data()[hdrLen:]...)
	}
	return b
}

// TestUDPRun_JoinIsTheSendersSuperPacket: a run of datagrams as a sender's
// USO super-packet comes out of the kernel, joined again, is that same
// super-packet byte for byte (lengths, IPv4 header checksum, the partial
// UDP checksum), and restoring gives the first datagram back.
func TestUDPRun_JoinIsTheSendersSuperPacket(t *testing.T) {
	for _, s := range []superSpec{
		{payload: 10*100 + 37, mss: 100, ipID: 0xfffa}, // IDs wrap inside the run
		{v6: true, payload: 7 * 1200, mss: 1200},
		{payload: 2 * 64, mss: 64, ipID: 3},
	} {
		s.udp = true
		want := buildSuper(t, s)
		dg := datagrams(t, s)
		first := append([]byte(nil), dg[0].Data()...)
		if n := udpRun(dg); n != len(dg) {
			t.Fatalf("%+v: run of %d, want all %d", s, n, len(dg))
		}
		var hdrs [48]byte
		o, hdrLen := joinUDPRun(dg, &hdrs)
		if got := joined(dg, hdrLen); !bytes.Equal(got, want.Data()) {
			t.Errorf("%+v: joined packet differs from the super-packet\n got %x\nwant %x", s, got[:hdrLen], want.Data()[:hdrLen])
		}
		if o != want.Offload {
			t.Errorf("%+v: offload %+v, want %+v", s, o, want.Offload)
		}
		restoreUDPRun(&dg[0], &hdrs, hdrLen)
		if !bytes.Equal(dg[0].Data(), first) {
			t.Errorf("%+v: first datagram not restored", s)
		}
	}
}

// TestUDPRun_Bounds: where a run must stop.
func TestUDPRun_Bounds(t *testing.T) {
	spec := superSpec{payload: 10 * 100, mss: 100, ipID: 100}
	for _, tc := range []struct {
		name   string
		mutate func(dg []Packet) // applied to a run of 10 datagrams of 100 bytes
		want   int
	}{
		{"whole", func([]Packet) {}, 10},
		{"IPv4 ID gap", func(dg []Packet) { binary.BigEndian.PutUint16(dg[4].Data()[4:], 999) }, 4},
		{"other TTL", func(dg []Packet) { dg[3].Data()[8] = 1 }, 3},
		{"bad IPv4 header checksum", func(dg []Packet) { dg[3].Data()[11]++ }, 3},
		{"bad partial UDP checksum", func(dg []Packet) { dg[6].Data()[27]++ }, 6},
		{"other TOS", func(dg []Packet) { dg[5].Data()[1] = 0x10 }, 5},
		{"other source port", func(dg []Packet) { dg[6].Data()[21]++ }, 6},
		{"fragment", func(dg []Packet) { dg[2].Data()[6] |= 0x20 }, 2},
		{"complete checksum", func(dg []Packet) { dg[7].Offload = Offload{} }, 7},
		{"first has a complete checksum", func(dg []Packet) { dg[0].Offload = Offload{} }, 1},
		{"longer", func(dg []Packet) { growUDP(&dg[8], 1) }, 8},
		{"shorter ends the run", func(dg []Packet) { growUDP(&dg[4], -10) }, 5},
		{"empty payload", func(dg []Packet) { growUDP(&dg[3], -100) }, 3},
		{"bad length field", func(dg []Packet) { dg[2].Data()[25]++ }, 2},
		{"outside its buffer", func(dg []Packet) { dg[1].Len = len(dg[1].Buf) }, 1},
	} {
		dg := datagrams(t, spec)
		tc.mutate(dg)
		if got := udpRun(dg); got != tc.want {
			t.Errorf("%s: run of %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := udpRun(datagrams(t, superSpec{payload: 2 * 10, mss: 10})[:1]); got != 1 {
		t.Errorf("a single datagram: run of %d", got)
	}
	// At most maxUDPRun datagrams, at most MaxPacket bytes.
	many := append(datagrams(t, superSpec{payload: 60 * 10, mss: 10}), datagrams(t, superSpec{payload: 40 * 10, mss: 10, ipID: 60})...)
	if got := udpRun(many); got != maxUDPRun {
		t.Errorf("100 datagrams: run of %d, want %d", got, maxUDPRun)
	}
	big := datagrams(t, superSpec{v6: true, payload: 60 * 1400, mss: 1400})
	if got, want := udpRun(big), (MaxPacket-48)/1400; got != want {
		t.Errorf("1400-byte datagrams: run of %d, want %d (64 KiB)", got, want)
	}
}

// growUDP changes an IPv4 datagram's payload length by delta, keeping its
// length fields consistent.
func growUDP(p *Packet, delta int) {
	p.Len += delta
	d := p.Buf[p.Off : p.Off+p.Len]
	binary.BigEndian.PutUint16(d[2:], uint16(len(d)))
	d[10], d[11] = 0, 0
	binary.BigEndian.PutUint16(d[10:], packet.Checksum(d[:20]))
	binary.BigEndian.PutUint16(d[24:], uint16(len(d)-20))
	binary.BigEndian.PutUint16(d[26:], packet.FoldPseudoHeader(pseudoPartial(d, 20), len(d)-20))
}

// FuzzUDPRun: whatever the datagrams, a run is at least the first and at
// most all of them, and what the kernel cuts the joined super-packet into
// (SplitPartial models it) is, byte for byte, the datagrams of the run;
// restoring gives the first one back.
func FuzzUDPRun(f *testing.F) {
	f.Add([]byte{}, uint8(5), uint8(3), false)
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(63), uint8(10), true)
	f.Fuzz(func(t *testing.T, mutate []byte, count, size uint8, v6 bool) {
		n := int(count%70) + 1
		payload := n*(int(size)+1) - int(size)/2 // a shorter last one
		s := superSpec{v6: v6, udp: true, payload: payload, mss: uint16(size) + 1, ipID: uint16(len(mutate)) * 977}
		super := buildSuper(t, s)
		all := outBufs(72)
		k, err := SplitPartial(&super, all)
		if err != nil {
			return
		}
		dg := all[:k]
		// Pairs of (datagram, offset, value) from mutate change bytes.
		for i := 0; i+2 < len(mutate); i += 3 {
			d := dg[int(mutate[i])%k].Data()
			d[int(mutate[i+1])%len(d)] = mutate[i+2]
		}
		orig := make([][]byte, k)
		for i := range dg {
			orig[i] = append([]byte(nil), dg[i].Data()...)
		}
		r := udpRun(dg)
		if r < 1 || r > k {
			t.Fatalf("run of %d from %d datagrams", r, k)
		}
		if r == 1 {
			return
		}
		var hdrs [48]byte
		o, hdrLen := joinUDPRun(dg[:r], &hdrs)
		j := joined(dg[:r], hdrLen)
		buf := make([]byte, Headroom+len(j))
		copy(buf[Headroom:], j)
		jp := Packet{Buf: buf, Off: Headroom, Len: len(j), Offload: o}
		segs := outBufs(maxUDPRun)
		m, err := SplitPartial(&jp, segs)
		if err != nil || m != r {
			t.Fatalf("the joined packet cuts into %d segments (%v), want %d", m, err, r)
		}
		for i := range m {
			if !bytes.Equal(segs[i].Data(), orig[i]) || segs[i].Offload != dg[i].Offload {
				t.Fatalf("segment %d of the joined packet differs from datagram %d:\n got %x\nwant %x", i, i, segs[i].Data(), orig[i])
			}
		}
		restoreUDPRun(&dg[0], &hdrs, hdrLen)
		if !bytes.Equal(dg[0].Data(), orig[0]) {
			t.Fatal("first datagram not restored")
		}
	})
}
