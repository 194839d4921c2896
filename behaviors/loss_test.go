package behaviors

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/units"
)

const lossRuns = 1_000_000

// lossRun sends n packets of one direction through l and returns the loss
// rate, the histogram of loss-burst lengths (index = length, last bucket
// holds the longer ones) and a hash of the drop sequence.
func lossRun(t testing.TB, l *Loss, seed uint64, n int) (rate float64, bursts []int, hash uint64) {
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, nil), seed)
	bursts = make([]int, 12)
	h := fnv.New64a()
	lost, run := 0, 0
	var idx [8]byte
	for i := 0; i < n; i++ {
		if l.Handle(dp.at(int64(i), true)) == Drop {
			lost++
			run++
			for b := range idx {
				idx[b] = byte(i >> (8 * b))
			}
			h.Write(idx[:])
			continue
		}
		if run > 0 {
			bursts[min(run, len(bursts)-1)]++
			run = 0
		}
	}
	return float64(lost) / float64(n), bursts, h.Sum64()
}

// checkBursts compares the measured burst-length distribution with a
// geometric one: P(L = n) = (1-q)^(n-1) q.
func checkBursts(t *testing.T, bursts []int, q float64) {
	t.Helper()
	total := 0
	for _, c := range bursts {
		total += c
	}
	var shown []string
	for n := 1; n <= 5; n++ {
		got := float64(bursts[n]) / float64(total)
		want := math.Pow(1-q, float64(n-1)) * q
		se := math.Sqrt(want * (1 - want) / float64(total))
		near(t, "P(burst length "+string(rune('0'+n))+")", got, want, 5*se+1e-4)
		shown = append(shown, fmt.Sprintf("P(%d)=%.4f/%.4f", n, got, want))
	}
	t.Logf("%d bursts, measured/model: %s", total, strings.Join(shown, " "))
}

func TestLoss_BernoulliRateAndBursts(t *testing.T) {
	rate, bursts, _ := lossRun(t, &Loss{P: 0.02, H: 1}, 1, lossRuns)
	t.Logf("loss rate %.5f over %d packets, model 0.02", rate, lossRuns)
	near(t, "loss rate", rate, 0.02, 5*math.Sqrt(0.02*0.98/lossRuns))
	checkBursts(t, bursts, 0.98) // independent losses: a burst ends with probability 1-p
}

func TestLoss_GilbertRateAndBursts(t *testing.T) {
	// Simple Gilbert: every packet in Bad is lost, none in Good.
	p, r := 0.01, 0.3
	rate, bursts, _ := lossRun(t, &Loss{Model: "gilbert-elliott", P: units.Probability(p), R: units.Probability(r), H: 1}, 1, lossRuns)
	t.Logf("loss rate %.5f over %d packets, model %.5f", rate, lossRuns, p/(p+r))
	near(t, "loss rate", rate, p/(p+r), 0.003)
	checkBursts(t, bursts, r)
}

func TestLoss_GilbertElliottRate(t *testing.T) {
	// Lossy in both states: rate = pi_good*k + pi_bad*h.
	p, r, h, k := 0.02, 0.2, 0.7, 0.005
	rate, _, _ := lossRun(t, &Loss{Model: "gilbert-elliott", P: units.Probability(p), R: units.Probability(r), H: units.Probability(h), K: units.Probability(k)}, 1, lossRuns)
	bad := p / (p + r)
	t.Logf("loss rate %.5f over %d packets, model %.5f", rate, lossRuns, (1-bad)*k+bad*h)
	near(t, "loss rate", rate, (1-bad)*k+bad*h, 0.004)
}

func TestLoss_GilbertDefaultRIsOneMinusP(t *testing.T) {
	l := &Loss{Model: "gilbert-elliott", P: 0.25, H: 1}
	rate, _, _ := lossRun(t, l, 1, 200_000)
	near(t, "loss rate", rate, 0.25, 0.005) // p/(p+1-p)
}

func TestLoss_SameSeedSameDrops(t *testing.T) {
	for _, mk := range []func() *Loss{
		func() *Loss { return &Loss{P: 0.01, H: 1} },
		func() *Loss { return &Loss{Model: "gilbert-elliott", P: 0.01, R: 0.4, H: 0.9, K: 0.001} },
	} {
		_, _, a := lossRun(t, mk(), 42, lossRuns)
		_, _, b := lossRun(t, mk(), 42, lossRuns)
		_, _, c := lossRun(t, mk(), 43, lossRuns)
		if a != b {
			t.Errorf("%+v: same seed, different drop sequences", mk())
		}
		if a == c {
			t.Errorf("%+v: different seeds, same drop sequence", mk())
		}
	}
}

func TestLoss_OnlyUpstreamBareACKs(t *testing.T) {
	m, err := MatchSpec{Direction: "upstream", TCPFlags: []string{"bare-ack"}}.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "loss", &Loss{P: 1, H: 1}, m)
	k := newConn(client4, server4, 1000, 5000)
	hs := k.handshake()
	for i, want := range []Verdict{Pass, Pass, Drop} { // SYN, SYN-ACK, bare ACK
		if v, _ := h.send(hs[i]); v != want {
			t.Fatalf("handshake segment %d: %v, want %v", i, v, want)
		}
	}
	for _, c := range []struct {
		seg  []byte
		want Verdict
	}{
		{dataSeg(k, true, 100), Pass},                   // upstream data
		{k.seg(false, packet.ACK, nil), Pass},           // downstream bare ACK
		{k.seg(true, packet.ACK, nil), Drop},            // upstream bare ACK
		{k.seg(true, packet.ACK|packet.FIN, nil), Pass}, // FIN is not a bare ACK
	} {
		if v, _ := h.send(c.seg); v != c.want {
			t.Fatalf("got %v, want %v", v, c.want)
		}
	}
}

func TestLoss_Validate(t *testing.T) {
	for _, l := range []*Loss{{Model: "markov"}, {P: 0.1, R: 0.5, H: 1}} {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v: no error", l)
		}
	}
}

func BenchmarkLoss_Handle(b *testing.B) {
	l := &Loss{Model: "gilbert-elliott", P: 0.01, R: 0.3, H: 0.9, K: 0.001}
	if err := l.Validate(); err != nil {
		b.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, nil), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Handle(dp.at(int64(i), i&1 == 0))
	}
}
