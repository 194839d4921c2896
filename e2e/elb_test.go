package e2e

// The Classic ELB reproductions of issue 5
// (docs/field-failures.md#elb-keepalive-race and #elb-early-response) end to
// end: `faultbox scenario run elb-keepalive-race` and `elb-early-response`
// through the CLI (exit status and verdict.json), then direct checks on the
// access logs of the `faultbox proxy` instances the runs left in their
// report directories, and on their captures. Each scenario runs its arms
// side by side in one lab, one port per arm:
//
//	elb-keepalive-race  8601 aimed, blind LB       8602 aimed, checking LB
//	                    8603 ... FIN held           8604 aimed past the window
//	                    8605 unaimed, low rate      8606 LB idle timeout below the server's
//	                    8607 as 8603, in front of Apache instead of faultbox serve
//	elb-early-response  8611 hop_by_hop: buggy      8612 hop_by_hop: correct

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
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
	var out []elbLine
	for _, l := range jsonLines[elbLine](t, path) {
		if l.Event == "" {
			out = append(out, l)
		}
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

// serverLate: an aimed request answered although sent past the server's
// 1 s idle timeout shows the server's timer firing late (a stall of the
// machine).
func serverLate(l elbLine) bool {
	return l.Aimed && l.Outcome == "ok" && l.ReuseCount > 0 && l.ConnIdle >= 1000
}

// onNewConn: an aimed request the LB sent on a new connection, answered:
// it dropped the pooled one it had held, whose FIN had arrived.
func onNewConn(l elbLine) bool { return l.Aimed && l.Outcome == "ok" && l.ReuseCount == 0 }

// wantFINNoticed checks an aimed arm of an LB that checks before reuse,
// whose server FIN reaches the LB before the aim point (not held, or held
// less than the aim offset): by design the LB finds the FIN in, drops the
// pooled connection and sends the request on a new one, answered. The
// requests the server's late timer answered are set apart, as on the
// other aimed arms; >= 90 % of the rest must go on a new connection.
func wantFINNoticed(t *testing.T, i int, what string, ls []elbLine) {
	t.Helper()
	n, f, _ := elbTally(ls, aimed)
	late, _, _ := elbTally(ls, serverLate)
	fresh, _, _ := elbTally(ls, onNewConn)
	t.Logf("run %d: %s: %d/%d aimed requests got 504 (%.0f %%), %d went on a new connection, %d answered past the server's timeout",
		i, what, f, n, pct(f, n), fresh, late)
	if n < 10 || 2*late >= n || float64(fresh) < 0.9*float64(n-late) {
		t.Errorf("run %d: %s: of %d aimed requests %d went on a new connection (%d got 504, %d answered late); want >= 10 aimed, >= 90 %% of the rest on a new connection",
			i, what, n, fresh, f, late)
	}
}

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
		// timeout shows the server's timer firing late (serverLate), and
		// one that went on a new connection where the FIN was held shows
		// the LB finding it already in (it checked late). Such requests
		// are counted apart; they may be fewer than half.
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
		lbLate, _, _ := elbTally(held, onNewConn)
		t.Logf("run %d: aimed, checking LB, server FIN held: %d/%d got 504 (%.0f %%), %d answered late, %d sent on a new connection, median backend time %.2f ms",
			i, f, n, pct(f, n), late, lbLate, med)
		rst, _, _ := elbTally(held, func(l elbLine) bool { return l.Aimed && l.Outcome == "504" && strings.Contains(l.Error, "RST") })
		if rest := n - late - lbLate; n < 10 || 2*rest <= n || float64(f) < 0.9*float64(rest) || float64(rst) < 0.9*float64(f) {
			t.Errorf("run %d: FIN held: %d/%d aimed requests got 504 (%d after a RST; %d, %d mistimed); want >= 90 %% of the rest, by RST",
				i, f, n, rst, late, lbLate)
		}
		// Issue 17: what each kind of server does with the request that
		// crosses its held FIN. faultbox serve closes fully, as Go
		// net/http does: its kernel resets the request and the LB reads
		// ECONNRESET. Apache 2.4 closes with a lingering close: it ACKs
		// and discards the request, sends no RST, and the LB reads EOF
		// when the held FIN arrives. From the LB's access log and from the
		// capture, apart from the verdict.
		n, f, _ = elbTally(held, aimed)
		reset, _, _ := elbTally(held, failedWith("connection reset by peer"))
		wantKind(t, i, "faultbox serve", lateRequests(t, r.Dir, 8603), n, f, reset, fullClose)
		apache := accessLog(t, r.Dir, 8607)
		n, f, med = elbTally(apache, aimed)
		late, _, _ = elbTally(apache, serverLate)
		lbLate, _, _ = elbTally(apache, onNewConn)
		eof, _, _ := elbTally(apache, failedWith(": EOF"))
		t.Logf("run %d: Apache, aimed, checking LB, server FIN held: %d/%d got 504 (%.0f %%), %d with EOF, %d answered late, %d sent on a new connection, median backend time %.2f ms",
			i, f, n, pct(f, n), eof, late, lbLate, med)
		if rest := n - late - lbLate; n < 10 || 2*rest <= n || float64(f) < 0.9*float64(rest) {
			t.Errorf("run %d: Apache, FIN held: %d/%d aimed requests got 504 (%d, %d mistimed); want >= 90 %% of the rest", i, f, n, late, lbLate)
		}
		wantKind(t, i, "Apache", lateRequests(t, r.Dir, 8607), n, f, eof, lingeringClose)
		if !timelineHas(r, "[:8607] ACKs the request and sends no RST") || !timelineHas(r, "[:8607] the held FIN reaches the LB, the LB reads EOF") {
			t.Errorf("run %d: the timeline does not tell Apache's ACK and the LB's EOF", i)
		}
		page, err := os.ReadFile(filepath.Join(r.Dir, "report.html"))
		if err != nil {
			t.Fatal(err)
		}
		for _, mark := range []string{"RST: ECONNRESET at the LB", "ACKed, no RST: read and discarded"} {
			if !strings.Contains(string(page), `data-mark="`+mark+`"`) {
				t.Errorf("run %d: the ladder does not highlight %q", i, mark)
			}
		}

		// The checking LB with the FIN on time (8602) or held less than
		// the aim offset (8604) finds it in at the aim point.
		wantFINNoticed(t, i, "aimed, checking LB, FIN on time", accessLog(t, r.Dir, 8602))
		wantFINNoticed(t, i, "aimed past the held FIN", accessLog(t, r.Dir, 8604))

		// Logged, not asserted: unaimed traffic with random 0.5-1.5 s gaps
		// fails only when a reuse happens to meet the server's close, a
		// rate the scenario reports and does not expect (its run has no
		// expected outcome).
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

// failedWith: an aimed request the LB answered 504 after an error ending
// in or containing what.
func failedWith(what string) func(elbLine) bool {
	return func(l elbLine) bool { return l.Aimed && l.Outcome == "504" && strings.Contains(l.Error, what) }
}

// lateTally is what the capture shows of the connections to one port on
// which the LB sent a request after the server's FIN had left the server.
type lateTally struct {
	late     int // such connections
	reset    int // the server answered the request with a RST
	lingered int // the server ACKed it, sent no RST, and its FIN reached the LB after it
	lbLate   int // the request left the LB after the FIN had reached it: a stall of the LB, not the race
}

// lateRequests reads the run's capture for port.
func lateRequests(t *testing.T, dir string, port uint16) lateTally {
	t.Helper()
	c, err := report.ReadCapture(filepath.Join(dir, "capture.pcapng"), report.Filter{Ports: []uint16{port}})
	if err != nil {
		t.Fatalf("reading the capture: %v", err)
	}
	type conn struct{ fin, req, rst, ack *report.Packet }
	conns := map[netip.AddrPort]*conn{} // by the LB's end
	var order []*conn
	for i := range c.Packets {
		p := &c.Packets[i]
		fromServer := p.Src.Port() == port
		lb := p.Src
		if fromServer {
			lb = p.Dst
		}
		lb = netip.AddrPortFrom(lb.Addr().Unmap(), lb.Port())
		cn := conns[lb]
		if cn == nil || !fromServer && p.Flags&packet.SYN != 0 { // a new connection, maybe on a reused port
			cn = &conn{}
			conns[lb] = cn
			order = append(order, cn)
		}
		switch {
		case fromServer && p.Flags&packet.FIN != 0 && cn.fin == nil:
			cn.fin = p
		case !fromServer && p.Len > 0 && cn.fin != nil && p.When().After(cn.fin.When()):
			cn.req = p
		case fromServer && cn.req != nil && p.Flags&packet.RST != 0 && cn.rst == nil:
			cn.rst = p
		case fromServer && cn.req != nil && cn.ack == nil && p.Flags&packet.ACK != 0 && int32(p.Ack-(cn.req.Seq+uint32(cn.req.Len))) >= 0:
			cn.ack = p
		}
	}
	var lt lateTally
	for _, cn := range order {
		if cn.req == nil {
			continue
		}
		lt.late++
		if !cn.fin.Out.IsZero() && !cn.req.When().Before(cn.fin.Out) {
			lt.lbLate++
		}
		switch {
		case cn.rst != nil:
			lt.reset++
		case cn.ack != nil && !cn.fin.Out.IsZero() && cn.fin.Out.After(cn.req.When()):
			lt.lingered++
		}
	}
	return lt
}

// Kinds of server, by how they end an idle keep-alive connection.
const (
	fullClose      = "full close"
	lingeringClose = "lingering close"
)

// wantKind checks one kind of server's arm: of its n aimed requests f got
// 504, lbErr of them with the LB error the kind gives (ECONNRESET, EOF),
// but for those the LB sent late, after the FIN had reached it (a stall
// of a loaded machine: it reads the FIN first); on the wire, every late
// request shows the kind's answer and none the other's.
func wantKind(t *testing.T, i int, server string, lt lateTally, n, f, lbErr int, kind string) {
	t.Helper()
	shown, other := lt.reset, lt.lingered
	if kind == lingeringClose {
		shown, other = lt.lingered, lt.reset
	}
	t.Logf("run %d: %s (%s): %d/%d aimed requests got 504, %d of them with the LB's error for this kind; capture: %d late requests, %d reset by the server, %d ACKed without a RST before the FIN arrived, %d sent after the FIN arrived",
		i, server, kind, f, n, lbErr, lt.late, lt.reset, lt.lingered, lt.lbLate)
	if onTime := f - lt.lbLate; f == 0 || float64(lbErr) < 0.9*float64(onTime) {
		t.Errorf("run %d: %s: %d of %d 504s with the LB error of a %s (%d sent after the FIN arrived); want >= 90 %% of the others", i, server, lbErr, f, kind, lt.lbLate)
	}
	if onTime := lt.late - lt.lbLate; onTime < 10 || float64(shown) < 0.9*float64(onTime) || other != 0 {
		t.Errorf("run %d: %s: of %d late requests on the wire (%d sent after the FIN arrived), %d show a %s and %d the other kind; want >= 10 sent before, >= 90 %% of them and 0",
			i, server, lt.late, lt.lbLate, shown, kind, other)
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

		wantEarlyNotReused(t, i, 8612, accessLog(t, r.Dir, 8612))

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

// wantEarlyNotReused checks an arm with hop_by_hop: correct: the server
// still answers early, and the LB, never reusing such a connection, fails
// no request.
func wantEarlyNotReused(t *testing.T, i, port int, ls []elbLine) {
	t.Helper()
	var early, failed int
	for _, l := range ls {
		if l.Early {
			early++
		}
		if l.Outcome != "ok" {
			failed++
		}
	}
	t.Logf("run %d: :%d, Connection not forwarded: %d early answers, %d failures", i, port, early, failed)
	if early < 5 || failed != 0 {
		t.Errorf("run %d: :%d, Connection not forwarded: %d early answers, %d failures; want >= 5 and 0", i, port, early, failed)
	}
}

// TestELB_FaultOffSaysNotReproduced: without the fault (the device's FIN
// hold off; the LB not forwarding Connection), neither reproduces, and the
// arm that showed the fault behaves as its fixed twin does with it on.
func TestELB_FaultOffSaysNotReproduced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		check func(t *testing.T, i int, r scenarioRun)
	}{
		{"elb-keepalive-race", func(t *testing.T, i int, r scenarioRun) {
			// Passthrough holds no FIN: 8603's checking LB is 8602's.
			if !strings.Contains(r.Verdict.Reason, "its FIN not held") {
				t.Errorf("run %d: fault off, yet the verdict does not say the FIN was not held: %s", i, r.Verdict.Reason)
			}
			wantFINNoticed(t, i, "fault off: aimed, checking LB, FIN not held", accessLog(t, r.Dir, 8603))
			wantFINNoticed(t, i, "fault off: Apache, aimed, checking LB, FIN not held", accessLog(t, r.Dir, 8607))
		}},
		{"elb-early-response", func(t *testing.T, i int, r scenarioRun) {
			// 8611 runs hop_by_hop: correct as well.
			wantEarlyNotReused(t, i, 8611, accessLog(t, r.Dir, 8611))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for i := range repeat(t) {
				tc.check(t, i, mustNotReproduce(t, tc.name))
			}
		})
	}
}
