package main

// The accuracy sections of `make bench` (issue 3): how exactly faultbox's
// shaping does what a profile says.
//
//   - delay: one-way delay of paced UDP datagrams through a delay-only
//     profile, measured exactly (sender and receiver share CLOCK_MONOTONIC),
//     minus the configured delay; a passthrough row shows what the device
//     and the probes add without any delay.
//   - rate: TCP goodput and UDP packet rate through a rate profile and, on
//     a veth pair in the same run, through the kernel's tbf qdisc, each
//     against the configured rate with that link's header overhead.
//   - loss: see loss.go (in-process, no devices).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const owdPort = 9100

// loadavg is the 1-minute load average, printed with each section: other
// work on the machine shows in the tails.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// stealTicks is the time, in USER_HZ ticks (1/100 s on Linux), that the
// hypervisor ran something else while this VM's CPUs wanted to run: the
// "steal" column of /proc/stat. false: not known.
func stealTicks() (int64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	v, err := strconv.ParseInt(f[8], 10, 64)
	return v, err == nil
}

// stealSince describes the share of all CPUs' time since start that the
// hypervisor took (steal), given the ticks read then.
func stealSince(ticks int64, ok bool, start time.Time) string {
	now, ok2 := stealTicks()
	wall := time.Since(start).Seconds() * float64(runtime.NumCPU())
	if !ok || !ok2 || wall <= 0 {
		return "steal unknown"
	}
	return fmt.Sprintf("the hypervisor took %.2f %% of the CPUs' time (steal)", 100*float64(now-ticks)/100/wall)
}

// stallCheck spins one thread for d at the default priority and reports
// the share of d it did not run and its longest gap: when the machine (or
// the host under a VM) is busy, every thread of the measured path loses
// the CPU as long, and the tails of the figures below show it.
func stallCheck(d time.Duration) string {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := monoNow()
	last, end := start, start+int64(d)
	var lost, longest int64
	for now := start; now < end; now = monoNow() {
		if gap := now - last; gap > 50e3 { // 50 us: a clock read takes far less
			lost += gap
			longest = max(longest, gap)
		}
		last = now
	}
	return fmt.Sprintf("a spinning thread lost %.1f %% of %v, longest stall %v", 100*float64(lost)/float64(d), d,
		time.Duration(longest).Round(time.Microsecond))
}

// accuracy runs the sections; tmp holds the profiles it writes.
type accuracy struct {
	faultbox, self, tmp string
	sparseProbes        int // at 1/s, per stream (sparse.go)
}

func (a accuracy) writeProfile(name, body string) (string, error) {
	path := filepath.Join(a.tmp, name+".yaml")
	doc := fmt.Sprintf("name: %s\ndescription: make bench accuracy\nsources: [\"cmd/faultbox-bench\"]\nbehaviors:\n%s", name, body)
	return path, os.WriteFile(path, []byte(doc), 0o644)
}

func (a accuracy) apply(ctx context.Context, e *labEnv, profile string) error {
	_, err := run(ctx, 30*time.Second, a.faultbox, "lab", "apply", "--name", e.name, profile)
	return err
}

// udpRun receives in the server with owd-recv and sends n datagrams of
// size bytes at pps from the client with owd-send.
func udpRun(ctx context.Context, e env, self string, pps, n, size int, skip time.Duration) (OWDSent, OWDResult, error) {
	var sent OWDSent
	var got OWDResult
	dur := time.Duration(n) * time.Second / time.Duration(pps)
	listen := fmt.Sprintf("%s:%d", e.ServerAddr(), owdPort)
	recv, err := startBG(ctx, e, "server", self, "owd-recv", "-listen", listen, "-n", strconv.Itoa(n),
		"-idle", "2s", "-skip", skip.String(), "-max", (dur + time.Minute).String())
	if err != nil {
		return sent, got, err
	}
	defer recv.kill()
	if err := waitListen(ctx, e, "server", "u", owdPort); err != nil {
		return sent, got, err
	}
	if err := (measurer{}).probe(ctx, e, dur+time.Minute, &sent, self, "owd-send", "-server", listen,
		"-pps", strconv.Itoa(pps), "-n", strconv.Itoa(n), "-size", strconv.Itoa(size)); err != nil {
		return sent, got, err
	}
	if err := recv.wait(dur + time.Minute); err != nil {
		return sent, got, fmt.Errorf("owd-recv: %v: %s", err, recv.out)
	}
	return sent, got, lastJSON(recv.out.String(), &got)
}

type delayRow struct {
	device string // how the device ran
	delay  time.Duration
	pps    int
	sent   OWDSent
	got    OWDResult
	err    error
}

// delays measures 0 (passthrough), 1, 10 and 100 ms at 1k and 10k
// datagrams/s in one lab, started with labArgs.
func (a accuracy) delays(ctx context.Context, device string, labArgs ...string) ([]delayRow, error) {
	e, err := newLab(ctx, a.faultbox, "passthrough", labArgs...)
	if e != nil {
		defer e.Close()
	}
	if err != nil {
		return nil, err
	}
	var rows []delayRow
	for _, d := range []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond} {
		profile := "passthrough"
		if d > 0 {
			if profile, err = a.writeProfile("bench-delay-"+d.String(), fmt.Sprintf("  - type: delay\n    delay: %v\n", d)); err != nil {
				return rows, err
			}
		}
		if err := a.apply(ctx, e, profile); err != nil {
			return rows, err
		}
		for _, pps := range []int{1000, 10000} {
			n := 3 * pps // 3 s
			if pps > 1000 {
				n = 2 * pps
			}
			r := delayRow{device: device, delay: d, pps: pps}
			r.sent, r.got, r.err = udpRun(ctx, e, a.self, pps, n, 64, 0)
			fmt.Fprintf(os.Stderr, "   %s: delay %v at %d/s: %d of %d received, one-way p50 %v p99 %v max %v\n", device, d, pps,
				r.got.N, r.sent.Sent, time.Duration(r.got.P50NS), time.Duration(r.got.P99NS), time.Duration(r.got.MaxNS))
			if r.err != nil {
				fmt.Fprintf(os.Stderr, "   %v\n", r.err)
			}
			rows = append(rows, r)
			if ctx.Err() != nil {
				return rows, ctx.Err()
			}
		}
	}
	return rows, nil
}

func printDelays(rows []delayRow, load string) {
	fmt.Printf("\nDelay accuracy: one-way delay of 64-byte UDP datagrams (paced), measured minus configured, us\nload average %s\n\n", load)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "device\tdelay\tpackets/s\treceived\terror min\tp50\tp99\tp99.9\tmax\tp99 <= 200us\tp99 at the app\t")
	us := func(ns int64, d time.Duration) string { return fmt.Sprintf("%.1f", float64(ns-int64(d))/1e3) }
	for _, r := range rows {
		name := r.delay.String()
		if r.delay == 0 {
			name = "0 (passthrough)"
		}
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%s\t%d\tfailed: %s\t\t\t\t\t\t\t\n", r.device, name, r.pps, oneLine(r.err))
			continue
		}
		ok := "yes"
		if r.got.P99NS-int64(r.delay) > 200e3 {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.device, name, r.pps, r.got.N, r.sent.Sent,
			us(r.got.MinNS, r.delay), us(r.got.P50NS, r.delay), us(r.got.P99NS, r.delay),
			us(r.got.P999NS, r.delay), us(r.got.MaxNS, r.delay), ok, us(r.got.AppP99NS, r.delay))
	}
	tw.Flush()
	fmt.Println("\nOne-way delay: the receiving kernel's timestamp (SO_TIMESTAMPNS, converted to CLOCK_MONOTONIC) minus the")
	fmt.Println("sender's CLOCK_MONOTONIC stamp in the payload, taken just before send(). It covers the sender's send(),")
	fmt.Println("its TUN, the device's read, its delay line (a timerfd; spin: the device polls " + sharedSpin[1] + " on shared CPUs, then")
	fmt.Println("sleeps in ppoll until the next departure; busy-poll: it watches the clock on a CPU of its own), its")
	fmt.Println("write; the passthrough rows are that path without a delay line. 'p99 at the app'")
	fmt.Println("adds the receiving process's wake-up (stamped when recv returns).")
}

// rateCase is one configured rate and the UDP datagram (IP bytes) that
// gives enough packets per second to measure at it.
type rateCase struct {
	name string
	bps  float64
	ip   int
	dur  time.Duration
}

// rateQueue is both shapers' queue: deeper than the largest TCP send
// buffer here (tcp_wmem's maximum, 4 MiB), so TCP never loses a segment
// to it. A tail drop would leave a hole that holds back the bytes behind
// it until the retransmission arrives, and a goodput window that opens
// during a hole counts bytes that crossed the link before it opened.
const rateQueue = 8 << 20

var rateCases = []rateCase{
	{"20kbit", 20e3, 100, 6 * time.Second},
	{"64kbit", 64e3, 200, 6 * time.Second},
	{"1mbit", 1e6, 1000, 4 * time.Second},
	{"100mbit", 100e6, 1500, 4 * time.Second},
	{"1gbit", 1e9, 1500, 4 * time.Second},
}

// Header bytes per 1448-byte TCP segment (IPv4, TCP with timestamps) and
// per UDP datagram; a veth adds its Ethernet header, which tbf counts.
const (
	tcpMSS     = 1448
	tcpHdr     = 52
	udpHdr     = 28
	etherHdr   = 14
	goodputWin = time.Second // left out at the start (slow start, token bucket burst)
)

type rateRow struct {
	link     string // faultbox rate | tbf on veth
	c        rateCase
	overhead int // link-layer bytes per packet the shaper counts
	tcp      GoodputResult
	udp      OWDResult
	udpSent  OWDSent
	tcpErr   error
	udpErr   error
}

// shaper configures a rate on an env's client->server direction.
type shaper struct {
	link     string
	overhead int
	e        env
	set      func(ctx context.Context, c rateCase) error
}

func (a accuracy) rates(ctx context.Context) ([]rateRow, error) {
	var rows []rateRow
	lab, err := newLab(ctx, a.faultbox, "passthrough")
	if lab != nil {
		defer lab.Close()
	}
	if err != nil {
		return nil, err
	}
	veth, err := newVeth(ctx)
	if veth != nil {
		defer veth.Close()
	}
	if err != nil {
		return nil, err
	}
	shapers := []shaper{
		{"faultbox rate", 0, lab, func(ctx context.Context, c rateCase) error {
			p, err := a.writeProfile("bench-rate-"+c.name, fmt.Sprintf(
				"  - type: rate\n    match: {direction: upstream}\n    rate: %s\n    limit: %db\n", c.name, rateQueue))
			if err != nil {
				return err
			}
			return a.apply(ctx, lab, p)
		}},
		{"tbf on veth", etherHdr, veth, func(ctx context.Context, c rateCase) error {
			burst := max(2*(1500+etherHdr), int(c.bps/8/1000)) // a packet pair, or 1 ms at the rate
			_, err := run(ctx, 10*time.Second, "ip", "netns", "exec", veth.ns["client"], "tc", "qdisc", "replace",
				"dev", "veth0", "root", "tbf", "rate", fmt.Sprintf("%.0fbit", c.bps),
				"burst", strconv.Itoa(burst), "limit", strconv.Itoa(rateQueue))
			return err
		}},
	}
	for _, c := range rateCases {
		for _, s := range shapers {
			r := rateRow{link: s.link, c: c, overhead: s.overhead}
			if err := s.set(ctx, c); err != nil {
				r.tcpErr, r.udpErr = err, err
				rows = append(rows, r)
				continue
			}
			r.tcp, r.tcpErr = a.goodput(ctx, s.e, c.dur)
			// UDP offered at 1.25 x the rate: the queue never runs dry.
			pps := c.bps / float64(8*(c.ip+s.overhead))
			n := int(1.25 * pps * c.dur.Seconds())
			r.udpSent, r.udp, r.udpErr = udpRun(ctx, s.e, a.self, int(1.25*pps+0.5), n, c.ip-udpHdr, goodputWin)
			fmt.Fprintf(os.Stderr, "   %s %s: TCP %.4g bit/s, UDP %.4g packets/s (%v %v)\n", s.link, c.name,
				r.tcp.BPS*8, r.udp.RatePPS, r.tcpErr, r.udpErr)
			rows = append(rows, r)
			if ctx.Err() != nil {
				return rows, ctx.Err()
			}
		}
	}
	return rows, nil
}

// goodput runs tcp-sink in the server and tcp-source in the client.
func (a accuracy) goodput(ctx context.Context, e env, dur time.Duration) (GoodputResult, error) {
	const port = 9101
	var r GoodputResult
	listen := fmt.Sprintf("%s:%d", e.ServerAddr(), port)
	sink, err := startBG(ctx, e, "server", a.self, "tcp-sink", "-listen", listen, "-t", dur.String(), "-skip", goodputWin.String())
	if err != nil {
		return r, err
	}
	defer sink.kill()
	if err := waitListen(ctx, e, "server", "t", port); err != nil {
		return r, err
	}
	src, err := startBG(ctx, e, "client", a.self, "tcp-source", "-server", listen, "-max", (dur + time.Minute).String())
	if err != nil {
		return r, err
	}
	defer src.kill()
	if err := sink.wait(dur + time.Minute); err != nil {
		return r, fmt.Errorf("tcp-sink: %v: %s", err, sink.out)
	}
	if err := lastJSON(sink.out.String(), &r); err != nil {
		return r, fmt.Errorf("tcp-sink: %v", err)
	}
	if r.BPS == 0 {
		return r, fmt.Errorf("tcp-sink: no steady-state data: %s", sink.out)
	}
	return r, nil
}

func printRates(rows []rateRow, load string) {
	fmt.Printf("\nRate accuracy: TCP goodput and UDP packet rate vs the configured rate\nload average %s\n\n", load)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate\tshaper\tTCP goodput\texpected\tratio\tUDP IP bytes\toffered/s\tpackets/s\texpected\tratio\twire bit/s\t")
	for _, r := range rows {
		wire := float64(tcpMSS+tcpHdr+r.overhead) * 8
		expTCP := r.c.bps * tcpMSS * 8 / wire // payload bits/s
		expPPS := r.c.bps / float64(8*(r.c.ip+r.overhead))
		tcp, tcpRatio := "failed", "-"
		if r.tcpErr == nil {
			tcp, tcpRatio = bits(r.tcp.BPS*8), fmt.Sprintf("%.2f%%", 100*r.tcp.BPS*8/expTCP)
		}
		pps, ppsRatio, wireRate := "failed", "-", "-"
		if r.udpErr == nil {
			pps, ppsRatio = fmt.Sprintf("%.1f", r.udp.RatePPS), fmt.Sprintf("%.2f%%", 100*r.udp.RatePPS/expPPS)
			wireRate = bits(r.udp.RatePPS * float64(8*(r.c.ip+r.overhead)))
		}
		offered := "-"
		if r.udpSent.Seconds > 0 {
			offered = fmt.Sprintf("%.1f", float64(r.udpSent.Sent)/r.udpSent.Seconds)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%.1f\t%s\t%s\t\n", r.c.name, r.link, tcp, bits(expTCP), tcpRatio,
			r.c.ip, offered, pps, expPPS, ppsRatio, wireRate)
	}
	tw.Flush()
	for _, r := range rows {
		for _, err := range []error{r.tcpErr, r.udpErr} {
			if err != nil {
				fmt.Printf("  %s %s: %s\n", r.c.name, r.link, oneLine(err))
			}
		}
	}
	fmt.Printf("\nExpected: TCP payload %d of every %d+%d IP bytes (IPv4, timestamps); a veth's tbf also counts the\n", tcpMSS, tcpMSS, tcpHdr)
	fmt.Printf("%d-byte Ethernet header, faultbox's rate counts IP packets. Measured after the first %v (slow start,\n", etherHdr, goodputWin)
	fmt.Println("token-bucket burst), timed by the receiving kernel's stamps. UDP is offered at 1.25 x the rate (if the")
	fmt.Printf("sender keeps up: see offered/s). Queue: %d MiB for both, deeper than TCP's send buffer (tcp_wmem max),\n", rateQueue>>20)
	fmt.Println("so TCP loses nothing to it; tbf's burst: two packets or 1 ms at the rate.")
}

// bits formats bit/s with a unit.
func bits(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.4g G", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.4g M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.4g k", v/1e3)
	}
	return fmt.Sprintf("%.4g ", v)
}
