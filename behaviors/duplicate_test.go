package behaviors

import (
	"bytes"
	"math"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

func TestDuplicate_CopyIsIdentical(t *testing.T) {
	h := newHarness(t, "duplicate", &Duplicate{P: 1}, Match{})
	k := newConn(client4, server4, 1000, 5000)
	segs := append(k.handshake(), dataSeg(k, true, 500), dataSeg(k, false, 1000))
	for i, seg := range segs {
		orig := bytes.Clone(seg)
		if v, d := h.send(seg); v != Pass || d != 0 {
			t.Fatalf("segment %d: %v after %d ns, want pass now", i, v, d)
		}
		if len(h.injected) != i+1 || !bytes.Equal(h.injected[i], orig) {
			t.Fatalf("segment %d: copy differs from the original", i)
		}
		if !bytes.Equal(seg, orig) {
			t.Fatalf("segment %d: original changed", i)
		}
	}
}

func TestDuplicate_CopyHasCompleteChecksums(t *testing.T) {
	// An offloaded packet read from TUN carries only the pseudo-header sum;
	// the copy leaves without offload state, so it must be completed.
	raw := udpPacket(client4, server4, 5000, 53, []byte("query"))
	raw[20+6], raw[20+7] = 0x12, 0x34 // a partial checksum
	dp := newDirect(raw, 1)
	(&Duplicate{P: 1}).Handle(dp.at(0, true))
	if dp.injected != 1 {
		t.Fatalf("%d copies, want 1", dp.injected)
	}
	var c packet.Parsed
	c.Decode(dp.scratch[:len(raw)])
	if !c.ChecksumsValid() {
		t.Fatal("copy has a wrong checksum")
	}
	if dp.parsed.ChecksumsValid() || dp.p.Modified() {
		t.Fatal("original was changed")
	}
}

func TestDuplicate_Probability(t *testing.T) {
	d := &Duplicate{P: 0.3}
	dp := newDirect(udpPacket(client4, server4, 1, 2, []byte("x")), 1)
	const n = 100000
	for i := 0; i < n; i++ {
		d.Handle(dp.at(int64(i), true))
	}
	near(t, "duplicated fraction", float64(dp.injected)/n, 0.3, 5*math.Sqrt(0.21/n))
}

func TestDuplicate_Validate(t *testing.T) {
	if err := (&Duplicate{}).Validate(); err == nil {
		t.Error("p 0: no error")
	}
}

func BenchmarkDuplicate_Handle(b *testing.B) {
	d := &Duplicate{P: 1}
	dp := newDirect(udpPacket(client4, server4, 1, 2, make([]byte, 100)), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Handle(dp.at(int64(i), true))
	}
}
