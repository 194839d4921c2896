package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/faultbox/faultbox/internal/lab"
)

// The attach section: what faultbox attach costs the traffic it selects and
// the traffic it does not. One veth pair carries iperf3 (1 and 4 streams)
// in four settings, measured in turn every round:
//
//	veth          nothing attached
//	unselected    the device attached to the client's namespace toward
//	              another prefix (routed over the same veth): the iperf
//	              traffic never enters it, and must lose nothing (>= 0.97)
//	selected      attached toward the server, passthrough: the iperf
//	              traffic crosses the device
//	lab           a lab's passthrough, whose ratio to veth the selected
//	              row is compared with
//
// Tables show medians and each setting's ratio to veth.

// attachUnselected is a prefix the client's namespace routes over the veth
// that the benchmark's traffic never goes to.
const attachUnselected = "198.18.9.0/24"

type attachSetting struct {
	name string
	gbit [2][]float64 // per stream count, per round
	err  error
}

// attachBench runs the section's rounds and prints its table.
func attachBench(ctx context.Context, faultbox string, m measurer, rounds int) error {
	settings := []*attachSetting{{name: "veth (nothing attached)"}, {name: "attach, unselected prefix"},
		{name: "attach, selected (passthrough)"}, {name: "lab passthrough"}}
	for round := 1; round <= rounds && ctx.Err() == nil; round++ {
		fmt.Fprintf(os.Stderr, "== attach round %d/%d\n", round, rounds)
		if err := m.attachRound(ctx, faultbox, settings[:3]); err != nil {
			return err
		}
		e, err := newLab(ctx, faultbox, "passthrough")
		if err == nil {
			err = m.throughput(ctx, e, settings[3])
		}
		if e != nil {
			if cerr := e.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("attach bench, lab: %w", err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	printAttach(settings, rounds)
	return nil
}

// attachRound measures veth, then with the device attached toward the
// unselected prefix, then toward the server, on one veth pair.
func (m measurer) attachRound(ctx context.Context, faultbox string, s []*attachSetting) error {
	e, err := newVeth(ctx)
	if e != nil {
		defer e.Close()
	}
	if err != nil {
		return err
	}
	if _, err := run(ctx, 10*time.Second, "ip", "-n", e.ns["client"], "route", "add", attachUnselected, "dev", "veth0"); err != nil {
		return err
	}
	if err := m.throughput(ctx, e, s[0]); err != nil {
		return err
	}
	for i, to := range []string{attachUnselected, e.ServerAddr()} {
		name := lab.UniqueName("b-")
		atExit.add(func() { run(context.Background(), 60*time.Second, faultbox, "detach", "--name", name) })
		if _, err := run(ctx, 60*time.Second, faultbox, "attach", "--name", name, "--netns", e.ns["client"], "--to", to); err != nil {
			return err
		}
		err := m.throughput(ctx, e, s[i+1])
		if _, derr := run(ctx, 60*time.Second, faultbox, "detach", "--name", name); err == nil {
			err = derr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// throughput runs iperf3 with 1 and 4 streams in e and records it in s.
func (m measurer) throughput(ctx context.Context, e env, s *attachSetting) error {
	addr := e.ServerAddr()
	srv, err := startBG(ctx, e, "server", "iperf3", "-s", "-B", addr, "-p", fmt.Sprint(iperfPort))
	if err != nil {
		return err
	}
	defer srv.kill()
	if err := waitListen(ctx, e, "server", "t", iperfPort); err != nil {
		return err
	}
	for i, streams := range []int{1, 4} {
		res, err := m.iperf(ctx, e, addr, e.ClientPort(iperfPort), streams)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		s.gbit[i] = append(s.gbit[i], res.gbit)
		fmt.Fprintf(os.Stderr, "   %s, iperf3 -P %d: %.2f Gbit/s\n", s.name, streams, res.gbit)
	}
	return nil
}

// printAttach prints each setting's median throughput and its ratio to
// the veth pair of the same round (median and range over the rounds: the
// machine's speed drifts more between rounds than the settings differ).
func printAttach(settings []*attachSetting, rounds int) {
	veth := settings[0]
	ratios := func(s *attachSetting, i int) []float64 {
		var out []float64
		for r := range min(len(s.gbit[i]), len(veth.gbit[i])) {
			out = append(out, s.gbit[i][r]/veth.gbit[i][r])
		}
		return out
	}
	cell := func(sp spread) string { return fmt.Sprintf("%.3f (%.2f-%.2f)", sp.med, sp.lo, sp.hi) }
	fmt.Printf("\nattach: iperf3 over one veth pair, %d rounds (ratio: to the veth pair of the same round, median and range)\n", rounds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\t1 STREAM\tRATIO\t4 STREAMS\tRATIO")
	for _, s := range settings {
		var cols []string
		for i := range 2 {
			cols = append(cols, fmt.Sprintf("%.2f Gbit/s", medianOf(slices.Clone(s.gbit[i]))), cell(spreadOf(ratios(s, i))))
		}
		fmt.Fprintf(tw, "%s\t%s\n", s.name, strings.Join(cols, "\t"))
	}
	tw.Flush()
	unsel, sel, labp := settings[1], settings[2], settings[3]
	var vsLab [2]spread
	for i := range 2 {
		a, b := ratios(sel, i), ratios(labp, i)
		var v []float64
		for r := range min(len(a), len(b)) {
			v = append(v, a[r]/b[r])
		}
		vsLab[i] = spreadOf(v)
	}
	fmt.Printf("unselected/veth: %s and %s (want >= 0.97); selected/lab passthrough: %s and %s (want about 1)\n",
		cell(spreadOf(ratios(unsel, 0))), cell(spreadOf(ratios(unsel, 1))), cell(vsLab[0]), cell(vsLab[1]))
}
