package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The added round trip is taken against the group's veth pair at the same
// rate; a delayed stream shows its excess over both ways' delay, and
// whether its p99 met 200 us.
func TestPrintSparse_AddedOverVethAndDelayError(t *testing.T) {
	rates := sparseRates(2)
	us := func(v int64) int64 { return v * 1000 }
	veth := &sparseStream{name: "veth (direct)", base: true,
		results: []EchoResult{{P50NS: us(50), P99NS: us(90)}, {P50NS: us(40), P99NS: us(80)}, {P50NS: us(30), P99NS: us(70)}},
		errs:    []error{nil, nil, nil}}
	dev := &sparseStream{name: "faultbox default",
		results: []EchoResult{{P50NS: us(250), P99NS: us(400)}, {P50NS: us(140), P99NS: us(180)}, {}},
		errs:    []error{nil, nil, errors.New("lab gone")}}
	delayed := &sparseStream{name: "faultbox default", delay: sparseDelay,
		results: []EchoResult{{P50NS: us(10_150), P99NS: us(10_250), MaxNS: us(10_900)}, {P50NS: us(10_100), P99NS: us(10_180), MaxNS: us(10_300)}, {}},
		errs:    []error{nil, nil, errors.New("lab gone")}}
	var b strings.Builder
	printSparse(&b, []*sparseGroup{{title: "group", load: "0.1", streams: []*sparseStream{veth, dev, delayed}}}, rates)
	out := strings.Join(strings.Fields(b.String()), " ") // column widths aside
	for _, want := range []string{
		"1/s (2 probes), 10/s (6 probes), 100/s (20 probes);",
		"250|400 +200|+310", // 1/s: 250-50, 400-90
		"140|180 +100|+100", // 10/s
		"140|180 +100|+100 failed -",
		"150|250|900 NO", // 1/s: p99 250 us over 10 ms
		"100|180|300 yes",
		"faultbox default, delay " + (5 * time.Millisecond).String() + " each way at 100/s: lab gone",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A group's probes take n/pps at each rate: 100 s, 30 s and 10 s for 100.
func TestSparseDuration_SumsTheRates(t *testing.T) {
	if d := sparseDuration(sparseRates(100)); d != 140*time.Second {
		t.Errorf("sparseDuration(100 probes at 1/s) = %v, want 140s", d)
	}
}

// idle-spin refuses an unbounded or empty run before it touches a CPU.
func TestIdleSpin_RefusesUnboundedRuns(t *testing.T) {
	for _, d := range []string{"0s", "-1s", "2h"} {
		if err := idleSpin([]string{"-for", d}); err == nil || !strings.Contains(err.Error(), "at most 1h") {
			t.Errorf("idle-spin -for %s: %v, want a refusal", d, err)
		}
	}
}

// The hypervisor's steal is read from /proc/stat and given as a share of
// all CPUs' time; unknown when it could not be read.
func TestStealSince_ShareOfAllCPUsTime(t *testing.T) {
	ticks, ok := stealTicks()
	if !ok {
		t.Fatal("/proc/stat: no steal column")
	}
	if s := stealSince(ticks, ok, time.Now().Add(-time.Second)); !strings.HasPrefix(s, "the hypervisor took ") || !strings.HasSuffix(s, " % of the CPUs' time (steal)") {
		t.Errorf("stealSince = %q", s)
	}
	if s := stealSince(0, false, time.Now()); s != "steal unknown" {
		t.Errorf("stealSince without a first reading = %q", s)
	}
}
