package behaviors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

// segFrom is a TCP segment from src to dst with flags and no options.
func segFrom(src, dst netip.Addr, flags packet.TCPFlags) []byte {
	buf := make([]byte, 60)
	n := packet.BuildTCP(buf, packet.TCPSpec{Src: src, Dst: dst, SrcPort: 40000, DstPort: 80, Seq: 1, Flags: flags, Window: 65535})
	return buf[:n]
}

func newClamp(t testing.TB, mss, mtu int) *MSSClamp {
	c := &MSSClamp{MSS: mss, MTU: mtu}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMSSClamp_LowersSYNAndSYNACKPerIPVersion(t *testing.T) {
	for _, tc := range []struct {
		src, dst netip.Addr
		flags    packet.TCPFlags
		want     uint16
	}{
		{client4, server4, packet.SYN, 1360},
		{server4, client4, packet.SYN | packet.ACK, 1360},
		{client6, server6, packet.SYN, 1340},
		{server6, client6, packet.SYN | packet.ACK, 1340},
	} {
		c := newClamp(t, 0, 1400)
		h := newHarness(t, "mss-clamp", c, Match{})
		syn := withOptions(segFrom(tc.src, tc.dst, tc.flags), synOptions(7)...)
		orig := bytes.Clone(syn)
		if v, _ := h.send(syn); v != Pass || !h.p.Modified() {
			t.Fatalf("verdict %v, modified %v", v, h.p.Modified())
		}
		opts := h.p.TCPOptions()
		if got := binary.BigEndian.Uint16(opts[2:4]); got != tc.want {
			t.Fatalf("%v: MSS %d, want %d", tc.src, got, tc.want)
		}
		// Only the MSS value changed (the engine fixes the checksum).
		at := h.p.L4Off + 20 + 2
		for i := range syn {
			if syn[i] != orig[i] && i != at && i != at+1 {
				t.Fatalf("byte %d changed", i)
			}
		}
		if st := c.Stats(); st["clamped"] != 1 {
			t.Fatalf("stats %v", st)
		}
	}
}

func TestMSSClamp_LeavesTheRestAlone(t *testing.T) {
	c := newClamp(t, 1200, 0)
	h := newHarness(t, "mss-clamp", c, Match{})
	small := append([]byte{packet.OptMSS, 4, 0x04, 0x00}, synOptions(7)[4:]...) // MSS 1024
	for name, pkt := range map[string][]byte{
		"MSS below the clamp": withOptions(segFrom(client4, server4, packet.SYN), small...),
		"SYN without options": segFrom(client4, server4, packet.SYN),
		"data segment":        withOptions(segFrom(client4, server4, packet.ACK), synOptions(7)...),
		"malformed options":   withOptions(segFrom(client4, server4, packet.SYN), 1, 1, 8, 40),
	} {
		orig := bytes.Clone(pkt)
		if v, _ := h.send(pkt); v != Pass || h.p.Modified() || !bytes.Equal(pkt, orig) {
			t.Errorf("%s: verdict %v, modified %v", name, v, h.p.Modified())
		}
	}
	if st := c.Stats(); st["clamped"] != 0 || st["syns_with_mss"] != 1 {
		t.Fatalf("stats %v", st)
	}
}

func TestMSSClamp_Validate(t *testing.T) {
	for _, tc := range []struct {
		c     MSSClamp
		field string
	}{
		{MSSClamp{}, "mss"},
		{MSSClamp{MSS: 1360, MTU: 1400}, "mtu"},
		{MSSClamp{MSS: 40}, "mss"},
		{MSSClamp{MTU: 1000}, "mtu"},
	} {
		var fe *FieldError
		if err := tc.c.Validate(); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: error %v, want one about %s", tc.c, err, tc.field)
		}
	}
}

func BenchmarkMSSClamp_SYN(b *testing.B) {
	r := newBenchRig(b, "mss-clamp", newClamp(b, 0, 1400))
	syn := withOptions(segFrom(client4, server4, packet.SYN), synOptions(7)...)
	orig := bytes.Clone(syn)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		copy(syn, orig)
		r.run(syn, int64(i))
	}
}

// FuzzMSSClamp: on any segment, the clamp changes nothing but the value
// of the first MSS option, never raises it, and leaves it at most the
// clamp; a segment it does not change is not marked modified.
//
//	go test ./behaviors -run '^$' -fuzz '^FuzzMSSClamp$' -fuzztime 1m
func FuzzMSSClamp(f *testing.F) {
	f.Add(withOptions(segFrom(client4, server4, packet.SYN), synOptions(7)...), uint16(1400))
	f.Add(withOptions(segFrom(server6, client6, packet.SYN|packet.ACK), synOptions(7)...), uint16(1280))
	f.Add(withOptions(segFrom(client4, server4, packet.SYN), 1, 1, 2, 4, 0xff, 0xff), uint16(9000))
	f.Fuzz(func(t *testing.T, raw []byte, mtu uint16) {
		c := &MSSClamp{MTU: max(MinMTU6, int(mtu))}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, "mss-clamp", c, Match{})
		orig := bytes.Clone(raw)
		if v, _ := h.send(raw); v != Pass {
			t.Fatal("dropped")
		}
		changed := !bytes.Equal(raw, orig)
		if changed != h.p.Modified() {
			t.Fatalf("changed %v but modified %v", changed, h.p.Modified())
		}
		if !changed {
			return
		}
		at, n, ok := h.p.TCPOption(packet.OptMSS)
		if !ok || n != 4 {
			t.Fatal("changed a segment without an MSS option")
		}
		off := at + 2
		for i := range raw {
			if raw[i] != orig[i] && i != off && i != off+1 {
				t.Fatalf("byte %d changed, not the MSS value at %d", i, off)
			}
		}
		before, after := binary.BigEndian.Uint16(orig[off:]), binary.BigEndian.Uint16(raw[off:])
		limit := c.mss4
		if h.p.Version == 6 {
			limit = c.mss6
		}
		if after >= before || after != limit {
			t.Fatalf("MSS %d became %d with clamp %d", before, after, limit)
		}
	})
}
