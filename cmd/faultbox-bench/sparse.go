package main

// The sparse-traffic section of `make bench`: round trips of UDP echo
// probes at 1, 10 and 100 per second, where every packet finds an idle
// device (and idle CPUs) rather than one kept awake by the packets before
// it, as the table's back-to-back ping-pong does. Each device mode runs as
// a lab with a profile that delays one probe port by sparseDelay each way,
// so the same lab also shows the delay behavior's error at these rates.
//
// Streams run at once, their probes interleaved evenly over each period:
// the machine's load falls on every configuration alike, and the section
// takes one stream's time per rate (sparseRates). The device that never
// sleeps runs in a second group with a veth pair of its own: its CPU is
// never idle, and every other stream would feel it.

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Probe ports: one passes untouched, one is delayed; the veth pair's second
// port is the echo server pinned to another CPU than its client.
const (
	sparsePort      = 9200
	sparseDelayPort = 9201
	sparseCrossPort = 9202
	sparseDelay     = 5 * time.Millisecond
)

// sparseRate is one rate of the section and its probes per stream.
type sparseRate struct {
	pps float64
	n   int
}

// sparseRates gives n probes at 1/s (-sparse-probes): 100 (100 s) are the
// fewest whose p99 is not simply the largest. Faster rates get 3 and 10
// times as many, in less time.
func sparseRates(n int) []sparseRate {
	return []sparseRate{{1, n}, {10, 3 * n}, {100, 10 * n}}
}

// sparseDuration is how long one group's probes take.
func sparseDuration(rates []sparseRate) time.Duration {
	var d time.Duration
	for _, r := range rates {
		d += time.Duration(float64(r.n) / r.pps * float64(time.Second))
	}
	return d
}

// alwaysPoll are the lab up flags of the device that never sleeps, on a
// CPU of its own (the last one).
var alwaysPoll = []string{"--cpus", ownCPU[1], "--busy-poll", "always"}

// sparseStream is one probe stream: a client in env's client host, the echo
// server on port in its server host.
type sparseStream struct {
	name      string
	env       env
	port      int
	delay     time.Duration // each way; 0: none
	clientCPU int           // -1: any
	serverCPU int
	base      bool // the group's veth pair, which "added" is taken against
	results   []EchoResult
	errs      []error
}

// sparseGroup is a set of streams measured together.
type sparseGroup struct {
	title   string
	load    string
	streams []*sparseStream
}

// sparse measures its groups with n probes at 1/s and prints them.
func (a accuracy) sparse(ctx context.Context, n int) error {
	rates := sparseRates(n)
	profile, err := a.writeProfile("bench-sparse", fmt.Sprintf(
		"  - type: delay\n    match: {protocol: udp, port: %d}\n    delay: %v\n", sparseDelayPort, sparseDelay))
	if err != nil {
		return err
	}
	shared := []labMode{{"faultbox default", nil}, {"  " + strings.Join(sharedSpin, " "), sharedSpin},
		{"  " + strings.Join(ownCPU, " "), ownCPU}}
	own := []labMode{{"  " + strings.Join(alwaysPoll, " "), alwaysPoll}}
	var groups []*sparseGroup
	var failed error
	for _, g := range []struct {
		title     string
		modes     []labMode
		cross     bool // a veth row with its ends on different CPUs
		keepAwake bool // the CPUs other than the device's never idle
	}{{"devices that sleep when idle (shared CPUs, or polling at most 1 ms after a packet)", shared, runtime.NumCPU() > 1, false},
		{"a device that never sleeps, on CPU " + ownCPU[1], own, false, false},
		{"a device that never sleeps, on CPU " + ownCPU[1] + ", the endpoints' CPUs kept out of idle (a SCHED_IDLE spinner each)",
			own, false, true}} {
		if g.keepAwake && runtime.NumCPU() < 2 {
			continue // no CPU besides the device's to keep awake
		}
		stopSpinners := func() {}
		if g.keepAwake {
			var others []int
			for cpu := range runtime.NumCPU() - 1 {
				others = append(others, cpu)
			}
			if stopSpinners, err = startIdleSpinners(ctx, a.self, others, sparseDuration(rates)+5*time.Minute); err != nil {
				failed = err
				break
			}
		}
		group, err := a.sparseGroup(ctx, g.title, profile, g.modes, g.cross, rates)
		stopSpinners()
		if group != nil {
			groups = append(groups, group)
		}
		if err != nil {
			failed = err
			break
		}
	}
	printSparse(os.Stdout, groups, rates)
	return failed
}

type labMode struct {
	name string
	args []string
}

// sparseGroup sets up a veth pair and one lab per mode, runs every rate
// with all their streams interleaved, and tears them down.
func (a accuracy) sparseGroup(ctx context.Context, title, profile string, modes []labMode, cross bool, rates []sparseRate) (*sparseGroup, error) {
	g := &sparseGroup{title: title}
	veth, err := newVeth(ctx)
	if veth != nil {
		defer veth.Close()
	}
	if err != nil {
		return nil, err
	}
	g.streams = append(g.streams, &sparseStream{name: "veth (direct)", env: veth, port: sparsePort, clientCPU: -1, serverCPU: -1, base: true})
	if cross {
		other := runtime.NumCPU() - 1
		g.streams = append(g.streams, &sparseStream{name: fmt.Sprintf("  client on CPU 0, server on CPU %d", other), env: veth,
			port: sparseCrossPort, clientCPU: 0, serverCPU: other})
	}
	var delayed []*sparseStream
	for _, m := range modes {
		e, err := newLab(ctx, a.faultbox, profile, m.args...)
		if e != nil {
			defer e.Close()
		}
		if err != nil {
			return nil, err
		}
		g.streams = append(g.streams, &sparseStream{name: m.name, env: e, port: sparsePort, clientCPU: -1, serverCPU: -1})
		delayed = append(delayed, &sparseStream{name: m.name, env: e, port: sparseDelayPort, delay: sparseDelay, clientCPU: -1, serverCPU: -1})
	}
	g.streams = append(g.streams, delayed...)
	for _, s := range g.streams {
		srv, err := startBG(ctx, s.env, "server", a.self, "echo-server",
			"-listen", fmt.Sprintf("%s:%d", s.env.ServerAddr(), s.port), "-cpu", strconv.Itoa(s.serverCPU))
		if err != nil {
			return nil, err
		}
		defer srv.kill()
		if err := waitListen(ctx, s.env, "server", "u", s.port); err != nil {
			return nil, err
		}
	}
	g.load = loadavg() + "; " + stallCheck(2*time.Second)
	fmt.Fprintf(os.Stderr, "== sparse traffic: %s (load %s)\n", title, g.load)
	steal, ok := stealTicks()
	start := time.Now()
	defer func() { g.load += "; while probing, " + stealSince(steal, ok, start) }()
	for _, r := range rates {
		a.sparseRun(ctx, g.streams, r.pps, r.n)
		if ctx.Err() != nil {
			return g, ctx.Err()
		}
	}
	return g, nil
}

// sparseRun runs every stream at pps for n probes, the streams' probes
// spread evenly over each period.
func (a accuracy) sparseRun(ctx context.Context, streams []*sparseStream, pps float64, n int) {
	period := time.Duration(float64(time.Second) / pps)
	dur := time.Duration(n) * period
	start := monoNow() + int64(2*time.Second) // every client is up by then
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			offset := int64(period) * int64(i) / int64(len(streams))
			var r EchoResult
			err := (measurer{}).probe(ctx, s.env, dur+time.Minute, &r, a.self, "echo-client",
				"-server", fmt.Sprintf("%s:%d", s.env.ServerAddr(), s.port),
				"-pps", strconv.FormatFloat(pps, 'g', -1, 64), "-n", strconv.Itoa(n),
				"-start", strconv.FormatInt(start+offset, 10), "-cpu", strconv.Itoa(s.clientCPU))
			if err == nil && r.N == 0 {
				err = fmt.Errorf("no answer to %d probes", r.Sent)
			}
			s.results = append(s.results, r)
			s.errs = append(s.errs, err)
		}()
	}
	wg.Wait()
	for _, s := range streams {
		r, err := s.results[len(s.results)-1], s.errs[len(s.errs)-1]
		fmt.Fprintf(os.Stderr, "   %g/s %s%s: %d of %d answered, p50 %v p99 %v max %v, %d late (%v)\n", pps, strings.TrimSpace(s.name),
			delayNote(s.delay), r.N, r.Sent, time.Duration(r.P50NS), time.Duration(r.P99NS), time.Duration(r.MaxNS), r.Late, err)
	}
}

func delayNote(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf(", delay %v each way", d)
}

// printSparse writes the section's tables: per group, the round trips
// without a delay and their excess over the group's veth pair, then the
// delayed streams' excess over the configured delay.
func printSparse(w io.Writer, groups []*sparseGroup, rates []sparseRate) {
	if len(groups) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSparse traffic: UDP echo round trips (sent to answer received, both ends user processes) at")
	for i, r := range rates {
		sep := ","
		if i == len(rates)-1 {
			sep = ";"
		}
		fmt.Fprintf(w, " %g/s (%d probes)%s", r.pps, r.n, sep)
	}
	fmt.Fprintln(w, "\nmedians and 99th percentiles in us; added: over the group's veth pair, measured in the same minutes")
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s\nload average %s\n\n", g.title, g.load)
		printSparseRTT(w, g, rates)
		fmt.Fprintf(w, "\ndelay %v each way: round trip minus %v, p50|p99|max us (the goal: p99 <= 200)\n\n", sparseDelay, 2*sparseDelay)
		printSparseDelay(w, g, rates)
		for _, s := range g.streams {
			for i, err := range s.errs {
				if err != nil {
					fmt.Fprintf(w, "  %s%s at %g/s: %s\n", strings.TrimSpace(s.name), delayNote(s.delay), rates[i].pps, oneLine(err))
				}
			}
		}
	}
	fmt.Fprintln(w, "\nThe streams of a group run at once, their probes spread evenly over each period, so each probe")
	fmt.Fprintln(w, "finds the machine idle for about the period over the number of streams. The veth pair's second")
	fmt.Fprintln(w, "row pins its client and server to different CPUs: every packet then wakes a thread on the other CPU.")
}

// usOf formats ns as whole microseconds.
func usOf(ns int64) string { return fmt.Sprintf("%.0f", float64(ns)/1e3) }

// result returns s's result at rate i, if it was measured.
func (s *sparseStream) result(i int) (EchoResult, bool) {
	if s == nil || i >= len(s.results) || s.errs[i] != nil {
		return EchoResult{}, false
	}
	return s.results[i], true
}

// printSparseTable writes a row for each of the streams that rows picks:
// its name, then for each rate the cells that cell returns (tab-separated,
// as many as the heading gives), or "failed" and "-" if it was not measured.
func printSparseTable(w io.Writer, heading string, g *sparseGroup, rates []sparseRate, rows func(*sparseStream) bool,
	rateHead func(sparseRate) string, cell func(*sparseStream, int, EchoResult) string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := heading + "\t"
	for _, r := range rates {
		head += rateHead(r)
	}
	fmt.Fprintln(tw, head)
	for _, s := range g.streams {
		if !rows(s) {
			continue
		}
		line := s.name + "\t"
		for i := range rates {
			if r, ok := s.result(i); ok {
				line += cell(s, i, r)
			} else {
				line += "failed\t-\t"
			}
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// printSparseRTT: the round trips without a delay, and their excess over
// the group's veth pair.
func printSparseRTT(w io.Writer, g *sparseGroup, rates []sparseRate) {
	var base *sparseStream
	for _, s := range g.streams {
		if s.base {
			base = s
		}
	}
	printSparseTable(w, "configuration", g, rates, func(s *sparseStream) bool { return s.delay == 0 },
		func(r sparseRate) string { return fmt.Sprintf("%g/s p50|p99\tadded\t", r.pps) },
		func(s *sparseStream, i int, r EchoResult) string {
			added := "-"
			if b, ok := base.result(i); ok && s != base {
				added = fmt.Sprintf("%+.0f|%+.0f", float64(r.P50NS-b.P50NS)/1e3, float64(r.P99NS-b.P99NS)/1e3)
			}
			return usOf(r.P50NS) + "|" + usOf(r.P99NS) + "\t" + added + "\t"
		})
}

// printSparseDelay: the delayed round trips' excess over both ways' delay.
func printSparseDelay(w io.Writer, g *sparseGroup, rates []sparseRate) {
	printSparseTable(w, "device", g, rates, func(s *sparseStream) bool { return s.delay != 0 },
		func(r sparseRate) string { return fmt.Sprintf("%g/s\tp99 <= 200\t", r.pps) },
		func(s *sparseStream, _ int, r EchoResult) string {
			extra := int64(2 * s.delay)
			met := "yes"
			if r.P99NS-extra > 200e3 {
				met = "NO"
			}
			return usOf(r.P50NS-extra) + "|" + usOf(r.P99NS-extra) + "|" + usOf(r.MaxNS-extra) + "\t" + met + "\t"
		})
}
