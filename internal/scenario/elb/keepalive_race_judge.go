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
// widened race with each kind of server, and the fix, judged.

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
	finsHeld, fins int // the server's FINs to the LB in the capture, and how many the device held
	crossed        int // failures whose request left before the server's FIN reached the LB
	before         int // ... of them reaching the server as it closed, before its FIN
	after          int // failures sent after the FIN had reached the LB
	afterHeld      int // ... although it was held longer than the aim offset
	rsts           int // failures answered by a RST from the server
	// Failures that show a full close (reset) and a lingering one
	// (lingered): showsKind.
	reset, lingered int
	fails           []failure // the failures seen on the wire
	fail            *failure  // one of them (crossing the FIN and showing its server's kind if any did), for timeline and ladder
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
	if showsKind(fullClose, f) {
		s.reset++
	}
	if showsKind(lingeringClose, f) {
		s.lingered++
	}
	s.fails = append(s.fails, f)
	if s.fail == nil || s.telling(f) > s.telling(*s.fail) {
		s.fail = &f
	}
}

// failureAfter picks the most telling failure whose connection starts after
// other's ended, so that the ladder draws them one after the other; if
// none did, the arm's most telling.
func (s *raceStats) failureAfter(other *failure) *failure {
	if other == nil {
		return s.fail
	}
	var best *failure
	for i := range s.fails {
		f := &s.fails[i]
		if f.wire.first.After(other.wire.last) && (best == nil || s.telling(*f) > s.telling(*best)) {
			best = f
		}
	}
	if best == nil || s.fail != nil && s.telling(*best) < s.telling(*s.fail) {
		return s.fail
	}
	return best
}

// showsKind reports whether failure f shows, on the wire and in the LB's
// error, what a server of kind does with a late request: a full close the
// server's RST and ECONNRESET at the LB, a lingering close an ACK, no RST,
// and EOF at the LB once the server's FIN arrived.
func showsKind(kind serverKind, f failure) bool {
	if kind == lingeringClose {
		return f.wire.lingered() && cause(f.entry) == "EOF"
	}
	return f.wire.rst != nil && cause(f.entry) == "RST"
}

// telling ranks a failure for the timeline and the ladder: one that
// crossed the server's FIN and shows the arm's kind of server first.
func (s *raceStats) telling(f failure) int {
	n := 0
	if f.wire.crossed {
		n += 2
	}
	if showsKind(s.arm.server, f) {
		n++
	}
	return n
}

// shown is how many failures show what the arm's kind of server does.
func (s *raceStats) shown() int {
	if s.arm.server == lingeringClose {
		return s.lingered
	}
	return s.reset
}

// kindText says what the arm's failures showed of the server's close.
func (s *raceStats) kindText() string {
	if s.arm.server == lingeringClose {
		return fmt.Sprintf("the server ACKed %d of them and sent no RST, and the LB read EOF when its FIN arrived (%d RSTs from the server)",
			s.lingered, s.rsts)
	}
	return fmt.Sprintf("%d drew the server's RST and the LB read ECONNRESET", s.reset)
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
		if s.arm.delay {
			fmt.Fprintf(&b, "; %s: %s", s.arm.server, s.kindText())
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
	table := report.Table{Columns: []string{"arm", "port", "server", "LB reuse", "LB idle timeout", "check before reuse",
		"server FIN", "requests", "aimed", "failed (504)", "rate", "from the backend", "max backend time of a failure"}}
	for _, s := range stats {
		v.Runs = append(v.Runs, s.run())
		table.Rows = append(table.Rows, s.row())
	}
	v.Results = &table
	r := raceRoles{blind: &stats[0], onTime: &stats[1], widened: &stats[2], past: &stats[3], low: &stats[4], fix: &stats[5],
		apache: &stats[6]}
	r.apache.fail = r.apache.failureAfter(r.widened.fail)
	for _, s := range []*raceStats{r.widened, r.apache, r.blind} {
		v.Timeline = append(v.Timeline, raceTimeline(e, s)...)
	}
	v.Ladder, v.Marks = r.ladder()

	// A VM under load freezes at times for longer than any window: the
	// requests the evidence shows mistimed are set apart; if they are half
	// or more, the run could not aim.
	for _, w := range []*raceStats{r.widened, r.apache} {
		if wn, _, _ := w.base(); wn >= 8 && w.mistimed()*2 >= wn {
			return scenario.Verdict{Outcome: report.Error, Runs: v.Runs, Results: v.Results, Timeline: v.Timeline, Ladder: v.Ladder,
				Marks: v.Marks, Reason: fmt.Sprintf("the machine was too loaded to aim: of %d aimed requests with the FIN held in front of %s, %s",
					wn, w.arm.server, w.stalls())}
		}
	}
	full, apache, fixHolds, numbers := r.widened.raceReproduced(), r.apache.raceReproduced(), r.fix.fixHolds(), r.numbers()
	switch {
	case full && apache && fixHolds:
		v.Outcome = report.Reproduced
		v.Reason = "keep-alive reuse race reproduced with both kinds of server: " + numbers
	case full && apache:
		v.Outcome = report.NotReproduced
		v.Reason = "the race reproduced but the fix did not hold (the LB's idle timeout below the server's still failed): " + numbers
	case !full:
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("the widened race in front of %s did not fail every time with its RST: %s", r.widened.arm.server, numbers)
	default:
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("the widened race in front of %s did not fail every time with an ACK, no RST and EOF at the LB: %s",
			r.apache.arm.server, numbers)
	}
	v.Notes = append(v.Notes,
		fmt.Sprintf("Shortened for the lab: both servers' keep-alive timeout is %v (akka-http's was 60 s, the same as the ELB's); "+
			"the timing relative to it is what matters.", serverIdle),
		"This LB answers 504 whatever it met, as the Classic ELB of the report did. nginx and HAProxy answer 502 to both kinds "+
			"of server; nginx logs the EOF as \"upstream prematurely closed connection\", HAProxy ends the session with SH-- "+
			"(docs/field-failures.md#third-party-stacks).")
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
	return []string{a.name, fmt.Sprint(a.port), a.server.String(), reuse, a.lbIdle.String(), fmt.Sprint(a.check),
		fin, fmt.Sprint(s.requests), fmt.Sprint(s.aimed), fmt.Sprint(s.failed), rate, causesText(s.causes), logMS(s.maxFail)}
}

// raceReproduced is the verdict on a widened race (the FIN held): it must
// fail every aimed request sent on time (90 % allows for what the
// evidence cannot tell apart), its requests crossing the held FIN and
// showing what the arm's kind of server does: from a full close the
// server's RST and ECONNRESET at the LB, from a lingering close an ACK, no
// RST, and EOF at the LB when the FIN arrives. (The backend time is
// reported, not judged: a stall of the machine inflates it.)
func (s *raceStats) raceReproduced() bool {
	n, f, _ := s.base()
	onTimeN, onTimeF := n-s.mistimed(), f-s.lateFails()
	most := func(k int) bool { return float64(k) >= 0.9*float64(onTimeF) }
	return onTimeN >= 5 && float64(onTimeF) >= 0.9*float64(onTimeN) && most(s.crossed) && most(s.shown())
}

// fixHolds is the verdict on the fix arm (the LB's idle timeout below the
// server's): no failure but those a stall of the machine explains, and
// those few.
func (s *raceStats) fixHolds() bool {
	return s.requests >= 5 && s.failed == s.stallFails && 2*s.stallFails < s.requests
}

// raceRoles are the arms' stats by what each shows.
type raceRoles struct{ blind, onTime, widened, past, low, fix, apache *raceStats }

// ladder lists one failing connection per kind of server, from the arms
// with the FIN held, and marks the packets that tell the kinds apart.
func (r raceRoles) ladder() ([]report.Conn, []report.Mark) {
	var conns []report.Conn
	var marks []report.Mark
	for _, s := range []*raceStats{r.widened, r.apache} {
		if s.fail == nil {
			continue
		}
		w := &s.fail.wire
		conns = append(conns, report.Conn{A: w.lb, B: w.server})
		marks = append(marks, w.marks(s.arm.server)...)
	}
	return conns, marks
}

// marks are the packets of a failed connection that show what its kind of
// server did with the late request.
func (w *wireClose) marks(kind serverKind) []report.Mark {
	var out []report.Mark
	add := func(p *report.Packet, note string) {
		if p != nil {
			out = append(out, p.Mark(note))
		}
	}
	add(w.req, fmt.Sprintf("%s: the late request", kind))
	if kind == lingeringClose {
		add(w.ack, "ACKed, no RST: read and discarded")
		add(w.fin, "FIN: the LB reads EOF when it arrives")
	} else {
		add(w.rst, "RST: ECONNRESET at the LB")
		add(w.fin, "FIN: arrives after the RST")
	}
	if w.lbRST != nil && w.req != nil && w.lbRST.When().After(w.req.When()) {
		add(w.lbRST, "the LB's RST: a FIN came after it had closed")
	}
	return out
}

// numbers is the verdict's evidence in one sentence: the widened race's
// failures with each kind of server, then every other arm's rate.
func (r raceRoles) numbers() string {
	numbers := fmt.Sprintf("aimed at the server's %v idle timeout +%v: %s; %s", serverIdle, aimIn, r.widened.widenedText(), r.apache.widenedText())
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

// widenedText is a widened arm's evidence: its failures, what they showed
// of the server's close, and the requests a stall mistimed.
func (s *raceStats) widenedText() string {
	n, f, _ := s.base()
	t := fmt.Sprintf("in front of %s, %s, %s failed with 504", s.arm.server, s.heldText(), share(f, n))
	if f > 0 {
		t += fmt.Sprintf(" (backend time median %s, at most %s; %d crossed the held FIN; %s)",
			logMS(median(s.times)), logMS(s.maxFail), s.crossed, s.kindText())
	}
	if st := s.stalls(); st != "" {
		t += fmt.Sprintf(", %s: %s of those sent on time failed", st, share(f-s.lateFails(), n-s.mistimed()))
	}
	return t
}

// heldText says how many of the server's FINs of the arm the device held.
func (s *raceStats) heldText() string {
	if s.finsHeld == 0 {
		return fmt.Sprintf("its FIN not held (none of %d FIN segments was)", s.fins)
	}
	return fmt.Sprintf("its FIN held %v (%d of %d FIN segments held by the device)", finDelay, s.finsHeld, s.fins)
}

// raceTimeline tells one failure of an aimed arm from the evidence:
// the server's close, its FIN, the request, the server's RST or ACK, the
// 504, the held FIN's arrival.
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
	switch {
	case w.rst != nil:
		out = append(out, e.Entry(w.rst.When(), "server", "%s RST: the socket is closed", label))
	case w.ack != nil:
		out = append(out, e.Entry(w.ack.When(), "server", "%s ACKs the request and sends no RST: a lingering close reads and discards it", label))
	}
	out = append(out, e.Entry(w.req.When().Add(time.Duration(en.BackendTime*float64(time.Millisecond))), "lb",
		"%s %s to the client after %s idle, backend time %s (%s from the backend)", label, en.Outcome,
		logMS(en.ConnIdle), logMS(en.BackendTime), cause(en)))
	if w.fin != nil && w.fin.Delayed && !w.fin.Out.IsZero() {
		after := "after the RST"
		if w.rst == nil {
			after = "the LB reads EOF"
		}
		out = append(out, e.Entry(w.fin.Out, "device", "%s the held FIN reaches the LB, %s", label, after))
	}
	return out
}
