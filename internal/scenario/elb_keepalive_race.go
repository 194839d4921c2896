package scenario

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// elb-keepalive-race: FIELD-FAILURES.md §3, cause A (and C). A Classic ELB
// reuses a pooled keep-alive connection just as the backend's idle timeout
// closes it: the request meets a closed socket, draws a RST, and the LB
// answers 504 with almost no backend time. Six arms run at once, one port
// each, against one server with a 1 s keep-alive timeout, so the run
// shows the failure rate against the server's idle timeout and the LB's
// reuse timing, the race widened on purpose by holding the server's FIN,
// and the fix (the LB's idle timeout below the server's).

const (
	elbServerIdle = time.Second // serve --keepalive-timeout
	// The server's FIN to the LB is held elbFINDelay on two arms. 20 ms
	// (FIELD-FAILURES.md) is enough on an idle machine; on a loaded one
	// (a load of 10-17 on 2 CPUs, measured) a process stalled for 0.1-0.6
	// s at times, and up to 4.5 s, moving the server's close or the LB's
	// send out of a 20 ms window. So the window is 300 ms and the aim its
	// middle: either side may be 150 ms late. Requests the evidence shows
	// mistimed by a longer stall are counted apart (elbRaceStats.mistimed).
	elbFINDelay = 300 * time.Millisecond // fin-delay on server→lb FINs (arms 8603, 8604)
	elbAimIn    = elbFINDelay / 2        // aimed into the middle of the widened window
	elbAimPast  = 2 * elbFINDelay        // aimed past it
	elbLBBelow  = 700 * time.Millisecond // the fix: 300 ms below the server's, more than a stall
	elbTraffic  = 9 * time.Second        // how long clients start requests
)

type elbRaceArm struct {
	name   string
	port   int
	aim    time.Duration // 0: not aimed
	check  bool          // check_before_reuse: the LB notices a FIN that has arrived
	lbIdle time.Duration
	delay  bool // the device holds the server's FIN
	expect report.Outcome
	change string
}

var elbRaceArms = []elbRaceArm{
	{"aimed, blind LB", 8601, elbAimIn, false, time.Minute, false, report.Reproduced,
		fmt.Sprintf("the built-in elb: pooled connections reused without a look; each reuse sent at the server's idle timeout + %v", elbAimIn)},
	{"aimed, checking LB", 8602, elbAimIn, true, time.Minute, false, report.NotReproduced,
		fmt.Sprintf("the LB drops a pooled connection whose FIN has arrived (check_before_reuse), checked when the request goes out at +%v", elbAimIn)},
	{fmt.Sprintf("aimed, checking LB, FIN held %v", elbFINDelay), 8603, elbAimIn, true, time.Minute, true, report.Reproduced,
		fmt.Sprintf("as above, and the device holds the server's FIN to the LB %v (fin-delay): the race window grows to T..T+%v", elbFINDelay, elbFINDelay)},
	{"aimed past the window", 8604, elbAimPast, true, time.Minute, true, report.NotReproduced,
		fmt.Sprintf("FIN held %v, reuse at +%v: the FIN has arrived, the LB notices", elbFINDelay, elbAimPast)},
	{"unaimed, low rate", 8605, 0, false, time.Minute, false, "", // its rate is reported, not expected
		"the built-in elb (MRU, 60 s idle timeout) and two clients with 0.5-1.5 s between requests"},
	{"LB idle timeout below the server's", 8606, 0, false, elbLBBelow, false, report.NotReproduced,
		fmt.Sprintf("the same traffic with the LB's idle timeout %v, below the server's %v: the LB always closes first", elbLBBelow, elbServerIdle)},
}

var elbRaceProfile = fmt.Sprintf(`name: elb-keepalive-race
description: >-
  The keepalive-race profile narrowed to the LB's backend connections of two
  arms and widened: the server's FIN toward the lb host is held %[1]v on
  ports 8603 and 8604; RSTs and everything else pass at once and overtake it.
sources:
  - "Akka HTTP forum thread 'Akka-http random connections close' (seeds/003)"
  - "FIELD-FAILURES.md: delaying the server's FIN by D widens the failing window to about T..T+D"
behaviors:
  - type: fin-delay
    match: {from: server, to: lb, tcp_flags: [fin], port: 8603}
    delay: %[1]v
  - type: fin-delay
    match: {from: server, to: lb, tcp_flags: [fin], port: 8604}
    delay: %[1]v
`, elbFINDelay)

func init() {
	Register(&Scenario{
		Name:    "elb-keepalive-race",
		Summary: "Classic ELB reuses a keep-alive connection as the backend's idle timeout closes it: RST, 504",
		Description: "An Amazon Classic ELB in front of akka-http returned 504 with almost zero backend time about once per " +
			"800 K requests (seeds/003): the backend's idle timeout closed a pooled keep-alive connection just as the LB sent " +
			"the next request on it; the request met a closed socket and drew a RST, and the LB did not retry. Here the " +
			"backend is faultbox serve with a 1 s keep-alive timeout and the LB is faultbox proxy (elb) in the lb host. Six " +
			"arms run side by side, one port each: requests aimed just after the idle timeout with an LB that reuses blindly " +
			"and one that notices a FIN that has arrived; the same with the server's FIN held on the wire, which makes " +
			"the failure certain; aimed past that window; unaimed traffic at a low rate; and the fix, the LB's idle timeout " +
			"below the server's.",
		Hosts:       []string{"client", "lb", "server"},
		ProfileYAML: elbRaceProfile,
		Budget:      25 * time.Second,
		Drive:       driveELBKeepAliveRace,
		Judge:       judgeELBKeepAliveRace,
	})
}

func elbRaceProcName(a elbRaceArm) string { return fmt.Sprintf("lb-%d", a.port) }

func driveELBKeepAliveRace(c *Context) error {
	var ports []int
	flags := []string{"--keepalive-timeout", elbServerIdle.String()}
	for _, a := range elbRaceArms {
		ports = append(ports, a.port)
		flags = append(flags, "--listen", Addr("server", a.port))
	}
	if _, err := c.servePrefixed(elbNice, "server", "serve", flags...); err != nil {
		return err
	}
	for _, a := range elbRaceArms {
		settings := fmt.Sprintf("idle_timeout: %v, order: mru, check_before_reuse: %v", a.lbIdle, a.check)
		if a.aim != 0 {
			settings += fmt.Sprintf(", aim_at_idle_timeout: {backend_idle: %v, offset: %v}", elbServerIdle, a.aim)
		}
		if err := elbStartProxy(c, elbRaceProcName(a), a.port, a.name+": "+a.change, settings, elbNice...); err != nil {
			return err
		}
	}
	if err := waitListening(c, "lb", "the LBs", nil, ports...); err != nil {
		return err
	}
	for _, h := range []string{"server", "lb"} {
		if err := c.Sample(h, sockdiag.Filter{States: elbLive}, 0); err != nil {
			return err
		}
	}
	c.Step("scenario", "clients start: 4 per aimed arm back to back, 2 per unaimed arm with 0.5-1.5 s gaps, for %v", elbTraffic)
	until := time.Now().Add(elbTraffic)
	// Both unaimed arms get the same seeded gaps: only the LB differs.
	gaps := elbGaps(rand.New(rand.NewPCG(c.Seed, 0x656c62)), 2)
	var wg sync.WaitGroup
	for _, a := range elbRaceArms {
		loops := 4
		if a.aim == 0 {
			loops = len(gaps)
		}
		for i := range loops {
			var g []time.Duration
			if a.aim == 0 {
				g = gaps[i]
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Staggered, so that a stall of the machine hits one
				// aimed request of an arm, not all its clients at once.
				if !elbSleep(c, time.Duration(i)*250*time.Millisecond) {
					return
				}
				elbClientLoop(c, a.name, fmt.Sprintf("client :%d/%d", a.port, i+1), a.port, until, g)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	finished := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	// A request started at the end waits out its hold (at most 1.6 s) and
	// at worst its 5 s deadline.
	limit := elbTraffic + 7*time.Second
	if _, err := c.WaitFor("the clients", limit, finished); err != nil {
		return err
	}
	if !finished() {
		return fmt.Errorf("the clients did not finish within %v", limit)
	}
	return c.Wait("a last socket sample", 50*time.Millisecond)
}

// elbSleep waits d unless the run ends first (false).
func elbSleep(c *Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.Context().Done():
		return false
	}
}

// elbGaps draws loops sequences of idle gaps, uniform in 0.5-1.5 s,
// enough for elbTraffic.
func elbGaps(r *rand.Rand, loops int) [][]time.Duration {
	out := make([][]time.Duration, loops)
	for i := range out {
		for sum := time.Duration(0); sum < elbTraffic; {
			g := 500*time.Millisecond + time.Duration(r.Int64N(int64(time.Second)))
			out[i] = append(out[i], g)
			sum += g
		}
	}
	return out
}

// elbClientLoop sends GETs through the LB on one keep-alive connection,
// one after another (waiting gaps[i] before request i+1 when given), until
// until; it redials after a failed one. Each request is a ClientResult.
func elbClientLoop(c *Context, arm, name string, port int, until time.Time, gaps []time.Duration) {
	var conn *net.TCPConn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for i := 0; i < 64 && time.Now().Before(until); i++ {
		detail := ""
		if i > 0 && gaps != nil {
			g := gaps[(i-1)%len(gaps)]
			if !elbSleep(c, g) {
				return
			}
			detail = fmt.Sprintf("sent after %v idle", g.Round(time.Millisecond))
		}
		r := ClientResult{Name: fmt.Sprintf("%s #%d", name, i+1), Arm: arm, Detail: detail}
		if conn == nil {
			var err error
			if conn, err = c.Dial("client", Addr("lb", port), 2*time.Second); err != nil {
				r.Start, r.End = time.Now(), time.Now()
				r.SetErr(err)
				c.Record(r)
				return
			}
			br = bufio.NewReader(conn)
		}
		r.Local, r.Remote = Ends(conn)
		r.Start = time.Now()
		conn.SetDeadline(r.Start.Add(5 * time.Second))
		status, n, err := Get(conn, br, "/", false, -1)
		r.End, r.Status, r.Bytes = time.Now(), status, n
		r.SetErr(err)
		c.Record(r)
		if err != nil {
			conn.Close()
			conn = nil
		}
	}
}

// elbRaceStats is one arm's access log and wire evidence summed up.
type elbRaceStats struct {
	arm      elbRaceArm
	requests int
	aimed    int // requests held for the aim point
	failed   int
	failedIn int            // failures among the aimed
	causes   map[string]int // what the LB met on the backend connection: RST, EOF, EPIPE
	maxFail  float64        // largest backend time of a failure, ms
	times    []float64      // backend times of the failures, ms
	idle     [2][2]int      // reused connections: [idle < server's, >=][all, failed]
	lbClosed int            // idle connections the LB closed itself (its idle timeout)
	dropped  int            // pooled connections dropped at reuse: their FIN had arrived
	// Aimed requests the evidence shows mistimed by a stall of the
	// machine: served on a reused connection idle past the server's
	// timeout (its idle timer fired late), or not sent because the held
	// FIN had arrived although it was held longer than the aim offset
	// (the LB checked late).
	serverLate, lbLate int
	// Failures a stall explains: the LB reused a connection idle for less
	// than the server's timeout, yet its request reached the device after
	// the server's FIN: it was delayed by more than the time left.
	stallFails     int
	finsHeld, fins int      // the server's FINs to the LB in the capture, and how many the device held
	crossed        int      // failures whose request left before the server's FIN reached the LB
	before         int      // ... of them reaching the server as it closed, before its FIN
	after          int      // failures sent after the FIN had reached the LB
	afterHeld      int      // ... although it was held longer than the aim offset
	rsts           int      // failures answered by a RST from the server
	fail           *elbFail // one failure (crossing the FIN if any did), for timeline and ladder
	drop           *elbWire // one connection dropped at reuse, for the ladder
}

// elbFail is one failed request and its backend connection on the wire.
type elbFail struct {
	entry proxy.Entry
	wire  elbWire
}

func elbRaceArmStats(e *Evidence, a elbRaceArm) (elbRaceStats, error) {
	s := elbRaceStats{arm: a, causes: map[string]int{}}
	l := readProxyLog(e, elbRaceProcName(a))
	if len(l.reqs) == 0 {
		return s, fmt.Errorf("arm %q: the LB logged no request (see %s.err)", a.name, elbRaceProcName(a))
	}
	server := AddrPort("server", a.port)
	newConn, heldDrops := 0, 0
	for _, en := range l.reqs {
		s.requests++
		if en.Aimed {
			s.aimed++
		}
		if en.ReuseCount > 0 {
			k := 0
			if en.ConnIdle >= float64(elbServerIdle.Milliseconds()) {
				k = 1
			}
			s.idle[k][0]++
			if elbFailed(en) {
				s.idle[k][1]++
			}
		}
		if !elbFailed(en) {
			switch {
			case en.Aimed && en.ReuseCount > 0 && en.ConnIdle >= float64(elbServerIdle.Milliseconds()):
				s.serverLate++
			case en.Aimed && en.ReuseCount == 0:
				newConn++ // the held connection was dropped at the aim point
			}
			continue
		}
		s.failed++
		if en.Aimed {
			s.failedIn++
		}
		s.causes[elbCause(en)]++
		s.maxFail = max(s.maxFail, en.BackendTime)
		s.times = append(s.times, en.BackendTime)
		lb, ok := l.local[en.BackendConn]
		if !ok {
			continue
		}
		f := elbFail{entry: en, wire: elbAnalyzeWire(e, lb, server)}
		switch {
		case f.wire.crossed:
			s.crossed++
			if f.wire.beforeFIN {
				s.before++
			}
		case f.wire.reqAfter:
			s.after++
			if w := f.wire.fin; w.Delayed && w.Out.Sub(w.In) > a.aim {
				s.afterHeld++
			}
		}
		if en.ConnIdle < float64(elbServerIdle.Milliseconds()) && f.wire.fin != nil && f.wire.req != nil &&
			!f.wire.req.When().Before(f.wire.fin.When()) {
			s.stallFails++
		}
		if f.wire.rst != nil {
			s.rsts++
		}
		if s.fail == nil || (!s.fail.wire.crossed && f.wire.crossed) {
			s.fail = &f
		}
	}
	for _, pe := range l.closes {
		switch {
		case pe.Reason == "idle_timeout":
			s.lbClosed++
		case strings.HasPrefix(pe.Reason, "check_before_reuse"):
			s.dropped++
			lb, ok := l.local[pe.BackendConn]
			if !ok {
				continue
			}
			w := elbAnalyzeWire(e, lb, server)
			if s.drop == nil {
				s.drop = &w
			}
			if a.aim != 0 && w.fin != nil && !w.fin.Out.IsZero() && w.fin.Out.Sub(w.fin.In) > a.aim {
				heldDrops++
			}
		}
	}
	if e.Capture != nil {
		for _, p := range e.Capture.Packets {
			if report.SameEnd(p.Src, server) && p.Flags&packet.FIN != 0 {
				s.fins++
				if p.Delayed {
					s.finsHeld++
				}
			}
		}
	}
	// An aimed request that went out on a new connection because the one
	// it was held on had its FIN in already, although that FIN was held
	// longer than the aim offset: the LB checked late.
	s.lbLate = min(newConn, heldDrops)
	return s, nil
}

// base is the denominator of the arm's rate: aimed requests, or all.
func (s *elbRaceStats) base() (n, failed int, what string) {
	if s.arm.aim != 0 {
		return s.aimed, s.failedIn, "aimed requests"
	}
	return s.requests, s.failed, "requests"
}

// lateFails are the aimed failures of a checking LB sent after a FIN
// held past the aim point had reached it: it checked before the FIN came
// in and then stalled.
func (s *elbRaceStats) lateFails() int {
	if s.arm.check {
		return s.afterHeld
	}
	return 0
}

// stallFailsOf are the failures of an unaimed arm a stall explains.
func (s *elbRaceStats) stallFailsOf() int {
	if s.arm.aim == 0 {
		return s.stallFails
	}
	return 0
}

// mistimed is how many aimed requests a stall of the machine moved out
// of the intended timing.
func (s *elbRaceStats) mistimed() int { return s.serverLate + s.lbLate + s.lateFails() }

// stalls says what the mistimed requests were, or "".
func (s *elbRaceStats) stalls() string {
	if s.mistimed() == 0 {
		return ""
	}
	return fmt.Sprintf("%d mistimed by a stall of the machine (%d reached the server before it closed: its idle timer fired late; "+
		"%d found the held FIN already in, %d went out after it had come in: the LB was late)",
		s.mistimed(), s.serverLate, s.lbLate, s.lateFails())
}

func (s *elbRaceStats) reason() string {
	n, f, what := s.base()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s failed (504)", elbShare(f, n), what)
	if f > 0 {
		fmt.Fprintf(&b, ": %s from the backend, backend time at most %s", elbCauses(s.causes), elbMS(s.maxFail))
		if s.arm.aim != 0 {
			fmt.Fprintf(&b, "; %d crossed the server's FIN in flight (%d of them reached the server as it closed), %d were sent after it had arrived; %d drew a RST",
				s.crossed, s.before, s.after, s.rsts)
		}
	}
	if s.dropped > 0 {
		fmt.Fprintf(&b, "; %d pooled connections dropped at reuse because the server's FIN had arrived", s.dropped)
	}
	if st := s.stalls(); st != "" {
		b.WriteString("; " + st)
	}
	if s.arm.aim == 0 && s.stallFails > 0 {
		fmt.Fprintf(&b, "; %d of the failures were reused after less than the server's %v but reached it after its FIN: delayed by a stall of the machine",
			s.stallFails, elbServerIdle)
	}
	if s.arm.aim == 0 {
		fmt.Fprintf(&b, "; reused after < %v idle: %s failed, after >= %v: %s failed",
			elbServerIdle, elbShare(s.idle[0][1], s.idle[0][0]), elbServerIdle, elbShare(s.idle[1][1], s.idle[1][0]))
		if s.lbClosed > 0 {
			fmt.Fprintf(&b, "; the LB closed %d idle connections itself first", s.lbClosed)
		}
	}
	return b.String()
}

func judgeELBKeepAliveRace(e *Evidence) Verdict {
	var v Verdict
	stats := make([]elbRaceStats, len(elbRaceArms))
	for i, a := range elbRaceArms {
		s, err := elbRaceArmStats(e, a)
		if err != nil {
			return Verdict{Outcome: report.Error, Reason: err.Error()}
		}
		stats[i] = s
	}
	table := report.Table{Columns: []string{"arm", "port", "LB reuse", "LB idle timeout", "check before reuse",
		"server FIN", "requests", "aimed", "failed (504)", "rate", "from the backend", "max backend time of a failure"}}
	for _, s := range stats {
		a := s.arm
		n, f, _ := s.base()
		v.Runs = append(v.Runs, report.Run{Name: a.name, Change: a.change, Expected: a.expect, Reason: s.reason(),
			Outcome: outcomeIf(f-s.lateFails()-s.stallFailsOf() > 0)})
		reuse := "when the client asks (MRU)"
		if a.aim != 0 {
			reuse = fmt.Sprintf("at the server's idle timeout %+v", a.aim)
		}
		fin := "on time"
		if a.delay {
			fin = "held " + elbFINDelay.String()
		}
		rate := "-"
		if n > 0 {
			rate = fmt.Sprintf("%.0f %%", 100*float64(f)/float64(n))
		}
		table.Rows = append(table.Rows, []string{a.name, fmt.Sprint(a.port), reuse, a.lbIdle.String(), fmt.Sprint(a.check),
			fin, fmt.Sprint(s.requests), fmt.Sprint(s.aimed), fmt.Sprint(s.failed), rate, elbCauses(s.causes), elbMS(s.maxFail)})
	}
	v.Results = &table

	widened, onTime, blind, past, low, fix := &stats[2], &stats[1], &stats[0], &stats[3], &stats[4], &stats[5]
	v.Timeline = append(v.Timeline, elbRaceTimeline(e, widened)...)
	v.Timeline = append(v.Timeline, elbRaceTimeline(e, blind)...)
	for _, s := range []*elbRaceStats{widened, onTime, blind} {
		if s.fail != nil {
			v.Ladder = append(v.Ladder, report.Conn{A: s.fail.wire.lb, B: s.fail.wire.server})
		}
		if s.drop != nil {
			v.Ladder = append(v.Ladder, report.Conn{A: s.drop.lb, B: s.drop.server})
		}
	}

	// The widened race must fail every aimed request sent on time (90 %
	// allows for what the evidence cannot tell apart), its requests
	// crossing the held FIN and drawing the server's RST. (The backend
	// time, near zero, is reported, not judged: a stall of the machine
	// inflates it.) This lab runs in
	// a VM that was seen to freeze for 0.6 s at a time under load: no
	// window survives that, so the requests the evidence shows mistimed
	// are set apart; if they are half or more, the run could not aim.
	wn, wf, _ := widened.base()
	onTimeN := wn - widened.mistimed()
	if wn >= 8 && widened.mistimed()*2 >= wn {
		return Verdict{Outcome: report.Error, Runs: v.Runs, Results: v.Results, Timeline: v.Timeline, Ladder: v.Ladder,
			Reason: fmt.Sprintf("the machine was too loaded to aim: of %d aimed requests with the FIN held, %s", wn, widened.stalls())}
	}
	onTimeF := wf - widened.lateFails()
	reproduced := onTimeN >= 5 && float64(onTimeF) >= 0.9*float64(onTimeN) && float64(widened.crossed) >= 0.9*float64(onTimeF) &&
		float64(widened.rsts) >= 0.9*float64(onTimeF)
	fixHolds := fix.requests >= 5 && fix.failed == fix.stallFails && 2*fix.stallFails < fix.requests
	bn, bf, _ := blind.base()
	ln, lf, _ := low.base()
	on, of, _ := onTime.base()
	pn, pf, _ := past.base()
	held := fmt.Sprintf("its FIN held %v (%d of %d FINs held by the device)", elbFINDelay, widened.finsHeld, widened.fins)
	if widened.finsHeld == 0 {
		held = fmt.Sprintf("its FIN not held (none of %d FINs was)", widened.fins)
	}
	numbers := fmt.Sprintf("aimed at the server's %v idle timeout +%v with %s, %s failed with 504",
		elbServerIdle, elbAimIn, held, elbShare(wf, wn))
	if wf > 0 {
		numbers += fmt.Sprintf(" (backend time median %s, at most %s; %d crossed the held FIN and drew %d RSTs)",
			elbMS(elbMedian(widened.times)), elbMS(widened.maxFail), widened.crossed, widened.rsts)
	}
	if st := widened.stalls(); st != "" {
		numbers += fmt.Sprintf(", %s: %s of those sent on time failed", st, elbShare(onTimeF, onTimeN))
	}
	numbers += fmt.Sprintf("; with the FIN on time the checking LB failed %s, past the window (+%v) %s, the blind LB %s; "+
		"unaimed at a low rate %s; with the LB's idle timeout (%v) below the server's %s",
		elbShare(of, on), elbAimPast, elbShare(pf, pn), elbShare(bf, bn), elbShare(lf, ln), elbLBBelow, elbShare(fix.failed, fix.requests))
	if fix.stallFails > 0 {
		numbers += fmt.Sprintf(" (%d delayed past the server's timeout by a stall of the machine, as the capture shows)", fix.stallFails)
	}
	switch {
	case reproduced && fixHolds:
		v.Outcome = report.Reproduced
		v.Reason = "keep-alive reuse race reproduced: " + numbers
	case reproduced:
		v.Outcome = report.NotReproduced
		v.Reason = "the race reproduced but the fix did not hold (the LB's idle timeout below the server's still failed): " + numbers
	default:
		v.Outcome = report.NotReproduced
		v.Reason = "the widened race did not fail every time: " + numbers
	}
	v.Notes = append(v.Notes, fmt.Sprintf("Shortened for the lab: the server's keep-alive timeout is %v (akka-http's was 60 s, "+
		"the same as the ELB's); the timing relative to it is what matters.", elbServerIdle))
	return v
}

// elbRaceTimeline tells one failure of an aimed arm from the evidence:
// the server's close, its FIN, the request, the RST, the 504.
func elbRaceTimeline(e *Evidence, s *elbRaceStats) []report.Entry {
	if s.fail == nil || s.fail.wire.req == nil {
		return nil
	}
	w, en := &s.fail.wire, s.fail.entry
	label := fmt.Sprintf("[:%d]", s.arm.port)
	var out []report.Entry
	for _, ev := range e.ConnLog("serve", w.lb) {
		if ev.Event.Event == "timeout" || ev.Event.Event == "close" {
			out = append(out, e.Entry(ev.At, "server", "%s serve conn %d: %s %s", label, ev.Conn, ev.Event.Event,
				strings.TrimSpace(ev.Reason)))
		}
	}
	if w.fin != nil {
		held := ""
		if w.fin.Delayed && !w.fin.Out.IsZero() {
			held = fmt.Sprintf(", held %v by the device", w.fin.Out.Sub(w.fin.In).Round(100*time.Microsecond))
		}
		out = append(out, e.Entry(w.fin.When(), "server", "%s FIN to the LB (%s → %s)%s", label, w.server, w.lb, held))
	}
	lbState := ""
	if st, ok := e.Socket("lb", w.lb, w.server).StateAt(w.req.When()); ok {
		lbState = ", the LB's socket " + st.String()
	}
	if w.fin != nil {
		if st, ok := elbSampledBetween(e.Socket("server", w.server, w.lb), w.fin.When(), w.req.When()); ok {
			lbState += ", the server's " + st.String()
		}
	}
	where := "as the server closes: it reaches the server before the server's FIN leaves"
	switch {
	case w.crossed && !w.beforeFIN:
		where = fmt.Sprintf("%v after the server's FIN, which is still on its way", w.req.When().Sub(w.fin.When()).Round(100*time.Microsecond))
	case w.reqAfter:
		where = "after the server's FIN has reached the LB"
	}
	out = append(out, e.Entry(w.req.When(), "lb", "%s reuses the pooled connection: request (%d bytes) %s%s", label, w.req.Len, where, lbState))
	if w.rst != nil {
		out = append(out, e.Entry(w.rst.When(), "server", "%s RST: the socket is closed", label))
	}
	out = append(out, e.Entry(w.req.When().Add(time.Duration(en.BackendTime*float64(time.Millisecond))), "lb",
		"%s %s to the client after %s idle, backend time %s (%s from the backend)", label, en.Outcome,
		elbMS(en.ConnIdle), elbMS(en.BackendTime), elbCause(en)))
	if w.fin != nil && w.fin.Delayed && !w.fin.Out.IsZero() {
		out = append(out, e.Entry(w.fin.Out, "device", "%s the held FIN reaches the LB, after the RST", label))
	}
	return out
}
