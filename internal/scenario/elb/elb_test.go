package elb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
)

// Judges of the ELB scenarios on evidence built by hand (scenariotest):
// proxy access logs and the backend connections' packets.

// synth is the evidence of an ELB run under construction.
type synth struct{ *scenariotest.Synth }

const ms1 = time.Millisecond

// reuseKind is how one synthetic reuse meets the server's close.
type reuseKind int

const (
	reuseServed     reuseKind = iota // sent before the server's idle timeout, answered
	reuseServedLate                  // sent after it, answered all the same: the server's timer was late
	reuseCrossed                     // sent while the server's FIN is held: RST
	reuseLate                        // sent after the FIN arrived: RST
	reuseStalled                     // taken after 500 ms idle, on the wire after the FIN: a stall
	reuseLingered                    // sent while the server's FIN is held: ACKed, no RST, EOF when the FIN arrives
)

// raceOpen lays out backend connection id of the LB on port opened at d
// and serving one request, and returns the LB's name and the ends.
func (s synth) raceOpen(t *testing.T, port uint16, id uint64, d time.Duration) (name string, lb, srv netip.AddrPort) {
	name = fmt.Sprintf("lb-%d", port)
	lb, srv = netip.AddrPortFrom(scenariotest.LB, 30000+uint16(id)), netip.AddrPortFrom(scenariotest.Server, port)
	s.ProxyLine(t, name, d, proxy.PoolEvent{Time: scenariotest.Stamp(s.At(d)), Event: "open", BackendConn: id, Local: lb.String()})
	s.Packet(d, lb, srv, packet.ACK|packet.PSH, 1, 1, 90, nil)
	s.Packet(d+ms1, srv, lb, packet.ACK|packet.PSH, 1, 91, 1100, nil)
	s.ProxyLine(t, name, d, proxy.Entry{Time: scenariotest.Stamp(s.At(d)), BackendConn: id, Outcome: proxy.OutcomeOK, Status: 200})
	return name, lb, srv
}

// raceConn lays out backend connection id of an arm's LB at d: a served
// request, then a reuse 1 s later that kind describes, and logs both.
func (s synth) raceConn(t *testing.T, port uint16, id uint64, d time.Duration, kind reuseKind, aimed bool) {
	name, lb, srv := s.raceOpen(t, port, id, d)
	fin := d + 1001*ms1
	re := proxy.Entry{Time: scenariotest.Stamp(s.At(d + 2*ms1)), BackendConn: id, ReuseCount: 1, ConnIdle: 1050, Aimed: aimed}
	switch kind {
	case reuseServed, reuseServedLate:
		s.Packet(fin-10*ms1, lb, srv, packet.ACK|packet.PSH, 91, 1101, 90, nil)
		re.Outcome, re.Status = proxy.OutcomeOK, 200
		if kind == reuseServed {
			re.ConnIdle = 950
		}
	case reuseLingered:
		// Apache's lingering close: the request ACKed (delayed ACK), no
		// RST; the LB reads EOF when the held FIN arrives.
		s.Packet(fin, srv, lb, packet.FIN|packet.ACK, 1101, 91, 0, func(p *report.Packet) {
			p.Out, p.Delayed = s.At(fin+200*ms1), true
		})
		s.Packet(fin+50*ms1, lb, srv, packet.ACK|packet.PSH, 91, 1101, 90, nil)
		s.Packet(fin+90*ms1, srv, lb, packet.ACK, 1102, 181, 0, nil)
		s.Packet(fin+200*ms1+50*time.Microsecond, lb, srv, packet.FIN|packet.ACK, 181, 1102, 0, nil)
		re.Outcome, re.Status, re.BackendTime = proxy.Outcome504, 504, 150
		re.Error = "reading the response: the backend had closed the connection (EOF before any response byte): EOF"
	case reuseCrossed, reuseLate, reuseStalled:
		hold := 200 * ms1
		if kind != reuseCrossed {
			hold = 0
		}
		if kind == reuseStalled {
			re.ConnIdle = 500
		}
		s.Packet(fin, srv, lb, packet.FIN|packet.ACK, 1101, 91, 0, func(p *report.Packet) {
			p.Out, p.Delayed = s.At(fin+hold+10*time.Microsecond), hold > 0
		})
		s.Packet(fin+50*ms1, lb, srv, packet.ACK|packet.PSH, 91, 1101, 90, nil)
		s.Packet(fin+50*ms1+50*time.Microsecond, srv, lb, packet.RST, 1101, 0, 0, nil)
		re.Outcome, re.Status, re.BackendTime = proxy.Outcome504, 504, 0.1
		re.Error = "reading the response: the backend reset the connection (RST): read: connection reset by peer"
	}
	s.ProxyLine(t, name, d+2*ms1, re)
}

// raceDrop lays out a held connection the LB dropped at the aim point
// because the server's FIN, held 300 ms, was already in, and the aimed
// request served on a new connection.
func (s synth) raceDrop(t *testing.T, port uint16, id uint64, d time.Duration) {
	name, lb, srv := s.raceOpen(t, port, id, d)
	fin := d + 1001*ms1
	s.Packet(fin, srv, lb, packet.FIN|packet.ACK, 1101, 91, 0, func(p *report.Packet) {
		p.Out, p.Delayed = s.At(fin+300*ms1), true
	})
	s.ProxyLine(t, name, fin+400*ms1, proxy.PoolEvent{Time: scenariotest.Stamp(s.At(fin + 400*ms1)), Event: "close", BackendConn: id,
		Reason: "check_before_reuse: closed by the backend (EOF)"})
	s.ProxyLine(t, name, d+2*ms1, proxy.Entry{Time: scenariotest.Stamp(s.At(d + 2*ms1)), BackendConn: id + 1000, Aimed: true,
		Outcome: proxy.OutcomeOK, Status: 200})
}

// raceEvidence fills every arm of elb-keepalive-race with n connections:
// the FIN-held arm's reuses of kind held, the LB-below arm served unless
// fixFails, the Apache arm's reuses lingered.
func raceEvidence(t *testing.T, n int, held reuseKind, fixFails bool) *scenario.Evidence {
	return raceSynth(t, n, held, reuseLingered, fixFails).Evidence
}

// raceSynth is raceEvidence with its builder, for more connections, and
// the Apache arm's reuses of kind apache.
func raceSynth(t *testing.T, n int, held, apache reuseKind, fixFails bool) synth {
	s := synth{scenariotest.New(10 * time.Second)}
	for i := range n {
		// 2 s apart: one connection ends before the next begins.
		d := time.Duration(i) * 2 * time.Second
		id := uint64(i + 1)
		s.raceConn(t, 8601, id, d, reuseLate, true)
		s.raceConn(t, 8602, id, d, reuseServed, true)
		s.raceConn(t, 8603, id, d, held, true)
		s.raceConn(t, 8604, id, d, reuseServed, true)
		s.raceConn(t, 8605, id, d, reuseServed, false)
		fix := reuseServed
		if fixFails && i == 0 {
			fix = reuseLate
		}
		s.raceConn(t, 8606, id, d, fix, false)
		s.raceConn(t, apachePort, id, d, apache, true)
	}
	return s
}

func TestKeepAliveRaceJudge_HeldFINFailsEveryReuseAndTheFixHolds(t *testing.T) {
	v := judgeRace(raceEvidence(t, 10, reuseCrossed, false))
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	for _, want := range []string{"10/10 (100 %) failed with 504", "10 crossed the held FIN", "below the server's 0/20"} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, v.Reason)
		}
	}
	if len(v.Runs) != len(raceArms) || v.Runs[2].Outcome != report.Reproduced || v.Runs[5].Outcome != report.NotReproduced {
		t.Errorf("runs: %+v", v.Runs)
	}
	if len(v.Ladder) == 0 || len(v.Timeline) == 0 || v.Results == nil || len(v.Results.Rows) != len(raceArms) {
		t.Errorf("ladder %v, %d timeline entries, results %v", v.Ladder, len(v.Timeline), v.Results)
	}
}

// A reuse after the FIN has arrived is not the widened race: the checking
// LB must have crossed the FIN in flight.
func TestKeepAliveRaceJudge_FailuresWithoutCrossingTheFINAreNotIt(t *testing.T) {
	v := judgeRace(raceEvidence(t, 10, reuseLate, false))
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "0 crossed the held FIN") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	v = judgeRace(raceEvidence(t, 10, reuseServed, false))
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "0/10 (0 %) failed") {
		t.Fatalf("served: outcome %s: %s", v.Outcome, v.Reason)
	}
}

func TestKeepAliveRaceJudge_AFailureWithTheLBBelowIsNotAReproduction(t *testing.T) {
	v := judgeRace(raceEvidence(t, 10, reuseCrossed, true))
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "fix did not hold") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

// Aimed requests answered although sent past the server's idle timeout
// show the machine stalling: a few are counted apart, half or more make
// the run undecided.
func TestKeepAliveRaceJudge_StallsAreCountedApart(t *testing.T) {
	s := raceSynth(t, 10, reuseCrossed, reuseLingered, false)
	s.raceConn(t, 8603, 99, 5*time.Second, reuseServedLate, true)
	s.raceDrop(t, 8603, 98, 6*time.Second)
	v := judgeRace(s.Evidence)
	for _, want := range []string{"10/12 (83 %) failed", "2 mistimed by a stall", "1 reached the server before it closed",
		"1 found the held FIN already in", "10/10 (100 %) of those sent on time"} {
		if v.Outcome != report.Reproduced || !strings.Contains(v.Reason, want) {
			t.Fatalf("two stalls: outcome %s, want reproduced and %q: %s", v.Outcome, want, v.Reason)
		}
	}
	v = judgeRace(raceEvidence(t, 10, reuseServedLate, false))
	if v.Outcome != report.Error || !strings.Contains(v.Reason, "too loaded") {
		t.Fatalf("all stalled: outcome %s: %s", v.Outcome, v.Reason)
	}
	v = judgeRace(raceSynth(t, 10, reuseCrossed, reuseServedLate, false).Evidence)
	if v.Outcome != report.Error || !strings.Contains(v.Reason, "too loaded to aim: of 10 aimed requests with the FIN held in front of Apache") {
		t.Fatalf("Apache's all stalled: outcome %s: %s", v.Outcome, v.Reason)
	}
}

// In the LB-below arm, a failure on a connection taken well inside the
// server's timeout whose request reached the wire after the server's FIN
// was delayed by a stall: reported, not held against the fix.
func TestKeepAliveRaceJudge_AStalledRequestDoesNotBreakTheFix(t *testing.T) {
	s := raceSynth(t, 10, reuseCrossed, reuseLingered, false)
	s.raceConn(t, 8606, 99, 5*time.Second, reuseStalled, false)
	v := judgeRace(s.Evidence)
	if v.Outcome != report.Reproduced || !strings.Contains(v.Reason, "1/22 (5 %) (1 delayed past the server's timeout by a stall") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

// Each kind of server answers the request that crosses its held FIN its
// own way: faultbox serve (a full close) with a RST, ECONNRESET at the
// LB; Apache (a lingering close) with an ACK and no RST, EOF at the LB
// when the FIN arrives. The verdict, its table, its timeline and the
// ladder show both, one connection of each, one after the other.
func TestKeepAliveRaceJudge_EachKindOfServerAnswersItsOwnWay(t *testing.T) {
	v := judgeRace(raceEvidence(t, 10, reuseCrossed, false))
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	for _, want := range []string{
		"in front of faultbox serve (full close), its FIN held 300ms (10 of 10 FIN segments held by the device), 10/10 (100 %) failed with 504",
		"10 drew the server's RST and the LB read ECONNRESET",
		"in front of Apache 2.4 (lingering close), its FIN held 300ms (10 of 10 FIN segments held by the device), 10/10 (100 %) failed with 504 (backend time median 150 ms",
		"the server ACKed 10 of them and sent no RST, and the LB read EOF when its FIN arrived (0 RSTs from the server)",
	} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, v.Reason)
		}
	}
	if run := v.Runs[6]; run.Outcome != report.Reproduced || !strings.Contains(run.Reason, "10 EOF from the backend") {
		t.Errorf("Apache's run: %+v", run)
	}
	if row := v.Results.Rows[6]; row[1] != "8607" || row[2] != "Apache 2.4 (lingering close)" || row[11] != "10 EOF" {
		t.Errorf("Apache's row: %q", row)
	}
	if row := v.Results.Rows[2]; row[2] != "faultbox serve (full close)" || row[11] != "10 RST" {
		t.Errorf("faultbox serve's row: %q", row)
	}
	for _, want := range []string{"[:8603] RST: the socket is closed", "[:8603] the held FIN reaches the LB, after the RST",
		"[:8607] ACKs the request and sends no RST", "[:8607] the held FIN reaches the LB, the LB reads EOF"} {
		if !slices.ContainsFunc(v.Timeline, func(e report.Entry) bool { return strings.HasPrefix(e.Text, want) }) {
			t.Errorf("timeline lacks %q", want)
		}
	}

	if len(v.Ladder) != 2 || v.Ladder[0].B.Port() != 8603 || v.Ladder[1].B.Port() != apachePort {
		t.Fatalf("ladder %v, want one connection to 8603 and one to %d", v.Ladder, apachePort)
	}
	e := raceEvidence(t, 10, reuseCrossed, false)
	full, apache := e.Packets(v.Ladder[0].A, v.Ladder[0].B), e.Packets(v.Ladder[1].A, v.Ladder[1].B)
	if !apache[0].When().After(full[len(full)-1].When()) {
		t.Errorf("the ladder's connections overlap: the Apache one starts at %v, before the other ends at %v",
			apache[0].When(), full[len(full)-1].When())
	}
	marks := map[string]report.Mark{}
	for _, m := range v.Marks {
		marks[m.Note] = m
	}
	for note, from := range map[string]uint16{
		"faultbox serve (full close): the late request": 0, "RST: ECONNRESET at the LB": 8603, "FIN: arrives after the RST": 8603,
		"Apache 2.4 (lingering close): the late request": 0, "ACKed, no RST: read and discarded": apachePort,
		"FIN: the LB reads EOF when it arrives": apachePort,
	} {
		m, ok := marks[note]
		if !ok || m.Src.Port() != from && from != 0 || from == 0 && m.Src.Addr() != scenariotest.LB {
			t.Errorf("mark %q: %+v (found %v), want from port %d", note, m, ok, from)
		}
	}
}

// A server that resets the late request does not show a lingering close,
// and one that ACKs it without a RST does not show a full close: each
// arm's verdict rests on its own server's answer.
func TestKeepAliveRaceJudge_AServerAnsweringTheOtherWayIsNotIt(t *testing.T) {
	v := judgeRace(raceSynth(t, 10, reuseCrossed, reuseCrossed, false).Evidence)
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "in front of Apache 2.4 (lingering close) did not fail every time with an ACK, no RST and EOF") ||
		!strings.Contains(v.Reason, "the server ACKed 0 of them and sent no RST, and the LB read EOF when its FIN arrived (10 RSTs from the server)") {
		t.Errorf("Apache resetting: outcome %s: %s", v.Outcome, v.Reason)
	}
	v = judgeRace(raceSynth(t, 10, reuseLingered, reuseLingered, false).Evidence)
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "in front of faultbox serve (full close) did not fail every time with its RST") ||
		!strings.Contains(v.Reason, "0 drew the server's RST") {
		t.Errorf("faultbox serve lingering: outcome %s: %s", v.Outcome, v.Reason)
	}
	// Apache's requests served: the race did not happen there.
	v = judgeRace(raceSynth(t, 10, reuseCrossed, reuseServed, false).Evidence)
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "(lingering close), its FIN not held (none of 0 FIN segments was), 0/10 (0 %) failed") {
		t.Errorf("Apache served: outcome %s: %s", v.Outcome, v.Reason)
	}
}

func TestKeepAliveRaceJudge_AMissingLogIsAnError(t *testing.T) {
	e := raceEvidence(t, 3, reuseCrossed, false)
	delete(e.Logs, "lb-8604")
	if v := judgeRace(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "lb-8604") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

// earlyEvidence: each arm's LB answers rounds POSTs early on a new
// connection; the buggy arm reuses it for the GET (504 if bugFails, else
// served), the correct arm closes it and serves the GET on another.
func earlyEvidence(t *testing.T, rounds int, bugFails bool) *scenario.Evidence {
	s := synth{scenariotest.New(5 * time.Second)}
	for _, a := range earlyArms {
		name := earlyProcName(a)
		for i := range rounds {
			d := time.Duration(i) * 200 * ms1
			id := uint64(2*i + 1)
			lb, srv := netip.AddrPortFrom(scenariotest.LB, 30000+uint16(id)), netip.AddrPortFrom(scenariotest.Server, uint16(a.port))
			s.ProxyLine(t, name, d, proxy.PoolEvent{Time: scenariotest.Stamp(s.At(d)), Event: "open", BackendConn: id, Local: lb.String()})
			s.Packet(d, lb, srv, packet.ACK|packet.PSH, 1, 1, 4200, nil)
			s.Packet(d+ms1, srv, lb, packet.ACK|packet.PSH, 1, 4201, 150, nil)
			s.Packet(d+ms1, srv, lb, packet.FIN|packet.ACK, 151, 4201, 0, nil)
			s.Packet(d+50*ms1, lb, srv, packet.ACK|packet.PSH, 4201, 152, 4100, nil)
			s.Packet(d+50*ms1, srv, lb, packet.RST, 152, 0, 0, nil)
			s.ProxyLine(t, name, d, proxy.Entry{Time: scenariotest.Stamp(s.At(d)), Method: "POST", BackendConn: id, Outcome: proxy.OutcomeOK, Status: 401, Early: true})
			get := proxy.Entry{Time: scenariotest.Stamp(s.At(d + 100*ms1)), Method: "GET", Path: "/", Outcome: proxy.OutcomeOK, Status: 200}
			if a.hop == "buggy" {
				get.BackendConn, get.ReuseCount = id, 1
				if bugFails {
					get.Outcome, get.Status, get.Error = proxy.Outcome504, 504, "sending the request: the backend had closed the connection (EPIPE): broken pipe"
				}
			} else {
				s.ProxyLine(t, name, d+50*ms1, proxy.PoolEvent{Time: scenariotest.Stamp(s.At(d + 50*ms1)), Event: "close", BackendConn: id, Reason: "not reusable"})
				get.BackendConn = id + 1
			}
			s.ProxyLine(t, name, d+100*ms1, get)
			s.Evidence.Clients = append(s.Evidence.Clients, scenario.ClientResult{Name: fmt.Sprintf("client :%d GET #%d", a.port, i+1), Arm: a.name, Status: get.Status})
		}
	}
	return s.Evidence
}

func TestEarlyResponseJudge_ReuseAfterEarlyAnswerFailsOnlyWithTheBug(t *testing.T) {
	v := judgeEarly(earlyEvidence(t, 6, true))
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	for _, want := range []string{"6 of 6 connections", "6 EPIPE", "0 of 6 such connections were reused (the LB closed 6)"} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, v.Reason)
		}
	}
	v = judgeEarly(earlyEvidence(t, 6, false))
	if v.Outcome != report.NotReproduced {
		t.Fatalf("no failure: outcome %s: %s", v.Outcome, v.Reason)
	}
}

func TestEarlyResponseJudge_NoEarlyAnswerIsAnError(t *testing.T) {
	e := earlyEvidence(t, 3, true)
	for _, evs := range e.Logs {
		for _, ev := range evs {
			delete(ev.Raw, "early_response")
		}
	}
	if v := judgeEarly(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "answered early") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}
