package main

// The loss section: 1 M packets through the loss behavior of a profile,
// in process (the profile loader and chain the device uses, no devices),
// measured against the model: the loss rate and the distribution of burst
// lengths (runs of consecutive losses), computed exactly from the
// two-state chain. Then the same seed twice must give the same drop
// sequence, and another seed a different one.

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"text/tabwriter"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/profiles"
)

const lossPackets = 1_000_000

// lossCase is a loss entry as a profile writes it, and its model: per
// state (good, bad) the loss probability, and the chance of leaving it
// after each packet.
type lossCase struct {
	name, yaml string
	loss       [2]float64
	leave      [2]float64
}

var lossCases = []lossCase{
	{"bernoulli 1%", "p: 1%", [2]float64{0.01, 0.01}, [2]float64{0, 0}},
	{"bernoulli 50%", "p: 50%", [2]float64{0.5, 0.5}, [2]float64{0, 0}},
	{"gilbert p 1% r 25%", "model: gilbert-elliott\n    p: 1%\n    r: 25%", [2]float64{0, 1}, [2]float64{0.01, 0.25}},
	{"gilbert-elliott p 2% r 20% h 60% k 0.5%", "model: gilbert-elliott\n    p: 2%\n    r: 20%\n    h: 60%\n    k: 0.5%",
		[2]float64{0.005, 0.6}, [2]float64{0.02, 0.2}},
}

// model returns the loss rate and P(burst length = k) for k = 1..maxK-1,
// with the rest in [maxK]. State n decides packet n's loss, then moves.
func (c lossCase) model(maxK int) (rate float64, dist []float64) {
	pi := [2]float64{1, 0}
	if s := c.leave[0] + c.leave[1]; s > 0 {
		pi = [2]float64{c.leave[1] / s, c.leave[0] / s}
	}
	rate = pi[0]*c.loss[0] + pi[1]*c.loss[1]
	step := func(v [2]float64) [2]float64 { // one transition
		return [2]float64{v[0]*(1-c.leave[0]) + v[1]*c.leave[1], v[0]*c.leave[0] + v[1]*(1-c.leave[1])}
	}
	// A burst starts where a passed packet is followed by a lost one.
	v := step([2]float64{pi[0] * (1 - c.loss[0]), pi[1] * (1 - c.loss[1])})
	v = [2]float64{v[0] * c.loss[0], v[1] * c.loss[1]}
	norm := v[0] + v[1]
	v = [2]float64{v[0] / norm, v[1] / norm} // state at a burst's first loss
	dist = make([]float64, maxK+1)
	rest := 1.0
	for k := 1; k < maxK; k++ {
		n := step(v)
		end := n[0]*(1-c.loss[0]) + n[1]*(1-c.loss[1]) // the next packet passes
		dist[k] = end
		rest -= end
		v = [2]float64{n[0] * c.loss[0], n[1] * c.loss[1]}
	}
	dist[maxK] = rest
	return rate, dist
}

type lossResult struct {
	lost   int
	bursts []int // bursts[k]: bursts of length k; the last slot holds >= len-1
	hash   uint64
}

// runLoss plays n UDP packets through the profile's chain with seed.
func runLoss(c lossCase, seed uint64, n, maxK int) (lossResult, error) {
	doc := fmt.Sprintf("name: bench-loss\ndescription: make bench\nsources: [bench]\nbehaviors:\n  - type: loss\n    %s\n", c.yaml)
	p, err := profiles.Parse("bench-loss.yaml", []byte(doc))
	if err != nil {
		return lossResult{}, err
	}
	chain, err := p.Chain(seed, nil)
	if err != nil {
		return lossResult{}, err
	}
	raw := make([]byte, 28)
	raw[0], raw[8], raw[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(raw[2:], 28)
	copy(raw[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	var parsed packet.Parsed
	parsed.Decode(raw)
	var bp behaviors.Packet
	scratch := make([]byte, 256)
	r := lossResult{bursts: make([]int, maxK+1)}
	h := fnv.New64a()
	var idx [8]byte
	run := 0
	for i := 0; i < n; i++ {
		bp.Reset(&parsed, nil, flow.Client, int64(i)*1000)
		if chain.Run(&bp, nopEnv{}, scratch) == behaviors.Drop {
			r.lost++
			run++
			binary.LittleEndian.PutUint64(idx[:], uint64(i))
			h.Write(idx[:])
			continue
		}
		if run > 0 {
			r.bursts[min(run, maxK)]++
			run = 0
		}
	}
	if run > 0 {
		r.bursts[min(run, maxK)]++
	}
	r.hash = h.Sum64()
	return r, nil
}

type nopEnv struct{}

func (nopEnv) Inject([]byte, int64, string)    {}
func (nopEnv) Event(*behaviors.Packet, string) {}

// printLoss runs and prints the loss section; it returns an error if a
// seed did not replay.
func printLoss() error {
	const maxK, seed = 5, 42
	fmt.Printf("\nLoss accuracy: %d packets per model through the loss behavior (in process, seed %d)\n\n", lossPackets, seed)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tloss\tmodel\tbursts\tmean burst\tmodel\tP(1)\tP(2)\tP(3)\tP(4)\tP(>=5)\tsame seed twice\tseed 43\t")
	var failed error
	for _, c := range lossCases {
		a, err := runLoss(c, seed, lossPackets, maxK)
		if err != nil {
			return err
		}
		b, _ := runLoss(c, seed, lossPackets, maxK)
		other, _ := runLoss(c, seed+1, lossPackets, maxK)
		rate, dist := c.model(maxK)
		nb := 0
		for _, x := range a.bursts {
			nb += x
		}
		meanModel := c.meanBurst()
		same := "identical"
		if a.hash != b.hash || a.lost != b.lost {
			same = "DIFFER"
			failed = fmt.Errorf("loss %s: seed %d gave two different drop sequences", c.name, seed)
		}
		diff := "differs"
		if other.hash == a.hash {
			diff = "SAME"
		}
		cells := ""
		for k := 1; k <= maxK; k++ {
			cells += fmt.Sprintf("%.4f/%.4f\t", float64(a.bursts[k])/float64(max(nb, 1)), dist[k])
		}
		fmt.Fprintf(tw, "%s\t%.4f%%\t%.4f%%\t%d\t%.3f\t%.3f\t%s%s\t%s\t\n", c.name,
			100*float64(a.lost)/lossPackets, 100*rate, nb, float64(a.lost)/float64(max(nb, 1)), meanModel, cells, same, diff)
	}
	tw.Flush()
	fmt.Println("\nP(k): share of loss bursts (runs of consecutive losses) of length k, measured/model; the model is")
	fmt.Println("exact for the two-state chain (netem's gemodel: state decides the loss, then moves). Same seed twice:")
	fmt.Println("the drop sequences (every dropped packet's index) compared by hash; seed 43 must give another.")
	return failed
}

// meanBurst is the model's mean burst length (the distribution's tail
// beyond 1000 packets is negligible for the cases here).
func (c lossCase) meanBurst() float64 {
	_, dist := c.model(1000)
	mean := 0.0
	for k, p := range dist {
		mean += float64(k) * p
	}
	return mean
}
