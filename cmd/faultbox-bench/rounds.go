package main

// Rounds: the table's configurations are measured in turn, round after
// round, and each figure is the median over the rounds. Each ratio is taken
// within its round (against that round's veth pair) before the median, so a
// machine that slows down for a while moves both sides of a ratio together.

import (
	"slices"
	"time"
)

// spread is one ratio over the rounds.
type spread struct {
	med, lo, hi float64
	n           int
}

// row is one configuration of the table, over all rounds.
type row struct {
	result           // medians; retransmits: the most in a round; CPU: summed
	ratio  [3]spread // 1 stream, 4 streams, UDP packets/s; 0 when no veth round
	rounds int       // rounds measured without error
}

// combine reduces rounds[r][c] (round r, configuration c) to one row per
// configuration.
func combine(rounds [][]result) []row {
	if len(rounds) == 0 {
		return nil
	}
	base := slices.IndexFunc(rounds[0], func(r result) bool { return r.kind == "veth" })
	rows := make([]row, len(rounds[0]))
	for c := range rows {
		var ok []result
		var ratios [3][]float64
		var failed error
		for _, round := range rounds {
			if c >= len(round) {
				continue // interrupted
			}
			r := round[c]
			if r.err != nil {
				failed = r.err
				continue
			}
			ok = append(ok, r)
			if base < 0 || base >= len(round) || round[base].err != nil {
				continue
			}
			b := round[base]
			for i, pair := range [3][2]float64{{r.gbit[0], b.gbit[0]}, {r.gbit[1], b.gbit[1]}, {r.pps, b.pps}} {
				if pair[0] > 0 && pair[1] > 0 {
					ratios[i] = append(ratios[i], pair[0]/pair[1])
				}
			}
		}
		if len(ok) == 0 {
			rows[c].config, rows[c].err = rounds[0][c].config, failed
			continue
		}
		rows[c].result = medianResult(ok)
		rows[c].err = failed
		rows[c].rounds = len(ok)
		for i := range ratios {
			rows[c].ratio[i] = spreadOf(ratios[i])
		}
	}
	return rows
}

// medianResult is the per-field median of rs (all measured without error).
func medianResult(rs []result) result {
	m := rs[0]
	m.err = nil
	for i := range m.gbit {
		m.gbit[i] = median(rs, func(r result) float64 { return r.gbit[i] })
		m.retrans[i] = 0
		for _, r := range rs {
			m.retrans[i] = max(m.retrans[i], r.retrans[i])
		}
	}
	m.p50 = time.Duration(median(rs, func(r result) float64 { return float64(r.p50) }))
	m.p99 = time.Duration(median(rs, func(r result) float64 { return float64(r.p99) }))
	m.pps = median(rs, func(r result) float64 { return r.pps })
	m.cpuSeconds, m.machineCPU, m.cpuWall, m.gbits = 0, 0, 0, 0
	for _, r := range rs {
		m.cpuSeconds += r.cpuSeconds
		m.machineCPU += r.machineCPU
		m.cpuWall += r.cpuWall
		m.gbits += r.gbits
	}
	return m
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianOf(v)
}

// medianOf sorts v and returns its median (the mean of the middle two for
// an even count).
func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

func spreadOf(v []float64) spread {
	if len(v) == 0 {
		return spread{}
	}
	s := spread{med: medianOf(v), n: len(v)}
	s.lo, s.hi = v[0], v[len(v)-1] // sorted by medianOf
	return s
}
