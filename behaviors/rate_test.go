package behaviors

import (
	"slices"
	"testing"
	"time"
)

// A TCP segment with 1460 payload bytes is a 1500-byte IPv4 packet.
const mss4 = 1460

func TestRate_GoodputExactOverManyPackets(t *testing.T) {
	// 33 kbit/s does not divide a 1500-byte packet's 12000 bits into whole
	// nanoseconds (363636363.6 ns each); the carried remainder must keep the
	// k-th departure at exactly floor(k * 12000 bit / 33 kbit/s).
	h := newHarness(t, "rate", &RateLimit{Rate: 33000, Limit: 1 << 30}, Match{Direction: Downstream})
	k := newConn(client4, server4, 1000, 5000)
	for _, seg := range k.handshake() {
		h.send(seg)
	}
	h.now += int64(time.Second) // let the SYN-ACK leave
	const n = 33000
	var last int64
	for i := 1; i <= n; i++ {
		v, d := h.send(dataSeg(k, false, mss4))
		if v != Pass {
			t.Fatalf("packet %d dropped", i)
		}
		if want := int64(uint64(i) * 12000 * 1e9 / 33000); d != want {
			t.Fatalf("packet %d departs after %d ns, want %d", i, d, want)
		}
		last = d
	}
	if got := float64(n*1500*8) / (float64(last) / 1e9); got != 33000 {
		t.Fatalf("goodput %.3f bit/s, want 33000", got)
	}
}

func TestRate_PacedBelowRateIsNotQueued(t *testing.T) {
	h := newHarness(t, "rate", &RateLimit{Rate: 1_000_000, Overhead: 38}, Match{})
	k := newConn(client4, server4, 1000, 5000)
	h.send(k.handshake()[0])
	want := int64((1500 + 38) * 8 * 1000) // ns at 1 Mbit/s
	for i := 0; i < 100; i++ {
		h.now += int64(20 * time.Millisecond)
		if _, d := h.send(dataSeg(k, true, mss4)); d != want {
			t.Fatalf("packet %d: delay %d ns, want %d (transmission time only)", i, d, want)
		}
	}
}

func TestRate_TailDrop(t *testing.T) {
	for _, l := range []*RateLimit{
		{Rate: 1_000_000, Limit: 3000},
		{Rate: 1_000_000, LimitTime: 24 * time.Millisecond},
	} {
		h := newHarness(t, "rate", l, Match{})
		k := newConn(client4, server4, 1000, 5000)
		h.send(k.handshake()[0]) // 40 bytes, leaves before the burst
		h.now += int64(time.Second)
		var verdicts []Verdict
		for i := 0; i < 5; i++ {
			v, _ := h.send(dataSeg(k, true, mss4))
			verdicts = append(verdicts, v)
		}
		// 3000 bytes hold two 1500-byte packets; the rest of the burst is dropped.
		if want := []Verdict{Pass, Pass, Drop, Drop, Drop}; !slices.Equal(verdicts, want) {
			t.Fatalf("%+v: verdicts %v, want %v", l, verdicts, want)
		}
		// After one transmission time (12 ms) one packet's room is free again.
		h.now += int64(12 * time.Millisecond)
		if v, d := h.send(dataSeg(k, true, mss4)); v != Pass || d != int64(24*time.Millisecond) {
			t.Fatalf("%+v: after draining: %v, delay %v, want pass after 24ms", l, v, time.Duration(d))
		}
		if v, _ := h.send(dataSeg(k, true, mss4)); v != Drop {
			t.Fatalf("%+v: queue over its limit accepted a packet", l)
		}
	}
}

func TestRate_DirectionsAreIndependent(t *testing.T) {
	h := newHarness(t, "rate", &RateLimit{Rate: 100_000, LimitTime: 10 * time.Second}, Match{})
	k := newConn(client4, server4, 1000, 5000)
	for _, seg := range k.handshake() {
		h.send(seg)
	}
	h.now += int64(time.Second)
	for i := 0; i < 20; i++ { // 2.4 s of upstream backlog
		h.send(dataSeg(k, true, mss4))
	}
	if _, d := h.send(dataSeg(k, false, mss4)); d != int64(120*time.Millisecond) {
		t.Fatalf("downstream packet waited %v behind upstream traffic, want 120ms", time.Duration(d))
	}
	if _, d := h.send(dataSeg(k, true, mss4)); d != int64(21*120*time.Millisecond) {
		t.Fatalf("upstream packet 21 leaves after %v, want 2.52s", time.Duration(d))
	}
}

func TestRate_DefaultLimit(t *testing.T) {
	l := &RateLimit{Rate: 1_000_000}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	// 64 KiB at 1 Mbit/s is 524.288 ms, more than 100 ms.
	if l.limitNs != 524288000 {
		t.Fatalf("default limit %v, want 524.288ms", time.Duration(l.limitNs))
	}
	l = &RateLimit{Rate: 100_000_000}
	l.Validate()
	if l.limitNs != int64(100*time.Millisecond) {
		t.Fatalf("default limit %v at 100 Mbit/s, want 100ms", time.Duration(l.limitNs))
	}
}

func TestRate_Validate(t *testing.T) {
	for _, l := range []*RateLimit{{}, {Rate: 1, Limit: 1, LimitTime: 1}, {Rate: 1, Overhead: -1}, {Rate: 1, LimitTime: -1}} {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v: no error", l)
		}
	}
}

func BenchmarkRate_Handle(b *testing.B) {
	l := &RateLimit{Rate: 1_000_000_000, Overhead: 38}
	if err := l.Validate(); err != nil {
		b.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, make([]byte, 1472)), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Handle(dp.at(int64(i)*12304, i&1 == 0))
	}
}
