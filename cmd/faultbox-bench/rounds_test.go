package main

import (
	"errors"
	"testing"
	"time"
)

func TestCombine_MediansAndPerRoundRatios(t *testing.T) {
	veth := config{name: "veth", kind: "veth"}
	dev := config{name: "dev", kind: "lab"}
	res := func(c config, g1, g4 float64, p50 time.Duration, retrans int) result {
		return result{config: c, gbit: [2]float64{g1, g4}, p50: p50, retrans: [2]int{retrans, 0}, pps: 1000 * (g1 + g4), cpuSeconds: 1, machineCPU: 4, cpuWall: 2, gbits: 10}
	}
	rounds := [][]result{
		{res(veth, 40, 40, 10, 0), res(dev, 30, 20, 30, 5)},  // ratios 75, 50
		{res(veth, 20, 20, 12, 0), res(dev, 10, 12, 34, 1)},  // 50, 60 (a slow round)
		{res(veth, 40, 40, 11, 0), res(dev, 32, 28, 100, 0)}, // 80, 70
	}
	rows := combine(rounds)
	d := rows[1]
	if d.rounds != 3 || d.gbit != [2]float64{30, 20} || d.p50 != 34 || d.retrans[0] != 5 {
		t.Fatalf("medians: %+v", d.result)
	}
	if r := d.ratio[0]; r.med != 0.75 || r.lo != 0.5 || r.hi != 0.8 || r.n != 3 {
		t.Errorf("1-stream ratio %+v, want median 0.75 of 0.5..0.8 (each against its own round)", r)
	}
	if r := d.ratio[1]; r.med != 0.6 {
		t.Errorf("4-stream ratio %+v, want median 0.6", r)
	}
	if r := d.ratio[2]; r.med != 0.625 || d.pps != 50000 {
		t.Errorf("UDP ratio %+v, pps %v; want median 0.625 of 50000 pps", r, d.pps)
	}
	if r := rows[0].ratio[0]; r.med != 1 || r.n != 3 {
		t.Errorf("veth against itself: %+v", r)
	}
	if d.cpuSeconds != 3 || d.machineCPU != 12 || d.cpuWall != 6 || d.gbits != 30 {
		t.Errorf("CPU sums %v %v %v %v", d.cpuSeconds, d.machineCPU, d.cpuWall, d.gbits)
	}

	// A failed round counts for nothing but is reported; an even count
	// takes the mean of the middle two.
	rounds[2][1].err = errors.New("boom")
	d = combine(rounds)[1]
	if d.rounds != 2 || d.err == nil || d.gbit[0] != 20 || d.ratio[0].med != 0.625 {
		t.Errorf("with a failed round: rounds %d err %v gbit %v ratio %+v", d.rounds, d.err, d.gbit, d.ratio[0])
	}
	// Without a veth pair there are no ratios.
	if r := combine([][]result{{res(dev, 1, 1, 1, 0)}})[0].ratio[0]; r.n != 0 {
		t.Errorf("ratio without veth: %+v", r)
	}
}
