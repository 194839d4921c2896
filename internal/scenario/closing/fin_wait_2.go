package closing

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// fin-wait-2 (docs/field-failures.md#fin-wait-2). Keep-alive clients that
// vanish once the server has closed an idle connection: the server socket
// waits in FIN_WAIT_2 for a FIN that never comes. Orphaned sockets (the
// server called close()) live tcp_fin_timeout; sockets the server only
// shut down and still holds have no timer at all.

const (
	clientsPerPort = 8 // per port
	orphanPort     = 8201
	holdPort       = 8202
	serverIdle     = time.Second // the servers' keep-alive timeout
	finTimeout     = 3 * time.Second
	minStay        = time.Second // FIN_WAIT_2 at least this long counts as stuck
)

const (
	armOrphan = "close() (orphaned)"
	armHold   = "shutdown() only"
)

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "fin-wait-2",
		Summary: "vanishing keep-alive clients: server sockets pile up in FIN_WAIT_2",
		Description: "The server closes idle keep-alive connections; the clients' kernels acknowledge its FIN, and then the " +
			"clients are gone (dial-up users who hung up, browsers that never send their FIN: Apache's 'Connections in the FIN_WAIT_2 state and Apache', profile dialup-vanish). " +
			"Each server socket waits in FIN_WAIT_2 for a FIN that never comes. On Linux an orphaned one (the server called " +
			"close()) is removed after tcp_fin_timeout; one the server only shut down and still holds has no timer at all. " +
			"Eight clients per port, one every 100 ms: port 8201 closes, port 8202 (serve --fin-wait-shutdown) only shuts down.",
		Profile: "dialup-vanish",
		Sysctls: []scenario.Sysctl{{Host: "server", Key: "net.ipv4.tcp_fin_timeout", Value: "3",
			Why: "orphaned FIN_WAIT_2 sockets are removed after 3 s instead of 60 s"}},
		SampleEvery: 50 * time.Millisecond,
		Budget:      15 * time.Second,
		Drive:       driveFinWait2,
		Judge:       judgeFinWait2,
	})
}

func driveFinWait2(c *scenario.Context) error {
	idle := serverIdle.String()
	if _, err := c.Serve("server", "serve-close", "--listen", scenario.Addr("server", orphanPort), "--keepalive-timeout", idle); err != nil {
		return err
	}
	if _, err := c.Serve("server", "serve-shutdown", "--listen", scenario.Addr("server", holdPort), "--keepalive-timeout", idle, "--fin-wait-shutdown"); err != nil {
		return err
	}
	if err := c.Sample("server", sockdiag.Filter{}, 0); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i := range 2 * clientsPerPort {
		port, arm := orphanPort, armOrphan
		if i%2 == 1 {
			port, arm = holdPort, armHold
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			keepAliveClient(c, fmt.Sprintf("client %d", i+1), arm, port)
		}()
		if err := c.Wait("the next client", 100*time.Millisecond); err != nil {
			return err
		}
	}
	wg.Wait()
	// The last orphaned socket goes tcp_fin_timeout after the last idle
	// close; sample a second more to show the shut-down ones staying.
	_, err := c.WaitFor("the orphaned FIN_WAIT_2 sockets to expire (tcp_fin_timeout=3)", finTimeout+2*time.Second, func() bool {
		socks, err := c.Sockets("server", sockdiag.Filter{States: sockdiag.StateMask(sockdiag.FinWait2), Port: orphanPort})
		return err == nil && len(socks) == 0
	})
	if err != nil {
		return err
	}
	return c.Wait("the shut-down sockets to show they stay", time.Second)
}

// keepAliveClient makes one keep-alive request, waits for the server to
// close the idle connection, then closes too (its FIN is what vanishes).
func keepAliveClient(c *scenario.Context, name, arm string, port int) {
	c.RunClient(scenario.ClientResult{Name: name, Arm: arm}, scenario.Addr("server", port), 2*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		conn.SetDeadline(time.Now().Add(serverIdle + 3*time.Second))
		br := bufio.NewReader(conn)
		status, n, err := scenario.Get(conn, br, "/", false, -1)
		r.Status, r.Bytes = status, n
		if err != nil {
			r.SetErr(err)
			return
		}
		got := time.Now()
		if _, err := io.Copy(io.Discard, br); err != nil {
			r.SetErr(fmt.Errorf("waiting for the server's close: %w", err))
			return
		}
		r.Detail = fmt.Sprintf("server closed after %s idle; the client then closed (its FIN is what vanishes)", time.Since(got).Round(10*time.Millisecond))
	})
}

// finWait2Conn is one client's server socket as the evidence shows it.
type finWait2Conn struct {
	r        scenario.ClientResult
	life     scenario.Life
	inFW2    time.Duration // from the first to the last sample in FIN-WAIT-2, plus one interval
	fw2From  time.Time
	finAtSrv bool      // the client's FIN reached the server
	vanished time.Time // the device's first note of the client vanishing
}

func judgeFinWait2(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	interval := 50 * time.Millisecond
	if sr := e.Sockets["server"]; sr != nil && sr.Interval > 0 {
		interval = sr.Interval
	}
	arms := map[string][]finWait2Conn{}
	for _, r := range e.Clients {
		if !r.Local.IsValid() {
			return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("%s never connected: %s", r.Name, r.Err)}
		}
		fc := finWait2Conn{r: r, life: e.Socket("server", r.Remote, r.Local)}
		for _, sp := range fc.life.Spans {
			if sp.State == sockdiag.FinWait2 {
				if fc.fw2From.IsZero() {
					fc.fw2From = sp.From
				}
				fc.inFW2 = sp.To.Sub(fc.fw2From) + interval
			}
		}
		for _, p := range e.Packets(r.Local, r.Remote) {
			if report.SameEnd(p.Src, r.Local) && !p.Dropped && p.Flags&packet.FIN != 0 {
				fc.finAtSrv = true
			}
			if report.SameEnd(p.Src, r.Local) && strings.Contains(p.Note, "vanish") && fc.vanished.IsZero() {
				fc.vanished = p.When()
			}
		}
		if len(arms[r.Arm]) == 0 { // the ladder shows one connection of each port
			v.Ladder = append(v.Ladder, report.Conn{A: r.Local, B: r.Remote})
		}
		arms[r.Arm] = append(arms[r.Arm], fc)
	}
	if len(arms[armOrphan]) != clientsPerPort || len(arms[armHold]) != clientsPerPort {
		return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("expected %d clients per port, got %d and %d", clientsPerPort, len(arms[armOrphan]), len(arms[armHold]))}
	}
	orphan := summarizeFinWait2(e, arms[armOrphan], orphanPort)
	hold := summarizeFinWait2(e, arms[armHold], holdPort)
	v.Runs = []report.Run{
		{Name: armOrphan, Change: fmt.Sprintf("port %d: the server close()s the idle connection", orphanPort), Outcome: scenario.OutcomeIf(orphan.piledUp()), Reason: orphan.text},
		{Name: armHold, Change: fmt.Sprintf("port %d: serve --fin-wait-shutdown: shutdown(SHUT_WR), the descriptor kept", holdPort), Outcome: scenario.OutcomeIf(hold.piledUp()), Reason: hold.text},
	}
	v.Timeline = append(orphan.timeline(e, armOrphan), hold.timeline(e, armHold)...)
	v.Notes = append(v.Notes, finWait2Counts(e))
	if orphan.piledUp() {
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("server sockets piled up in FIN_WAIT_2 — %s: %s; %s: %s", armOrphan, orphan.text, armHold, hold.text)
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("no FIN_WAIT_2 build-up — %s: %s; %s: %s", armOrphan, orphan.text, armHold, hold.text)
	}
	return v
}

type finWait2Summary struct {
	stuck, finsDelivered, remaining, n int
	vanished                           int
	firstVanish, firstFW2              time.Time
	stays                              []time.Duration
	peak                               scenario.Count
	firstGone, lastGone                time.Time
	end                                time.Time
	text                               string
}

// piledUp: half or more of the arm's server sockets sat in FIN-WAIT-2.
func (s *finWait2Summary) piledUp() bool { return s.stuck*2 >= s.n }

func summarizeFinWait2(e *scenario.Evidence, conns []finWait2Conn, port uint16) finWait2Summary {
	s := finWait2Summary{n: len(conns), peak: scenario.Peak(e.CountState("server", port, sockdiag.FinWait2))}
	for _, fc := range conns {
		if fc.finAtSrv {
			s.finsDelivered++
		}
		if fc.inFW2 >= minStay {
			s.stuck++
		}
		if !fc.vanished.IsZero() {
			s.vanished++
			if s.firstVanish.IsZero() || fc.vanished.Before(s.firstVanish) {
				s.firstVanish = fc.vanished
			}
		}
		if !fc.fw2From.IsZero() && (s.firstFW2.IsZero() || fc.fw2From.Before(s.firstFW2)) {
			s.firstFW2 = fc.fw2From
		}
		s.end = fc.life.End
		switch {
		case fc.fw2From.IsZero():
		case fc.life.Gone.IsZero():
			s.remaining++
		default:
			s.stays = append(s.stays, fc.inFW2)
			if s.firstGone.IsZero() || fc.life.Gone.Before(s.firstGone) {
				s.firstGone = fc.life.Gone
			}
			if fc.life.Gone.After(s.lastGone) {
				s.lastGone = fc.life.Gone
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d server sockets sat in FIN-WAIT-2 for %s or more (peak %d at once); %d client FINs reached the server",
		s.stuck, s.n, minStay, s.peak.N, s.finsDelivered)
	if len(s.stays) > 0 {
		slices.Sort(s.stays)
		fmt.Fprintf(&b, "; %d removed by the kernel after %s to %s in FIN-WAIT-2 (median %s)", len(s.stays),
			scenario.Secs(s.stays[0]), scenario.Secs(s.stays[len(s.stays)-1]), scenario.Secs(s.stays[len(s.stays)/2]))
	}
	if s.remaining > 0 {
		fmt.Fprintf(&b, "; %d still in FIN-WAIT-2 when sampling ended (no timer)", s.remaining)
	}
	s.text = b.String()
	return s
}

func (s *finWait2Summary) timeline(e *scenario.Evidence, arm string) []report.Entry {
	var out []report.Entry
	if !s.firstVanish.IsZero() {
		out = append(out, e.Entry(s.firstVanish, "device", "[%s] the first client ACKs the server's FIN and vanishes: the device drops everything it sends after (%d of %d clients)", arm, s.vanished, s.n))
	}
	if !s.firstFW2.IsZero() {
		out = append(out, e.Entry(s.firstFW2, "server", "[%s] the first server socket is seen in FIN-WAIT-2", arm))
	}
	if s.peak.N > 0 {
		out = append(out, e.Entry(s.peak.At, "server", "[%s] %d sockets in FIN-WAIT-2 at once (the peak)", arm, s.peak.N))
	}
	if !s.firstGone.IsZero() {
		out = append(out, e.Entry(s.firstGone, "server", "[%s] the first FIN-WAIT-2 socket is removed by the kernel", arm))
		out = append(out, e.Entry(s.lastGone, "server", "[%s] the last FIN-WAIT-2 socket is removed (%d in all)", arm, len(s.stays)))
	}
	if s.remaining > 0 {
		out = append(out, e.Entry(s.end, "server", "[%s] %d sockets still in FIN-WAIT-2 when sampling ended", arm, s.remaining))
	}
	return out
}

// finWait2Counts renders the FIN-WAIT-2 count of both ports every half second
// of the samples: the build-up and the drain in one line.
func finWait2Counts(e *scenario.Evidence) string {
	a := e.CountState("server", orphanPort, sockdiag.FinWait2)
	b := e.CountState("server", holdPort, sockdiag.FinWait2)
	var parts []string
	next := time.Duration(0)
	for i := range a {
		at := e.At(a[i].At)
		if at < next || i >= len(b) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%.1fs %d/%d", at.Seconds(), a[i].N, b[i].N))
		next = at.Truncate(500*time.Millisecond) + 500*time.Millisecond
	}
	return fmt.Sprintf("FIN-WAIT-2 sockets over time (port %d close() / port %d shutdown() only): %s",
		orphanPort, holdPort, strings.Join(parts, ", "))
}
