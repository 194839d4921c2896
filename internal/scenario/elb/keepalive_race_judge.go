package elb

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// The judge of elb-keepalive-race: each arm's access log and what the
// capture shows of its backend connections, summed up per arm, then the
// widened race and the fix judged.

// raceStats is one arm's access log and wire evidence summed up.
type raceStats struct {
	arm      raceArm
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
	finsHeld, fins int        // the server's FINs to the LB in the capture, and how many the device held
	crossed        int        // failures whose request left before the server's FIN reached the LB
	before         int        // ... of them reaching the server as it closed, before its FIN
	after          int        // failures sent after the FIN had reached the LB
	afterHeld      int        // ... although it was held longer than the aim offset
	rsts           int        // failures answered by a RST from the server
	fail           *failure   // one failure (crossing the FIN if any did), for timeline and ladder
	drop           *wireClose // one connection dropped at reuse, for the ladder
}

// failure is one failed request and its backend connection on the wire.
type failure struct {
	entry proxy.Entry
	wire  wireClose
}

// readRaceStats sums up arm a's access log and what the capture shows of
// its backend connections.
func readRaceStats(e *scenario.Evidence, a raceArm) (raceStats, error) {
	s := raceStats{arm: a, causes: map[string]int{}}
	l, err := accessLog(e, raceProcName(a), a.name)
	if err != nil {
		return s, err
	}
	server := scenario.AddrPort("server", a.port)
	newConn := 0
	for _, en := range l.Requests {
		if s.addRequest(en) {
			newConn++
		}
		if !lbFailed(en) {
			continue
		}
		if lb, ok := l.Local[en.BackendConn]; ok {
			s.addFailureWire(failure{entry: en, wire: readWireClose(e, lb, server)})
		}
	}
	heldDrops := s.addCloses(e, l, server)
	s.countFINs(e, server)
	// An aimed request that went out on a new connection because the one
	// it was held on had its FIN in already, although that FIN was held
	// longer than the aim offset: the LB checked late.
	s.lbLate = min(newConn, heldDrops)
	return s, nil
}

// addRequest counts one request of the access log. It reports an aimed
// request that went out on a new connection: the one it was held on was
// dropped at the aim point.
func (s *raceStats) addRequest(en proxy.Entry) (newConn bool) {
	s.requests++
	if en.Aimed {
		s.aimed++
	}
	idleOver := en.ConnIdle >= float64(serverIdle.Milliseconds())
	if en.ReuseCount > 0 {
		k := 0
		if idleOver {
			k = 1
		}
		s.idle[k][0]++
		if lbFailed(en) {
			s.idle[k][1]++
		}
	}
	if !lbFailed(en) {
		switch {
		case en.Aimed && en.ReuseCount > 0 && idleOver:
			s.serverLate++
		case en.Aimed && en.ReuseCount == 0:
			return true
		}
		return false
	}
	s.failed++
	if en.Aimed {
		s.failedIn++
	}
	s.causes[cause(en)]++
	s.maxFail = max(s.maxFail, en.BackendTime)
	s.times = append(s.times, en.BackendTime)
	return false
}

// addFailureWire counts what the capture shows of a failed request's
// backend connection: whether the request crossed the server's FIN,
// followed it, or was delayed past it by a stall.
func (s *raceStats) addFailureWire(f failure) {
	switch {
	case f.wire.crossed:
		s.crossed++
		if f.wire.beforeFIN {
			s.before++
		}
	case f.wire.reqAfter:
		s.after++
		if w := f.wire.fin; w.Delayed && w.Out.Sub(w.In) > s.arm.aim {
			s.afterHeld++
		}
	}
	if f.entry.ConnIdle < float64(serverIdle.Milliseconds()) && f.wire.fin != nil && f.wire.req != nil &&
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

// addCloses counts the backend connections the LB closed: at its own idle
// timeout, or at reuse because their FIN had arrived. It returns how many
// of the latter had a FIN held longer than the aim offset.
func (s *raceStats) addCloses(e *scenario.Evidence, l scenario.ProxyLog, server netip.AddrPort) (heldDrops int) {
	for _, pe := range l.Closes {
		switch {
		case pe.Reason == "idle_timeout":
			s.lbClosed++
		case strings.HasPrefix(pe.Reason, "check_before_reuse"):
			s.dropped++
			lb, ok := l.Local[pe.BackendConn]
			if !ok {
				continue
			}
			w := readWireClose(e, lb, server)
			if s.drop == nil {
				s.drop = &w
			}
			if s.arm.aim != 0 && w.fin != nil && !w.fin.Out.IsZero() && w.fin.Out.Sub(w.fin.In) > s.arm.aim {
				heldDrops++
			}
		}
	}
	return heldDrops
}

// countFINs counts the server's FINs in the capture, and those the device
// held.
func (s *raceStats) countFINs(e *scenario.Evidence, server netip.AddrPort) {
	if e.Capture == nil {
		return
	}
	for _, p := range e.Capture.Packets {
		if report.SameEnd(p.Src, server) && p.Flags&packet.FIN != 0 {
			s.fins++
			if p.Delayed {
				s.finsHeld++
			}
		}
	}
}

// base is the denominator of the arm's rate: aimed requests, or all.
func (s *raceStats) base() (n, failed int, what string) {
	if s.arm.aim != 0 {
		return s.aimed, s.failedIn, "aimed requests"
	}
	return s.requests, s.failed, "requests"
}

// lateFails are the aimed failures of a checking LB sent after a FIN
// held past the aim point had reached it: it checked before the FIN came
// in and then stalled.
func (s *raceStats) lateFails() int {
	if s.arm.check {
		return s.afterHeld
	}
	return 0
}

// stallFailsOf are the failures of an unaimed arm a stall explains.
func (s *raceStats) stallFailsOf() int {
	if s.arm.aim == 0 {
		return s.stallFails
	}
	return 0
}

// mistimed is how many aimed requests a stall of the machine moved out
// of the intended timing.
func (s *raceStats) mistimed() int { return s.serverLate + s.lbLate + s.lateFails() }

// stalls says what the mistimed requests were, or "".
func (s *raceStats) stalls() string {
	if s.mistimed() == 0 {
		return ""
	}
	return fmt.Sprintf("%d mistimed by a stall of the machine (%d reached the server before it closed: its idle timer fired late; "+
		"%d found the held FIN already in, %d went out after it had come in: the LB was late)",
		s.mistimed(), s.serverLate, s.lbLate, s.lateFails())
}

func (s *raceStats) reason() string {
	n, f, what := s.base()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s failed (504)", share(f, n), what)
	if f > 0 {
		fmt.Fprintf(&b, ": %s from the backend, backend time at most %s", causesText(s.causes), logMS(s.maxFail))
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
			s.stallFails, serverIdle)
	}
	if s.arm.aim == 0 {
		fmt.Fprintf(&b, "; reused after < %v idle: %s failed, after >= %v: %s failed",
			serverIdle, share(s.idle[0][1], s.idle[0][0]), serverIdle, share(s.idle[1][1], s.idle[1][0]))
		if s.lbClosed > 0 {
			fmt.Fprintf(&b, "; the LB closed %d idle connections itself first", s.lbClosed)
		}
	}
	return b.String()
}

func judgeRace(e *scenario.Evidence) scenario.Verdict {
	stats := make([]raceStats, len(raceArms))
	for i, a := range raceArms {
		s, err := readRaceStats(e, a)
		if err != nil {
			return scenario.Verdict{Outcome: report.Error, Reason: err.Error()}
		}
		stats[i] = s
	}
	var v scenario.Verdict
	table := report.Table{Columns: []string{"arm", "port", "LB reuse", "LB idle timeout", "check before reuse",
		"server FIN", "requests", "aimed", "failed (504)", "rate", "from the backend", "max backend time of a failure"}}
	for _, s := range stats {
		v.Runs = append(v.Runs, s.run())
		table.Rows = append(table.Rows, s.row())
	}
	v.Results = &table
	r := raceRoles{blind: &stats[0], onTime: &stats[1], widened: &stats[2], past: &stats[3], low: &stats[4], fix: &stats[5]}
	v.Timeline = append(v.Timeline, raceTimeline(e, r.widened)...)
	v.Timeline = append(v.Timeline, raceTimeline(e, r.blind)...)
	v.Ladder = r.ladder()

	// A VM under load freezes at times for longer than any window: the
	// requests the evidence shows mistimed are set apart; if they are half
	// or more, the run could not aim.
	if wn, _, _ := r.widened.base(); wn >= 8 && r.widened.mistimed()*2 >= wn {
		return scenario.Verdict{Outcome: report.Error, Runs: v.Runs, Results: v.Results, Timeline: v.Timeline, Ladder: v.Ladder,
			Reason: fmt.Sprintf("the machine was too loaded to aim: of %d aimed requests with the FIN held, %s", wn, r.widened.stalls())}
	}
	reproduced, fixHolds, numbers := r.widened.raceReproduced(), r.fix.fixHolds(), r.numbers()
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
		"the same as the ELB's); the timing relative to it is what matters.", serverIdle))
	return v
}

// run is the arm's line in the verdict's runs.
func (s *raceStats) run() report.Run {
	_, f, _ := s.base()
	return report.Run{Name: s.arm.name, Change: s.arm.change, Expected: s.arm.expect, Reason: s.reason(),
		Outcome: scenario.OutcomeIf(f-s.lateFails()-s.stallFailsOf() > 0)}
}

// row is the arm's row in the results table.
func (s *raceStats) row() []string {
	a := s.arm
	n, f, _ := s.base()
	reuse := "when the client asks (MRU)"
	if a.aim != 0 {
		reuse = fmt.Sprintf("at the server's idle timeout %+v", a.aim)
	}
	fin := "on time"
	if a.delay {
		fin = "held " + finDelay.String()
	}
	rate := "-"
	if n > 0 {
		rate = fmt.Sprintf("%.0f %%", 100*float64(f)/float64(n))
	}
	return []string{a.name, fmt.Sprint(a.port), reuse, a.lbIdle.String(), fmt.Sprint(a.check),
		fin, fmt.Sprint(s.requests), fmt.Sprint(s.aimed), fmt.Sprint(s.failed), rate, causesText(s.causes), logMS(s.maxFail)}
}

// raceReproduced is the verdict on the widened race (the FIN held): it
// must fail every aimed request sent on time (90 % allows for what the
// evidence cannot tell apart), its requests crossing the held FIN and
// drawing the server's RST. (The backend time, near zero, is reported,
// not judged: a stall of the machine inflates it.)
func (s *raceStats) raceReproduced() bool {
	n, f, _ := s.base()
	onTimeN, onTimeF := n-s.mistimed(), f-s.lateFails()
	return onTimeN >= 5 && float64(onTimeF) >= 0.9*float64(onTimeN) && float64(s.crossed) >= 0.9*float64(onTimeF) &&
		float64(s.rsts) >= 0.9*float64(onTimeF)
}

// fixHolds is the verdict on the fix arm (the LB's idle timeout below the
// server's): no failure but those a stall of the machine explains, and
// those few.
func (s *raceStats) fixHolds() bool {
	return s.requests >= 5 && s.failed == s.stallFails && 2*s.stallFails < s.requests
}

// raceRoles are the arms' stats by what each shows.
type raceRoles struct{ blind, onTime, widened, past, low, fix *raceStats }

// ladder lists the connections the ladder diagram shows: a failure and a
// connection dropped at reuse of the FIN-held, on-time and blind arms.
func (r raceRoles) ladder() []report.Conn {
	var out []report.Conn
	for _, s := range []*raceStats{r.widened, r.onTime, r.blind} {
		if s.fail != nil {
			out = append(out, report.Conn{A: s.fail.wire.lb, B: s.fail.wire.server})
		}
		if s.drop != nil {
			out = append(out, report.Conn{A: s.drop.lb, B: s.drop.server})
		}
	}
	return out
}

// numbers is the verdict's evidence in one sentence: the widened race's
// failures, then every other arm's rate.
func (r raceRoles) numbers() string {
	w := r.widened
	wn, wf, _ := w.base()
	held := fmt.Sprintf("its FIN held %v (%d of %d FINs held by the device)", finDelay, w.finsHeld, w.fins)
	if w.finsHeld == 0 {
		held = fmt.Sprintf("its FIN not held (none of %d FINs was)", w.fins)
	}
	numbers := fmt.Sprintf("aimed at the server's %v idle timeout +%v with %s, %s failed with 504",
		serverIdle, aimIn, held, share(wf, wn))
	if wf > 0 {
		numbers += fmt.Sprintf(" (backend time median %s, at most %s; %d crossed the held FIN and drew %d RSTs)",
			logMS(median(w.times)), logMS(w.maxFail), w.crossed, w.rsts)
	}
	if st := w.stalls(); st != "" {
		numbers += fmt.Sprintf(", %s: %s of those sent on time failed", st, share(wf-w.lateFails(), wn-w.mistimed()))
	}
	bn, bf, _ := r.blind.base()
	ln, lf, _ := r.low.base()
	on, of, _ := r.onTime.base()
	pn, pf, _ := r.past.base()
	numbers += fmt.Sprintf("; with the FIN on time the checking LB failed %s, past the window (+%v) %s, the blind LB %s; "+
		"unaimed at a low rate %s; with the LB's idle timeout (%v) below the server's %s",
		share(of, on), aimPast, share(pf, pn), share(bf, bn), share(lf, ln), lbBelow, share(r.fix.failed, r.fix.requests))
	if r.fix.stallFails > 0 {
		numbers += fmt.Sprintf(" (%d delayed past the server's timeout by a stall of the machine, as the capture shows)", r.fix.stallFails)
	}
	return numbers
}

// raceTimeline tells one failure of an aimed arm from the evidence:
// the server's close, its FIN, the request, the RST, the 504.
func raceTimeline(e *scenario.Evidence, s *raceStats) []report.Entry {
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
		if st, ok := sampledBetween(e.Socket("server", w.server, w.lb), w.fin.When(), w.req.When()); ok {
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
		logMS(en.ConnIdle), logMS(en.BackendTime), cause(en)))
	if w.fin != nil && w.fin.Delayed && !w.fin.Out.IsZero() {
		out = append(out, e.Entry(w.fin.Out, "device", "%s the held FIN reaches the LB, after the RST", label))
	}
	return out
}
