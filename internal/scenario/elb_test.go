package scenario

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
)

// Judges of the ELB scenarios on evidence built by hand (newSynth):
// proxy access logs and the backend connections' packets.

var lbAddr = netip.MustParseAddr("198.18.0.3")

// proxyLine adds one proxy log line (an Entry or a PoolEvent) at d.
func (s *synth) proxyLine(t *testing.T, name string, d time.Duration, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	s.e.Logs[name] = append(s.e.Logs[name], LogEvent{At: s.at(d), Raw: raw})
}

// elbWireKind is how one synthetic reuse meets the server's close.
type elbWireKind int

const (
	elbServed     elbWireKind = iota // sent before the server's idle timeout, answered
	elbServedLate                    // sent after it, answered all the same: the server's timer was late
	elbCrossed                       // sent while the server's FIN is held: RST
	elbLate                          // sent after the FIN arrived: RST
	elbStalled                       // taken after 500 ms idle, on the wire after the FIN: a stall
)

// raceOpen lays out backend connection id of the LB on port opened at d
// and serving one request, and returns the LB's name and the ends.
func (s *synth) raceOpen(t *testing.T, port uint16, id uint64, d time.Duration) (name string, lb, srv netip.AddrPort) {
	name = fmt.Sprintf("lb-%d", port)
	lb, srv = netip.AddrPortFrom(lbAddr, 30000+uint16(id)), netip.AddrPortFrom(srvAddr, port)
	s.proxyLine(t, name, d, proxy.PoolEvent{Time: elbStamp(s.at(d)), Event: "open", BackendConn: id, Local: lb.String()})
	s.pkt(d, lb, srv, packet.ACK|packet.PSH, 1, 1, 90, nil)
	s.pkt(d+ms1, srv, lb, packet.ACK|packet.PSH, 1, 91, 1100, nil)
	s.proxyLine(t, name, d, proxy.Entry{Time: elbStamp(s.at(d)), BackendConn: id, Outcome: proxy.OutcomeOK, Status: 200})
	return name, lb, srv
}

// raceConn lays out backend connection id of an arm's LB at d: a served
// request, then a reuse 1 s later that kind describes, and logs both.
func (s *synth) raceConn(t *testing.T, port uint16, id uint64, d time.Duration, kind elbWireKind, aimed bool) {
	name, lb, srv := s.raceOpen(t, port, id, d)
	fin := d + 1001*ms1
	re := proxy.Entry{Time: elbStamp(s.at(d + 2*ms1)), BackendConn: id, ReuseCount: 1, ConnIdle: 1050, Aimed: aimed}
	switch kind {
	case elbServed, elbServedLate:
		s.pkt(fin-10*ms1, lb, srv, packet.ACK|packet.PSH, 91, 1101, 90, nil)
		re.Outcome, re.Status = proxy.OutcomeOK, 200
		if kind == elbServed {
			re.ConnIdle = 950
		}
	case elbCrossed, elbLate, elbStalled:
		hold := 200 * ms1
		if kind != elbCrossed {
			hold = 0
		}
		if kind == elbStalled {
			re.ConnIdle = 500
		}
		s.pkt(fin, srv, lb, packet.FIN|packet.ACK, 1101, 91, 0, func(p *report.Packet) {
			p.Out, p.Delayed = s.at(fin+hold+10*time.Microsecond), hold > 0
		})
		s.pkt(fin+50*ms1, lb, srv, packet.ACK|packet.PSH, 91, 1101, 90, nil)
		s.pkt(fin+50*ms1+50*time.Microsecond, srv, lb, packet.RST, 1101, 0, 0, nil)
		re.Outcome, re.Status, re.BackendTime = proxy.Outcome504, 504, 0.1
		re.Error = "reading the response: the backend reset the connection (RST): read: connection reset by peer"
	}
	s.proxyLine(t, name, d+2*ms1, re)
}

// raceDrop lays out a held connection the LB dropped at the aim point
// because the server's FIN, held 300 ms, was already in, and the aimed
// request served on a new connection.
func (s *synth) raceDrop(t *testing.T, port uint16, id uint64, d time.Duration) {
	name, lb, srv := s.raceOpen(t, port, id, d)
	fin := d + 1001*ms1
	s.pkt(fin, srv, lb, packet.FIN|packet.ACK, 1101, 91, 0, func(p *report.Packet) {
		p.Out, p.Delayed = s.at(fin+300*ms1), true
	})
	s.proxyLine(t, name, fin+400*ms1, proxy.PoolEvent{Time: elbStamp(s.at(fin + 400*ms1)), Event: "close", BackendConn: id,
		Reason: "check_before_reuse: closed by the backend (EOF)"})
	s.proxyLine(t, name, d+2*ms1, proxy.Entry{Time: elbStamp(s.at(d + 2*ms1)), BackendConn: id + 1000, Aimed: true,
		Outcome: proxy.OutcomeOK, Status: 200})
}

func elbStamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// raceEvidence fills every arm of elb-keepalive-race with n connections:
// the FIN-held arm's reuses of kind held, the LB-below arm served unless
// fixFails.
func raceEvidence(t *testing.T, n int, held elbWireKind, fixFails bool) *Evidence {
	return raceSynth(t, n, held, fixFails).e
}

// raceSynth is raceEvidence with its builder, for more connections.
func raceSynth(t *testing.T, n int, held elbWireKind, fixFails bool) *synth {
	s := newSynth(10 * time.Second)
	for i := range n {
		d := time.Duration(i) * 10 * ms1
		id := uint64(i + 1)
		s.raceConn(t, 8601, id, d, elbLate, true)
		s.raceConn(t, 8602, id, d, elbServed, true)
		s.raceConn(t, 8603, id, d, held, true)
		s.raceConn(t, 8604, id, d, elbServed, true)
		s.raceConn(t, 8605, id, d, elbServed, false)
		fix := elbServed
		if fixFails && i == 0 {
			fix = elbLate
		}
		s.raceConn(t, 8606, id, d, fix, false)
	}
	return s
}

func TestScenarioELBRaceJudge_HeldFINFailsEveryReuseAndTheFixHolds(t *testing.T) {
	v := judgeELBKeepAliveRace(raceEvidence(t, 10, elbCrossed, false))
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	for _, want := range []string{"10/10 (100 %) failed with 504", "10 crossed the held FIN", "below the server's 0/20"} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, v.Reason)
		}
	}
	if len(v.Runs) != len(elbRaceArms) || v.Runs[2].Outcome != report.Reproduced || v.Runs[5].Outcome != report.NotReproduced {
		t.Errorf("runs: %+v", v.Runs)
	}
	if len(v.Ladder) == 0 || len(v.Timeline) == 0 || v.Results == nil || len(v.Results.Rows) != len(elbRaceArms) {
		t.Errorf("ladder %v, %d timeline entries, results %v", v.Ladder, len(v.Timeline), v.Results)
	}
}

// A reuse after the FIN has arrived is not the widened race: the checking
// LB must have crossed the FIN in flight.
func TestScenarioELBRaceJudge_FailuresWithoutCrossingTheFINAreNotIt(t *testing.T) {
	v := judgeELBKeepAliveRace(raceEvidence(t, 10, elbLate, false))
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "0 crossed the held FIN") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	v = judgeELBKeepAliveRace(raceEvidence(t, 10, elbServed, false))
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "0/10 (0 %) failed") {
		t.Fatalf("served: outcome %s: %s", v.Outcome, v.Reason)
	}
}

func TestScenarioELBRaceJudge_AFailureWithTheLBBelowIsNotAReproduction(t *testing.T) {
	v := judgeELBKeepAliveRace(raceEvidence(t, 10, elbCrossed, true))
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "fix did not hold") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

// Aimed requests answered although sent past the server's idle timeout
// show the machine stalling: a few are counted apart, half or more make
// the run undecided.
func TestScenarioELBRaceJudge_StallsAreCountedApart(t *testing.T) {
	s := raceSynth(t, 10, elbCrossed, false)
	s.raceConn(t, 8603, 99, 5*time.Second, elbServedLate, true)
	s.raceDrop(t, 8603, 98, 6*time.Second)
	v := judgeELBKeepAliveRace(s.e)
	for _, want := range []string{"10/12 (83 %) failed", "2 mistimed by a stall", "1 reached the server before it closed",
		"1 found the held FIN already in", "10/10 (100 %) of those sent on time"} {
		if v.Outcome != report.Reproduced || !strings.Contains(v.Reason, want) {
			t.Fatalf("two stalls: outcome %s, want reproduced and %q: %s", v.Outcome, want, v.Reason)
		}
	}
	v = judgeELBKeepAliveRace(raceEvidence(t, 10, elbServedLate, false))
	if v.Outcome != report.Error || !strings.Contains(v.Reason, "too loaded") {
		t.Fatalf("all stalled: outcome %s: %s", v.Outcome, v.Reason)
	}
}

// In the LB-below arm, a failure on a connection taken well inside the
// server's timeout whose request reached the wire after the server's FIN
// was delayed by a stall: reported, not held against the fix.
func TestScenarioELBRaceJudge_AStalledRequestDoesNotBreakTheFix(t *testing.T) {
	s := raceSynth(t, 10, elbCrossed, false)
	s.raceConn(t, 8606, 99, 5*time.Second, elbStalled, false)
	v := judgeELBKeepAliveRace(s.e)
	if v.Outcome != report.Reproduced || !strings.Contains(v.Reason, "1/22 (5 %) (1 delayed past the server's timeout by a stall") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

func TestScenarioELBRaceJudge_AMissingLogIsAnError(t *testing.T) {
	e := raceEvidence(t, 3, elbCrossed, false)
	delete(e.Logs, "lb-8604")
	if v := judgeELBKeepAliveRace(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "lb-8604") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

// earlyEvidence: each arm's LB answers rounds POSTs early on a new
// connection; the buggy arm reuses it for the GET (504 if bugFails, else
// served), the correct arm closes it and serves the GET on another.
func earlyEvidence(t *testing.T, rounds int, bugFails bool) *Evidence {
	s := newSynth(5 * time.Second)
	for _, a := range elbEarlyArms {
		name := elbEarlyProcName(a)
		for i := range rounds {
			d := time.Duration(i) * 200 * ms1
			id := uint64(2*i + 1)
			lb, srv := netip.AddrPortFrom(lbAddr, 30000+uint16(id)), netip.AddrPortFrom(srvAddr, uint16(a.port))
			s.proxyLine(t, name, d, proxy.PoolEvent{Time: elbStamp(s.at(d)), Event: "open", BackendConn: id, Local: lb.String()})
			s.pkt(d, lb, srv, packet.ACK|packet.PSH, 1, 1, 4200, nil)
			s.pkt(d+ms1, srv, lb, packet.ACK|packet.PSH, 1, 4201, 150, nil)
			s.pkt(d+ms1, srv, lb, packet.FIN|packet.ACK, 151, 4201, 0, nil)
			s.pkt(d+50*ms1, lb, srv, packet.ACK|packet.PSH, 4201, 152, 4100, nil)
			s.pkt(d+50*ms1, srv, lb, packet.RST, 152, 0, 0, nil)
			s.proxyLine(t, name, d, proxy.Entry{Time: elbStamp(s.at(d)), Method: "POST", BackendConn: id, Outcome: proxy.OutcomeOK, Status: 401, Early: true})
			get := proxy.Entry{Time: elbStamp(s.at(d + 100*ms1)), Method: "GET", Path: "/", Outcome: proxy.OutcomeOK, Status: 200}
			if a.hop == "buggy" {
				get.BackendConn, get.ReuseCount = id, 1
				if bugFails {
					get.Outcome, get.Status, get.Error = proxy.Outcome504, 504, "sending the request: the backend had closed the connection (EPIPE): broken pipe"
				}
			} else {
				s.proxyLine(t, name, d+50*ms1, proxy.PoolEvent{Time: elbStamp(s.at(d + 50*ms1)), Event: "close", BackendConn: id, Reason: "not reusable"})
				get.BackendConn = id + 1
			}
			s.proxyLine(t, name, d+100*ms1, get)
			s.e.Clients = append(s.e.Clients, ClientResult{Name: fmt.Sprintf("client :%d GET #%d", a.port, i+1), Arm: a.name, Status: get.Status})
		}
	}
	return s.e
}

func TestScenarioELBEarlyJudge_ReuseAfterEarlyAnswerFailsOnlyWithTheBug(t *testing.T) {
	v := judgeELBEarlyResponse(earlyEvidence(t, 6, true))
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	for _, want := range []string{"6 of 6 connections", "6 EPIPE", "0 of 6 such connections were reused (the LB closed 6)"} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, v.Reason)
		}
	}
	v = judgeELBEarlyResponse(earlyEvidence(t, 6, false))
	if v.Outcome != report.NotReproduced {
		t.Fatalf("no failure: outcome %s: %s", v.Outcome, v.Reason)
	}
}

func TestScenarioELBEarlyJudge_NoEarlyAnswerIsAnError(t *testing.T) {
	e := earlyEvidence(t, 3, true)
	for _, evs := range e.Logs {
		for _, ev := range evs {
			delete(ev.Raw, "early_response")
		}
	}
	if v := judgeELBEarlyResponse(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "answered early") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}
