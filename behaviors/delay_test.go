package behaviors

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestDelay_FixedDelayBothDirections(t *testing.T) {
	h := newHarness(t, "delay", &Delay{Delay: 100 * time.Millisecond}, Match{})
	k := newConn(client4, server4, 1000, 5000)
	for i, seg := range k.handshake() {
		h.now += int64(time.Millisecond)
		if v, d := h.send(seg); v != Pass || d != int64(100*time.Millisecond) {
			t.Fatalf("segment %d: verdict %v, delay %v, want pass after 100ms", i, v, time.Duration(d))
		}
	}
}

// jitterSamples runs n packets one second apart (far more than the jitter,
// so order keeping never holds one) and returns their delays minus the
// fixed delay, in units of the jitter.
func jitterSamples(t *testing.T, d *Delay, n int) []float64 {
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, nil), 1)
	xs := make([]float64, n)
	for i := range xs {
		now := int64(i) * int64(time.Second)
		p := dp.at(now, i%2 == 0)
		d.Handle(p)
		xs[i] = float64(p.Depart-now-int64(d.Delay)) / float64(d.Jitter)
	}
	return xs
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func TestDelay_JitterDistributions(t *testing.T) {
	paretoMedian := (math.Cbrt(2) - 1.5) * 4 / 3 // Pareto(3) median 2^(1/3), shifted and scaled as netem
	for _, tc := range []struct {
		dist              string
		mean, std, median float64 // in units of jitter; NaN = not checked
		lo, hi            float64 // bounds
	}{
		{"uniform", 0, 1 / math.Sqrt(3), 0, -1, 1},
		{"normal", 0, 1, 0, -4, 4},
		{"pareto", math.NaN(), math.NaN(), paretoMedian, -2.0 / 3, 4},
		{"paretonormal", math.NaN(), math.NaN(), 0.75 * paretoMedian, -4, 4},
	} {
		t.Run(tc.dist, func(t *testing.T) {
			d := &Delay{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Distribution: tc.dist}
			xs := jitterSamples(t, d, 200000)
			m, s := meanStd(xs)
			if !math.IsNaN(tc.mean) {
				near(t, "mean", m, tc.mean, 0.01)
				near(t, "stddev", s, tc.std, 0.01)
			}
			near(t, "median", median(xs), tc.median, 0.01)
			if lo, hi := slices.Min(xs), slices.Max(xs); lo < tc.lo-1e-6 || hi > tc.hi+1e-6 {
				t.Errorf("range [%.3f, %.3f] outside [%.3f, %.3f]", lo, hi, tc.lo, tc.hi)
			}
			if tc.dist == "pareto" { // capped tail: P(x >= 4) = 1/4.5^3
				n := 0
				for _, x := range xs {
					if x > 3.99 {
						n++
					}
				}
				near(t, "capped fraction", float64(n)/float64(len(xs)), 1/math.Pow(4.5, 3), 0.001)
			}
		})
	}
}

func lag1(xs []float64) float64 {
	m, s := meanStd(xs)
	var c float64
	for i := 1; i < len(xs); i++ {
		c += (xs[i] - m) * (xs[i-1] - m)
	}
	return c / float64(len(xs)-1) / (s * s)
}

func TestDelay_CorrelationKeepsTheDistribution(t *testing.T) {
	// One direction only: correlation is per direction.
	d := &Delay{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Distribution: "normal", Correlation: 0.9}
	xs := jitterSamples(t, d, 400000)
	var u, w []float64 // the two directions, alternating in jitterSamples
	for i, x := range xs {
		if i%2 == 0 {
			u = append(u, x)
		} else {
			w = append(w, x)
		}
	}
	for _, s := range [][]float64{u, w} {
		_, sd := meanStd(s)
		near(t, "normal stddev", sd, 1, 0.03)
		near(t, "normal lag-1 correlation", lag1(s), 0.9, 0.01)
	}
	d = &Delay{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Correlation: 0.9}
	xs = jitterSamples(t, d, 200000)
	_, sd := meanStd(xs)
	near(t, "uniform stddev", sd, 1/math.Sqrt(3), 0.02)
	if lo, hi := slices.Min(xs), slices.Max(xs); lo < -1 || hi > 1 || lo > -0.99 || hi < 0.99 {
		t.Errorf("correlated uniform range [%.3f, %.3f], want it to fill [-1, 1]", lo, hi)
	}
}

func TestDelay_KeepsOrderPerDirection(t *testing.T) {
	run := func(reorder bool) (inversions int) {
		d := &Delay{Delay: 50 * time.Millisecond, Jitter: 20 * time.Millisecond, Reorder: reorder}
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		dp := newDirect(udpPacket(client4, server4, 1, 2, nil), 3)
		var last [2]int64
		for i := 0; i < 10000; i++ {
			up := i%3 != 0
			p := dp.at(int64(i)*int64(time.Millisecond), up)
			d.Handle(p)
			j := dir(p)
			if p.Depart < last[j] {
				inversions++
			}
			last[j] = max(last[j], p.Depart)
		}
		return inversions
	}
	if n := run(false); n != 0 {
		t.Errorf("reorder=false: %d packets overtaken", n)
	}
	if n := run(true); n == 0 {
		t.Errorf("reorder=true: no packet overtaken with 20ms jitter at 1ms spacing")
	}
}

func TestDelay_DirectionsDoNotHoldEachOther(t *testing.T) {
	d := &Delay{Delay: 10 * time.Millisecond}
	h := newHarness(t, "delay", d, Match{})
	// A first entry makes downstream packets leave one second late; the
	// delay under test must not hold upstream packets behind them.
	h.chain = NewChain("test", 1, []*Entry{
		{Type: "delay", Match: Match{Direction: Downstream}, Behavior: &Delay{Delay: time.Second}},
		{Type: "delay", Behavior: d},
	})
	k := newConn(client4, server4, 1000, 5000)
	hs := k.handshake()
	h.send(hs[0])
	if _, dl := h.send(hs[1]); dl != int64(time.Second+10*time.Millisecond) {
		t.Fatalf("SYN-ACK delay %v, want 1.01s", time.Duration(dl))
	}
	h.now += int64(time.Millisecond)
	if _, dl := h.send(hs[2]); dl != int64(10*time.Millisecond) {
		t.Fatalf("ACK (upstream) delay %v, want 10ms: held behind the other direction", time.Duration(dl))
	}
}

func TestDelay_SameSeedSameDelays(t *testing.T) {
	run := func(seed uint64) []int64 {
		h := newHarness(t, "delay", &Delay{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Distribution: "pareto", Correlation: 0.25}, Match{})
		reseed(h, seed)
		k := newConn(client4, server4, 1000, 5000)
		var out []int64
		for _, seg := range k.handshake() {
			_, dl := h.send(seg)
			out = append(out, dl)
		}
		for i := 0; i < 200; i++ {
			h.now += int64(100 * time.Millisecond)
			_, dl := h.send(dataSeg(k, i%2 == 0, 100))
			out = append(out, dl)
		}
		return out
	}
	a, b, c := run(1), run(1), run(2)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different delays")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave the same delays")
	}
}

func TestDelay_Validate(t *testing.T) {
	for _, d := range []*Delay{{Delay: -1}, {Jitter: -1}, {Distribution: "gamma"}} {
		if err := d.Validate(); err == nil {
			t.Errorf("%+v: no error", d)
		}
	}
}

func BenchmarkDelay_Handle(b *testing.B) {
	d := &Delay{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Distribution: "paretonormal", Correlation: 0.25}
	if err := d.Validate(); err != nil {
		b.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, make([]byte, 1400)), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Handle(dp.at(int64(i)*1000, i&1 == 0))
	}
}
