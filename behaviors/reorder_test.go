package behaviors

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestReorder_GapHoldsEveryNthPacketPerDirection(t *testing.T) {
	h := newHarness(t, "reorder", &Reorder{P: 1, Delay: 5 * time.Millisecond, Gap: 3}, Match{})
	k := newConn(client4, server4, 1000, 5000)
	for _, seg := range k.handshake() { // upstream 2, downstream 1
		h.send(seg)
	}
	// Upstream counts on from 2: its 3rd, 6th ... packets are held; the
	// downstream count from 1.
	var heldUp, heldDown []int
	for i := 0; i < 12; i++ {
		h.now += int64(time.Millisecond)
		up := i%2 == 0
		_, d := h.send(dataSeg(k, up, 10))
		switch {
		case d == int64(5*time.Millisecond) && up:
			heldUp = append(heldUp, i)
		case d == int64(5*time.Millisecond):
			heldDown = append(heldDown, i)
		case d != 0:
			t.Fatalf("packet %d: delay %v, want 0 or 5ms", i, time.Duration(d))
		}
	}
	// Upstream packets are i = 0, 2, 4, ... (its 3rd, 4th, 5th ... packet).
	if want := []int{0, 6}; !slices.Equal(heldUp, want) {
		t.Errorf("held upstream packets %v, want %v", heldUp, want)
	}
	// Downstream packets are i = 1, 3, 5, ... (its 2nd, 3rd, 4th ...).
	if want := []int{3, 9}; !slices.Equal(heldDown, want) {
		t.Errorf("held downstream packets %v, want %v", heldDown, want)
	}
}

func TestReorder_LaterPacketsOvertake(t *testing.T) {
	r := &Reorder{P: 0.1, Delay: 10 * time.Millisecond}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, nil), 1)
	const n = 100000
	held, overtaken := 0, 0
	var prev int64
	for i := 0; i < n; i++ {
		now := int64(i) * int64(time.Millisecond)
		p := dp.at(now, true)
		r.Handle(p)
		if p.Depart > now {
			held++
		}
		if p.Depart < prev {
			overtaken++
		}
		prev = p.Depart
	}
	near(t, "held fraction", float64(held)/n, 0.1, 5*math.Sqrt(0.09/n))
	if overtaken == 0 {
		t.Error("no packet overtook a held one")
	}
}

func TestReorder_Validate(t *testing.T) {
	for _, r := range []*Reorder{{Delay: time.Millisecond}, {P: 0.1}, {P: 0.1, Delay: 1, Gap: -1}} {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}

func BenchmarkReorder_Handle(b *testing.B) {
	r := &Reorder{P: 0.05, Delay: 10 * time.Millisecond, Gap: 2}
	dp := newDirect(udpPacket(client4, server4, 1, 2, nil), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Handle(dp.at(int64(i), i&1 == 0))
	}
}
