// Command faultbox-bench is the driver of `make bench`: it measures, side by
// side in one run, a direct veth pair between two namespaces and faultbox
// labs (passthrough, and a per-segment behavior on every TCP segment), and
// prints one table of throughput (iperf3, 1 and 4 streams), retransmits,
// 1-byte ping-pong round-trip time and small-UDP packets per second, each
// with its ratio to the veth pair, and one of the device's and the machine's
// CPU: medians over rounds that measure every configuration in turn
// (rounds.go). Then the accuracy sections (accuracy.go, loss.go): delay
// error, rate against tbf, loss against its model.
//
//	faultbox-bench [-faultbox bin/faultbox] [-rounds 3] [-t 5s] [-n 20000] [-udp 3s] [-only veth,passthrough,log]
//	               [-accuracy delay,rate,loss]
//
// It needs root. Everything it creates (namespaces fbx-b-*, labs b-*, the
// processes in them) is removed on exit, also after Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Ports the probes use inside the hosts.
const (
	iperfPort = 5201
	ppPort    = 7777
	udpPort   = 9999
)

// logAllTCP inspects every TCP segment: the per-segment path (super-packets
// split), with the log itself nearly free (1 record per million).
const logAllTCP = `name: bench-log-all-tcp
description: a per-segment log behavior on all TCP, for make bench
sources: ["cmd/faultbox-bench"]
behaviors:
  - type: log
    match: {protocol: tcp}
    every: 1000000
`

type config struct {
	name    string
	kind    string   // veth, lab, toxiproxy
	profile string   // lab profile
	labArgs []string // more lab up flags
}

// device reports whether a process carries c's traffic (faultbox,
// toxiproxy), whose CPU time the table shows.
func (c config) device() bool { return c.kind != "veth" }

// result is one configuration's measurements.
type result struct {
	config
	err        error
	gbit       [2]float64 // 1 and 4 streams
	retrans    [2]int
	p50, p99   time.Duration
	pps        float64
	cpuSeconds float64 // the device's CPU time over both iperf3 runs
	machineCPU float64 // busy CPU time of the whole machine over those runs
	cpuWall    float64 // wall seconds of those runs
	gbits      float64 // Gbit received over those runs
}

// ownCPU are the lab up flags of the rows where the device has a CPU of its
// own (the last one) and busy-polls there.
var ownCPU = []string{"--cpus", strconv.Itoa(runtime.NumCPU() - 1), "--busy-poll", "1ms"}

// sharedSpin are the lab up flags of the rows where the device shares the
// CPUs and polls briefly before it sleeps.
var sharedSpin = []string{"--busy-poll", "20us"}

// configNames are the table's configurations, in their default order.
var configNames = []string{"veth", "passthrough", "passthrough-spin", "passthrough-cpu", "log", "log-cpu", "toxiproxy"}

// configsOf returns the configurations named in only (comma-separated), in
// its order; logProfile is the log rows' profile.
func configsOf(only, logProfile string) ([]config, error) {
	// The -cpu rows give the device a CPU of its own (the last one) and
	// let it busy-poll there; the -spin row polls briefly on shared CPUs.
	ownName := "  " + strings.Join(ownCPU, " ")
	spinName := "  " + strings.Join(sharedSpin, " ")
	all := map[string]config{
		"veth":             {"veth (direct)", "veth", "", nil},
		"passthrough":      {"faultbox passthrough", "lab", "passthrough", nil},
		"passthrough-spin": {spinName, "lab", "passthrough", sharedSpin},
		"passthrough-cpu":  {ownName, "lab", "passthrough", ownCPU},
		"log":              {"faultbox log all TCP", "lab", logProfile, nil},
		"log-cpu":          {ownName, "lab", logProfile, ownCPU},
		"toxiproxy":        {"toxiproxy (TCP proxy)", "toxiproxy", "", nil},
	}
	var configs []config
	for _, n := range strings.Split(only, ",") {
		if strings.TrimSpace(n) == "" {
			continue // -only "": the accuracy sections alone
		}
		c, ok := all[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("-only: unknown configuration %q (%s)", n, strings.Join(configNames, ", "))
		}
		configs = append(configs, c)
	}
	return configs, nil
}

func main() {
	if len(os.Args) > 1 {
		if probe, ok := probes[os.Args[1]]; ok {
			if err := probe(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "faultbox-bench %s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}
	os.Exit(runMain())
}

func runMain() int {
	faultbox := flag.String("faultbox", "bin/faultbox", "the faultbox binary")
	dur := flag.Duration("t", 5*time.Second, "iperf3 duration of each run")
	rtts := flag.Int("n", 20000, "ping-pong round trips")
	udpDur := flag.Duration("udp", 3*time.Second, "UDP sending time")
	nRounds := flag.Int("rounds", 3, "measure every configuration this many times, in turn; the table shows medians")
	only := flag.String("only", strings.Join(configNames, ","), "configurations to run, in order")
	sections := flag.String("accuracy", "sparse,delay,rate,loss", "sections to run after the table (sparse, delay, rate, loss; empty: none)")
	sparseProbes := flag.Int("sparse-probes", 100, "sparse section: probes per stream at 1/s (10/s and 100/s get 3 and 10 times as many)")
	attachRows := flag.Bool("attach", true, "measure what faultbox attach costs selected and unselected traffic (attach.go)")
	toxiproxy := flag.String("toxiproxy", "", "toxiproxy-server binary (go install github.com/Shopify/toxiproxy/v2/cmd/server); without it that row is skipped")
	flag.Parse()
	if *nRounds < 1 || *nRounds > 20 {
		fmt.Fprintf(os.Stderr, "faultbox-bench: -rounds %d: want 1 to 20\n", *nRounds)
		return 2
	}
	if *sparseProbes < 1 || *sparseProbes > 3600 {
		fmt.Fprintf(os.Stderr, "faultbox-bench: -sparse-probes %d: want 1 to 3600\n", *sparseProbes)
		return 2
	}

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "faultbox-bench: needs root (namespaces, TUN devices)")
		return 2
	}
	fbPath, err := filepath.Abs(*faultbox)
	if err == nil {
		_, err = os.Stat(fbPath)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "faultbox-bench: %v (run make build)\n", err)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultbox-bench:", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer atExit.run()

	tmp, err := os.MkdirTemp("", "fbx-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultbox-bench:", err)
		return 1
	}
	atExit.add(func() { os.RemoveAll(tmp) })
	logProfile := filepath.Join(tmp, "log-all-tcp.yaml")
	if err := os.WriteFile(logProfile, []byte(logAllTCP), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "faultbox-bench:", err)
		return 1
	}
	named, err := configsOf(*only, logProfile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultbox-bench:", err)
		return 2
	}
	var configs []config
	for _, c := range named {
		if c.kind == "toxiproxy" {
			if *toxiproxy == "" {
				fmt.Fprintln(os.Stderr, "faultbox-bench: no -toxiproxy binary: skipping the toxiproxy row")
				continue
			}
			if _, err := os.Stat(*toxiproxy); err != nil {
				fmt.Fprintf(os.Stderr, "faultbox-bench: skipping the toxiproxy row: %v\n", err)
				continue
			}
		}
		configs = append(configs, c)
	}

	m := measurer{self: self, dur: *dur, rtts: *rtts, udpDur: *udpDur}
	var rounds [][]result
	for round := 1; round <= *nRounds && ctx.Err() == nil; round++ {
		var results []result
		for _, c := range configs {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(os.Stderr, "== round %d/%d: %s\n", round, *nRounds, strings.TrimSpace(c.name))
			results = append(results, m.measureConfig(ctx, fbPath, *toxiproxy, c))
		}
		rounds = append(rounds, results)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "faultbox-bench: interrupted; cleaning up")
		return 130
	}
	rows := combine(rounds)
	if len(rows) > 0 {
		printTable(rows, *dur, *nRounds)
	}
	code := 0
	for _, r := range rows {
		if r.err != nil {
			code = 1
		}
	}
	if *attachRows && ctx.Err() == nil {
		if err := attachBench(ctx, fbPath, m, *nRounds); err != nil {
			fmt.Fprintln(os.Stderr, "faultbox-bench:", err)
			code = 1
		}
	}
	if err := runAccuracy(ctx, accuracy{faultbox: fbPath, self: self, tmp: tmp, sparseProbes: *sparseProbes}, *sections); err != nil {
		fmt.Fprintln(os.Stderr, "faultbox-bench:", err)
		if ctx.Err() != nil {
			return 130
		}
		code = 1
	}
	return code
}

// runAccuracy runs the sections named in list, in the order sparse, delay,
// rate, loss, printing each as it ends.
func runAccuracy(ctx context.Context, a accuracy, list string) error {
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case "sparse", "delay", "rate", "loss":
			want[s] = true
		default:
			return fmt.Errorf("-accuracy: unknown section %q (sparse, delay, rate, loss)", s)
		}
	}
	var failed error
	if want["sparse"] {
		if err := a.sparse(ctx, a.sparseProbes); err != nil {
			failed = fmt.Errorf("sparse traffic: %w", err)
		}
	}
	if want["delay"] && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "== delay accuracy")
		load := loadavg() + "; " + stallCheck(2*time.Second)
		var rows []delayRow
		var err error
		for _, mode := range []struct {
			name string
			args []string
		}{{"default", nil}, {"spin " + sharedSpin[1], sharedSpin}, {"busy-poll", ownCPU}} {
			var more []delayRow
			more, err = a.delays(ctx, mode.name, mode.args...)
			rows = append(rows, more...)
			if err != nil {
				break
			}
		}
		printDelays(rows, load)
		for _, r := range rows {
			if r.err != nil && err == nil {
				err = r.err
			}
		}
		if err != nil {
			failed = fmt.Errorf("delay accuracy: %w", err)
		}
	}
	if want["rate"] && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "== rate accuracy")
		load := loadavg() + "; " + stallCheck(2*time.Second)
		rows, err := a.rates(ctx)
		printRates(rows, load)
		if err != nil && failed == nil {
			failed = fmt.Errorf("rate accuracy: %w", err)
		}
	}
	if want["loss"] && ctx.Err() == nil {
		if err := printLoss(); err != nil && failed == nil {
			failed = err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return failed
}

// measureConfig sets up c's network, measures it and tears it down.
func (m measurer) measureConfig(ctx context.Context, faultbox, toxiproxy string, c config) result {
	r := result{config: c}
	var e env
	switch c.kind {
	case "veth":
		e, r.err = newVeth(ctx)
	case "lab":
		e, r.err = newLab(ctx, faultbox, c.profile, c.labArgs...)
	case "toxiproxy":
		e, r.err = newToxiproxy(ctx, toxiproxy, iperfPort, ppPort)
	}
	if r.err == nil {
		r.err = m.measure(ctx, e, &r)
	}
	if e != nil {
		if err := e.Close(); err != nil && r.err == nil {
			r.err = err
		}
	}
	if r.err != nil {
		fmt.Fprintf(os.Stderr, "   %s: %v\n", strings.TrimSpace(c.name), r.err)
	}
	return r
}

type measurer struct {
	self   string
	dur    time.Duration
	rtts   int
	udpDur time.Duration
}

func (m measurer) measure(ctx context.Context, e env, r *result) error {
	addr := e.ServerAddr()

	// Throughput, and the device's CPU over it.
	iperfSrv, err := startBG(ctx, e, "server", "iperf3", "-s", "-B", addr, "-p", strconv.Itoa(iperfPort))
	if err != nil {
		return err
	}
	defer iperfSrv.kill()
	if err := waitListen(ctx, e, "server", "t", iperfPort); err != nil {
		return err
	}
	cpu0, busy0, wall0 := m.cpu(e), machineBusy(), time.Now()
	for i, streams := range []int{1, 4} {
		res, err := m.iperf(ctx, e, addr, e.ClientPort(iperfPort), streams)
		if err != nil {
			return err
		}
		r.gbit[i], r.retrans[i] = res.gbit, res.retrans
		r.gbits += res.gbitTotal
		fmt.Fprintf(os.Stderr, "   iperf3 -P %d: %.2f Gbit/s, %d retransmits\n", streams, res.gbit, res.retrans)
	}
	r.cpuSeconds, r.machineCPU, r.cpuWall = m.cpu(e)-cpu0, machineBusy()-busy0, time.Since(wall0).Seconds()

	// Round-trip time of 1-byte ping-pong.
	pps, err := startBG(ctx, e, "server", m.self, "pp-server", "-listen", fmt.Sprintf("%s:%d", addr, ppPort))
	if err != nil {
		return err
	}
	defer pps.kill()
	if err := waitListen(ctx, e, "server", "t", ppPort); err != nil {
		return err
	}
	var rtt RTTResult
	if err := m.probe(ctx, e, 3*time.Minute, &rtt, m.self, "pp-client", "-server", fmt.Sprintf("%s:%d", addr, e.ClientPort(ppPort)), "-n", strconv.Itoa(m.rtts)); err != nil {
		return err
	}
	r.p50, r.p99 = time.Duration(rtt.P50NS), time.Duration(rtt.P99NS)
	fmt.Fprintf(os.Stderr, "   ping-pong: p50 %v p99 %v (n %d)\n", r.p50, r.p99, rtt.N)

	// Small UDP packets per second.
	if !e.UDP() {
		return nil
	}
	udpAddr := fmt.Sprintf("%s:%d", addr, udpPort)
	recv, err := startBG(ctx, e, "server", m.self, "udp-recv", "-listen", udpAddr, "-idle", "1s", "-max", (m.udpDur + 30*time.Second).String())
	if err != nil {
		return err
	}
	defer recv.kill()
	if err := waitListen(ctx, e, "server", "u", udpPort); err != nil {
		return err
	}
	var sent UDPResult
	if err := m.probe(ctx, e, m.udpDur+30*time.Second, &sent, m.self, "udp-send", "-server", udpAddr, "-size", "64", "-t", m.udpDur.String()); err != nil {
		return err
	}
	if err := recv.wait(15 * time.Second); err != nil {
		return fmt.Errorf("udp-recv: %v: %s", err, recv.out)
	}
	var got UDPResult
	if err := lastJSON(recv.out.String(), &got); err != nil {
		return fmt.Errorf("udp-recv: %v", err)
	}
	r.pps = got.PPS
	fmt.Fprintf(os.Stderr, "   udp 64 B: sent %.0f pps, received %.0f pps (%d of %d)\n", sent.PPS, got.PPS, got.Packets, sent.Packets)
	return nil
}

func (m measurer) cpu(e env) float64 {
	pid := e.DaemonPID()
	if pid == 0 {
		return 0
	}
	s, err := cpuSeconds(pid)
	if err != nil {
		fmt.Fprintf(os.Stderr, "   device cpu: %v\n", err)
	}
	return s
}

type iperfResult struct {
	gbit, gbitTotal float64
	retrans         int
}

func (m measurer) iperf(ctx context.Context, e env, addr string, port, streams int) (iperfResult, error) {
	ctx, cancel := context.WithTimeout(ctx, m.dur+60*time.Second)
	defer cancel()
	secs := strconv.FormatFloat(m.dur.Seconds(), 'f', -1, 64)
	cmd := e.Command(ctx, "client", "iperf3", "-c", addr, "-p", strconv.Itoa(port), "-t", secs, "-P", strconv.Itoa(streams), "-J")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil || res.Error != "" || err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 -P %d: %v %v %s", streams, err, jerr, res.Error)
	}
	return iperfResult{
		gbit:      res.End.SumReceived.BitsPerSecond / 1e9,
		gbitTotal: res.End.SumReceived.Bytes * 8 / 1e9,
		retrans:   res.End.SumSent.Retransmits,
	}, nil
}

// probe runs one of this binary's probes in the client and decodes its
// last JSON line into v.
func (m measurer) probe(ctx context.Context, e env, timeout time.Duration, v any, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := e.Command(ctx, "client", args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s: %v: %s", args[1], err, strings.TrimSpace(string(ee.Stderr)))
		}
		return fmt.Errorf("%s: %v", args[1], err)
	}
	return lastJSON(string(out), v)
}

func lastJSON(out string, v any) error {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") {
			return json.Unmarshal([]byte(lines[i]), v)
		}
	}
	return fmt.Errorf("no result in output: %q", out)
}

func printTable(rows []row, dur time.Duration, rounds int) {
	var base *row
	if i := slices.IndexFunc(rows, func(r row) bool { return r.kind == "veth" && r.rounds > 0 }); i >= 0 {
		base = &rows[i]
	}
	ratio := func(s spread) string {
		if s.n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*s.med)
	}
	span := func(s spread) string {
		if s.n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f-%.0f", 100*s.lo, 100*s.hi)
	}
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e3) }
	added := func(d, b time.Duration) string {
		if base == nil {
			return "-"
		}
		return fmt.Sprintf("%+.1f", float64(d-b)/1e3)
	}

	fmt.Printf("\nfaultbox-bench: %s, %d CPUs, iperf3 -t %v, %d rounds; medians over the rounds,\n", kernel(), runtime.NumCPU(), dur, rounds)
	fmt.Print("each ratio taken against the veth pair of its own round\n\n")
	var b row // the veth pair, if measured
	if base != nil {
		b = *base
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "configuration\tGbit/s 1|4 streams\tratio 1|4\tratio range %\tretrans 1|4\tRTT p50|p99 us\tadded p50|p99 us\tUDP kpps\tratio\t")
	for _, r := range rows {
		if r.rounds == 0 {
			fmt.Fprintf(tw, "%s\tfailed: %v\t\t\t\t\t\t\t\t\n", r.name, oneLine(r.err))
			continue
		}
		name := r.name
		if r.rounds < rounds {
			name = fmt.Sprintf("%s (%d of %d rounds: %v)", name, r.rounds, rounds, oneLine(r.err))
		}
		fmt.Fprintf(tw, "%s\t%.2f | %.2f\t%s | %s\t%s | %s\t%d | %d\t%s | %s\t%s | %s\t%s\t%s\t\n",
			name, r.gbit[0], r.gbit[1],
			ratio(r.ratio[0]), ratio(r.ratio[1]), span(r.ratio[0]), span(r.ratio[1]),
			r.retrans[0], r.retrans[1],
			us(r.p50), us(r.p99), added(r.p50, b.p50), added(r.p99, b.p99),
			kpps(r.pps), ratio(r.ratio[2]))
	}
	tw.Flush()
	fmt.Println("\nretrans: the most in one round; UDP: 64-byte payloads, packets/s received (the sender")
	fmt.Println("offers as many as it can); toxiproxy runs in the server's namespace of a veth pair and")
	fmt.Println("carries TCP only.")
	printCPU(rows, base)
}

// printCPU is the CPU table: what the device and the whole machine spent
// per Gbit over the iperf3 runs. Where every CPU is busy, throughput is
// CPUs / (CPU-s per Gbit), so the ratio of the machine's costs is the best
// throughput ratio the CPUs allow, however the work is placed.
func printCPU(rows []row, base *row) {
	perGbit := func(s float64, r row) string {
		if r.gbits <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", s/r.gbits)
	}
	fmt.Printf("\nCPU over all iperf3 runs (%d CPUs)\n\n", runtime.NumCPU())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "configuration\tdevice CPU\tdevice CPU-s/Gbit\tmachine busy\tmachine CPU-s/Gbit\tratio at equal CPU\t")
	for _, r := range rows {
		if r.rounds == 0 || r.cpuWall <= 0 {
			continue
		}
		device, devicePer := "-", "-"
		if r.device() {
			device, devicePer = fmt.Sprintf("%.0f%%", 100*r.cpuSeconds/r.cpuWall), perGbit(r.cpuSeconds, r)
		}
		equal := "-"
		if base != nil && r.device() && base.gbits > 0 && r.machineCPU > 0 {
			equal = fmt.Sprintf("%.0f%%", 100*(base.machineCPU/base.gbits)/(r.machineCPU/r.gbits))
		}
		busy := 100 * r.machineCPU / r.cpuWall / float64(runtime.NumCPU())
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f%%\t%s\t%s\t\n", r.name, device, devicePer, busy, perGbit(r.machineCPU, r), equal)
	}
	tw.Flush()
	fmt.Println("\ndevice: user+system time of the faultbox daemon (or toxiproxy), including the receiving")
	fmt.Println("hosts' TCP work the kernel does inside its writes; machine: every CPU's time not idle.")
	fmt.Println("ratio at equal CPU: the veth pair's machine CPU-s/Gbit over this row's, the throughput")
	fmt.Println("ratio if both kept every CPU busy (a busy-polling device counts its polling as busy).")
}

func kpps(pps float64) string {
	if pps == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", pps/1e3)
}

func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return s
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "linux"
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return "Linux " + string(b)
}
