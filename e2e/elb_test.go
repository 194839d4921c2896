package e2e

// The Classic ELB reproductions of issue 5 (FIELD-FAILURES.md §3) end to
// end: `faultbox scenario run elb-keepalive-race` and `elb-early-response`
// through the CLI (exit status and verdict.json), then direct checks on the
// access logs of the `faultbox proxy` instances the runs left in their
// report directories. Each scenario runs its arms side by side in one lab,
// one port per arm:
//
//	elb-keepalive-race  8601 aimed, blind LB       8602 aimed, checking LB
//	                    8603 ... FIN held           8604 aimed past the window
//	                    8605 unaimed, low rate      8606 LB idle timeout below the server's
//	elb-early-response  8611 hop_by_hop: buggy      8612 hop_by_hop: correct

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// elbLine is one request line of a `faultbox proxy` access log.
type elbLine struct {
	Event       string  `json:"event"` // pool events only
	Method      string  `json:"method"`
	BackendConn uint64  `json:"backend_conn"`
	ConnIdle    float64 `json:"conn_idle"`
	ReuseCount  int     `json:"reuse_count"`
	Outcome     string  `json:"outcome"`
	Status      int     `json:"status"`
	BackendTime float64 `json:"backend_time"`
	Aimed       bool    `json:"aimed"`
	Early       bool    `json:"early_response"`
	Error       string  `json:"error"`
}

// accessLog reads the request lines of a proxy's access log in a report.
func accessLog(t *testing.T, dir string, port int) []elbLine {
	t.Helper()
	path := filepath.Join(dir, "lb-"+strconv.Itoa(port)+".jsonl")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("access log: %v", err)
	}
	defer f.Close()
	var out []elbLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l elbLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %q: %v", path, sc.Text(), err)
		}
		if l.Event == "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no request logged", path)
	}
	return out
}

// elbTally counts requests selected by keep, those the LB answered 504,
// and their median backend time (ms).
func elbTally(ls []elbLine, keep func(elbLine) bool) (n, n504 int, median float64) {
	var times []float64
	for _, l := range ls {
		if !keep(l) {
			continue
		}
		n++
		if l.Outcome == "504" {
			n504++
			times = append(times, l.BackendTime)
		}
	}
	if len(times) > 0 {
		sort.Float64s(times)
		median = times[len(times)/2]
	}
	return n, n504, median
}

func aimed(l elbLine) bool { return l.Aimed }
func anyReq(elbLine) bool  { return true }
func pct(n, d int) float64 { return 100 * float64(n) / float64(max(d, 1)) }

// TestELB_KeepAliveRace: against `faultbox serve --keepalive-timeout 1s`,
// the elb proxy aiming its reuse just past the server's idle timeout gets
// 504s for >= 90 % of the aimed requests; an LB that notices a FIN that has
// arrived fails only when the server's FIN is held on the wire, then every
// time, with near-zero backend time; unaimed MRU traffic at a low rate
// fails at a rate that is reported; with the LB's idle timeout below the
// server's nothing fails.
func TestELB_KeepAliveRace(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "elb-keepalive-race")

		// Issue 5: >= 90 % of the aimed requests get 504. This machine
		// (a VM under load) was seen to freeze 0.6 s at a time: an aimed
		// request answered although sent past the server's 1 s idle
		// timeout shows the server's timer firing late, and one that went
		// on a new connection shows the LB finding the FIN already in
		// (it checked late: the FIN was held). Such requests are counted
		// apart; they may be fewer than half.
		serverLate := func(l elbLine) bool {
			return l.Aimed && l.Outcome == "ok" && l.ReuseCount > 0 && l.ConnIdle >= 1000
		}
		blind := accessLog(t, r.Dir, 8601)
		n, f, med := elbTally(blind, aimed)
		late, _, _ := elbTally(blind, serverLate)
		t.Logf("run %d: aimed, blind LB: %d/%d aimed requests got 504 (%.0f %%), %d answered past the server's timeout, median backend time %.2f ms",
			i, f, n, pct(f, n), late, med)
		if n < 10 || late*2 >= n || float64(f) < 0.9*float64(n-late) {
			t.Errorf("run %d: aimed at the idle timeout: %d/%d aimed requests got 504, %d answered late; want >= 10 aimed, >= 90 %% of the rest 504", i, f, n, late)
		}

		// The verdict checked the widened race against the capture; here
		// the access log: 504s after the server's RST (their backend time,
		// near zero on a quiet machine, is logged).
		held := accessLog(t, r.Dir, 8603)
		n, f, med = elbTally(held, aimed)
		late, _, _ = elbTally(held, serverLate)
		lbLate, _, _ := elbTally(held, func(l elbLine) bool { return l.Aimed && l.Outcome == "ok" && l.ReuseCount == 0 })
		t.Logf("run %d: aimed, checking LB, server FIN held: %d/%d got 504 (%.0f %%), %d answered late, %d sent on a new connection, median backend time %.2f ms",
			i, f, n, pct(f, n), late, lbLate, med)
		rst, _, _ := elbTally(held, func(l elbLine) bool { return l.Aimed && l.Outcome == "504" && strings.Contains(l.Error, "RST") })
		if rest := n - late - lbLate; n < 10 || 2*rest <= n || float64(f) < 0.9*float64(rest) || float64(rst) < 0.9*float64(f) {
			t.Errorf("run %d: FIN held: %d/%d aimed requests got 504 (%d after a RST; %d, %d mistimed); want >= 90 %% of the rest, by RST",
				i, f, n, rst, late, lbLate)
		}
		checked := accessLog(t, r.Dir, 8602)
		n, f, _ = elbTally(checked, aimed)
		t.Logf("run %d: aimed, checking LB, FIN on time: %d/%d got 504 (%.0f %%)", i, f, n, pct(f, n))

		low := accessLog(t, r.Dir, 8605)
		n, f, _ = elbTally(low, anyReq)
		nLate, fLate, _ := elbTally(low, func(l elbLine) bool { return l.ReuseCount > 0 && l.ConnIdle >= 1000 })
		t.Logf("run %d: unaimed, MRU, low rate: 504 rate %d/%d (%.0f %%); reused after >= 1 s idle: %d/%d failed", i, f, n, pct(f, n), fLate, nLate)

		// The fix: the LB never reuses a connection idle for as long as
		// its own 0.7 s idle timeout, so never one the server (1 s) has
		// closed. The verdict judged its failures against the capture: a
		// request delayed on the wire past the server's timeout by a
		// stall of the machine is not the LB's doing.
		fix := accessLog(t, r.Dir, 8606)
		n, f, _ = elbTally(fix, anyReq)
		t.Logf("run %d: LB idle timeout 0.7 s below the server's 1 s: %d/%d failed", i, f, n)
		if n < 10 {
			t.Errorf("run %d: LB idle timeout below the server's: only %d requests", i, n)
		}
		for _, l := range fix {
			if l.ReuseCount > 0 && l.ConnIdle >= 700 {
				t.Errorf("run %d: LB idle timeout 0.7 s: a connection was reused after %.0f ms idle: %+v", i, l.ConnIdle, l)
			}
		}
		if out, reason := runNamed(r, "LB idle timeout below the server's"); out != "not reproduced" {
			t.Errorf("run %d: the fix arm: %q: %s", i, out, reason)
		}
		if !timelineHas(r, "which is still on its way") || !timelineHas(r, "the held FIN reaches the LB, after the RST") {
			t.Errorf("run %d: the timeline does not show a request crossing the held FIN and the RST overtaking it", i)
		}
	}
}

// wireStep matches the scenario's capture summary per port.
var wireStep = regexp.MustCompile(`capture \[:(\d+)\]: (\d+) of (\d+) requests from the LB to the server carried Connection: keep-alive; (\d+) of (\d+) early 401 answers carried Connection: close`)

// TestELB_EarlyResponse: a server that answers a chunked POST before
// reading its body and closes without Connection: close, behind an LB that
// forwards Connection: keep-alive and reuses the connection: the next
// request gets 504; with the header not forwarded (hop_by_hop: correct),
// no 504.
func TestELB_EarlyResponse(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "elb-early-response")

		bug := accessLog(t, r.Dir, 8611)
		early := map[uint64]bool{}
		var nEarly, reused, failed int
		for _, l := range bug {
			if early[l.BackendConn] {
				reused++
				if l.Outcome == "504" {
					failed++
				}
			}
			if l.Early && l.Status == 401 && !early[l.BackendConn] {
				early[l.BackendConn] = true
				nEarly++
			}
		}
		t.Logf("run %d: forwarded: %d early answers; %d later requests on those connections, %d got 504", i, nEarly, reused, failed)
		if nEarly < 5 || failed < nEarly {
			t.Errorf("run %d: Connection: keep-alive forwarded: %d early answers, %d requests failed on those connections; want every one (>= 5)", i, nEarly, failed)
		}

		fix := accessLog(t, r.Dir, 8612)
		var fixEarly, fix504 int
		for _, l := range fix {
			if l.Early {
				fixEarly++
			}
			if l.Outcome != "ok" {
				fix504++
			}
		}
		t.Logf("run %d: not forwarded: %d early answers, %d failures", i, fixEarly, fix504)
		if fixEarly < 5 || fix504 != 0 {
			t.Errorf("run %d: Connection not forwarded: %d early answers, %d failures; want >= 5 and 0", i, fixEarly, fix504)
		}

		seen := map[string][]string{}
		for _, e := range r.Verdict.Timeline {
			if m := wireStep.FindStringSubmatch(e.Text); m != nil {
				seen[m[1]] = m
			}
		}
		if m := seen["8611"]; m == nil || m[2] != m[3] || m[3] == "0" || m[4] != "0" {
			t.Errorf("run %d: capture on 8611: %v; want every request with Connection: keep-alive and no Connection: close", i, m)
		}
		if m := seen["8612"]; m == nil || m[2] != "0" || m[3] == "0" {
			t.Errorf("run %d: capture on 8612: %v; want no request with Connection: keep-alive", i, m)
		}
	}
}

// TestELB_FaultOffSaysNotReproduced: without the fault (the device's FIN
// hold off; the LB not forwarding Connection), neither reproduces.
func TestELB_FaultOffSaysNotReproduced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		port int
	}{{"elb-keepalive-race", 8603}, {"elb-early-response", 8611}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for i := range repeat(t) {
				r := runScenario(t, tc.name, "--fault=false")
				if r.Code != 1 || r.Verdict.Outcome != "not reproduced" || r.Verdict.Pass {
					t.Errorf("run %d: --fault=false: exit %d, outcome %q, pass %v; want 1, not reproduced, false: %s",
						i, r.Code, r.Verdict.Outcome, r.Verdict.Pass, r.Verdict.Reason)
				}
				n, f, _ := elbTally(accessLog(t, r.Dir, tc.port), anyReq)
				t.Logf("run %d: fault off: port %d: %d/%d requests got 504", i, tc.port, f, n)
			}
		})
	}
}
