package deferaccept

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// gprs-defer-accept: GPRS-slow clients against a TCP_DEFER_ACCEPT server,
// the GPRS report of Launchpad bug 134274 (">80 % failed connection
// attempts"), on this kernel (docs/field-failures.md#gprs-slow-clients).
//
// A request socket whose client ACKed is kept silent until one SYN-ACK
// retransmit; if the ACK to that retransmit is lost the request socket
// expires silently (after max(synack retries, defer retransmits)
// timeouts) and the client, which believes it is connected, gets a RST
// for its request. Without defer-accept a delivered ACK establishes the
// connection at once, so only clients that lose every handshake ACK (the
// first and the one after the retransmit) fail: with the same share of
// bare handshake ACKs lost, far fewer plain connections expire.
//
// The clients connect and send their request after the request socket's
// expiry: a browser's preconnect or a client's connection pool. A client
// that sends its request at once is not hurt: the data itself completes
// the deferred handshake.

const (
	slowClients    = 30                    // per arm
	thinkTime      = 4 * time.Second       // from connect to request
	slowDeadline   = 10 * time.Second      // each client's own deadline
	deferPort      = 8501                  // faultbox serve --defer-accept 1
	plainPort      = 8502                  // faultbox serve without it
	connectStagger = 10 * time.Millisecond // between two connects of an arm
)

const gprsProfile = `name: gprs-defer-accept
description: >-
  A GPRS link's latency and loss (the gprs profile's 250 ms one way with
  50 ms normal jitter and 1.5 % loss) with half of the clients' bare
  handshake ACKs lost, as gprs-ackloss. Without gprs's rate limits and
  outages: one GPRS user opens one or two connections, while this run
  puts 60 connections through one device, whose shared 20 kbit/s would
  delay SYN-ACKs by seconds and hide the handshake timeline.
sources:
  - "the gprs and gprs-ackloss built-in profiles (faultbox profile show gprs): docs/field-failures.md#gprs-slow-clients"
  - ">80 % failed connection attempts of GPRS clients to a TCP_DEFER_ACCEPT server: TJ, 'TCP_DEFER_ACCEPT causes random HTTP connection failures in load-balanced web-server farms', Ubuntu Launchpad bug #134274, https://bugs.launchpad.net/ubuntu/+source/apache2/+bug/134274"
behaviors:
  - type: ack-drop
    probability: 50%
  - type: loss
    p: 1.5%
  - type: delay
    delay: 250ms
    jitter: 50ms
    distribution: normal
`

// slowArm is one server of the run, with or without defer-accept.
type slowArm struct {
	name, change string
	port         int
	deferOn      bool
	expect       report.Outcome
}

var slowArms = []slowArm{
	{"defer-accept 1 s", "faultbox serve --defer-accept 1 (TCP_DEFER_ACCEPT, as Apache 2.2 on Linux set it)", deferPort, true, report.Reproduced},
	{"no defer-accept", "faultbox serve without --defer-accept", plainPort, false, report.NotReproduced},
}

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "gprs-defer-accept",
		Summary: "GPRS clients losing bare ACKs to a TCP_DEFER_ACCEPT server: silent request-socket expiry, later RSTs (counts, A/B)",
		Description: "Slow GPRS clients saw over 80 % of their connections to a TCP_DEFER_ACCEPT server fail (Launchpad bug 134274). On " +
			"this kernel a deferred request socket gets exactly one SYN-ACK retransmit at the end of the defer period; if the " +
			"client's ACK to it is lost, the request socket expires silently and the client, which believes it is connected, " +
			"gets a RST for its request. Here 30 clients per arm connect over a GPRS link (250 ms one way, 1.5 % loss) that " +
			"loses half their bare handshake ACKs and send their request 4 s later, like a browser's preconnect or a pool; one " +
			"`faultbox serve` has TCP_DEFER_ACCEPT 1 s, the other none. tcp_synack_retries is 1 in the server's namespace, so " +
			"a half-open connection expires after ~3 s instead of ~63 s (default 5). The report counts, per arm, the requests " +
			"reset because the request socket had expired, and how many of those the server had received (and swallowed) " +
			"an ACK for: that only happens with defer-accept.",
		Hosts:       []string{"client", "server"},
		ProfileYAML: gprsProfile,
		Sysctls: []scenario.Sysctl{{Host: "server", Key: "net.ipv4.tcp_synack_retries", Value: "1",
			Why: "a half-open connection expires after one SYN-ACK retransmit, ~3 s after the SYN, instead of ~63 s (default 5)"}},
		Budget:      25 * time.Second,
		SampleEvery: 20 * time.Millisecond,
		Drive:       driveGPRS,
		Judge:       judgeGPRS,
	})
}

func driveGPRS(c *scenario.Context) error {
	klog, err := c.KernelLog("server", kernelLog)
	if err != nil {
		return err
	}
	if err := klog.Netstat("start", deferCounters); err != nil {
		return err
	}
	for _, a := range slowArms {
		flags := []string{"--listen", scenario.Addr("server", a.port), "--keepalive-timeout", "0", "--response-size", "200b"}
		if a.deferOn {
			flags = append(flags, "--defer-accept", "1")
		}
		p, err := c.Serve("server", fmt.Sprintf("serve-%d", a.port), flags...)
		if err != nil {
			return err
		}
		logListener(c, klog, a.name, p.PID, uint16(a.port))
	}
	if err := c.Sample("server", sockdiag.Filter{}, 0); err != nil {
		return err
	}
	c.Step("client", "%d clients per server connect over the GPRS link and send their request %s later", slowClients, scenario.Tenths(thinkTime))
	var wg sync.WaitGroup
	for i := range slowClients {
		for _, a := range slowArms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c.Wait("the clients' connects", time.Duration(i)*connectStagger) != nil {
					return
				}
				slowClient(c, fmt.Sprintf("client %d", i+1), a.name, a.port)
			}()
		}
	}
	wg.Wait()
	if err := c.Context().Err(); err != nil {
		return err
	}
	if err := klog.Netstat("end", deferCounters); err != nil {
		return err
	}
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

// slowClient connects, waits thinkTime, sends one GET and records the result.
func slowClient(c *scenario.Context, name, arm string, port int) {
	c.RunClient(scenario.ClientResult{Name: name, Arm: arm}, scenario.Addr("server", port), 8*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		connected := time.Now()
		if c.Wait("the clients' requests", thinkTime) != nil {
			r.Err = "interrupted"
			return
		}
		conn.SetDeadline(time.Now().Add(slowDeadline))
		var err error
		r.Status, r.Bytes, err = scenario.Get(conn, bufio.NewReader(conn), "/", true, -1)
		r.SetErr(err)
		r.Detail = fmt.Sprintf("connected after %s", connected.Sub(r.Start).Round(time.Millisecond))
	})
}

// slowConn is one client's connection as the evidence shows it.
type slowConn struct {
	r       scenario.ClientResult
	h       *hsConn
	expired bool          // the server reset the request: its request socket was gone
	swallow bool          // ... although a handshake ACK had reached it
	gone    time.Duration // when the server's request socket vanished, after the SYN (0: unseen)
}

func judgeGPRS(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	v.Results = &report.Table{Columns: []string{"arm", "client", "connection", "handshake ACKs delivered/lost", "SYN-ACKs", "request socket", "request", "client got"}}
	counts := make([]slowArmCount, len(slowArms))
	var gone []time.Duration
	for i, a := range slowArms {
		rs := e.Client(a.name)
		if len(rs) == 0 {
			return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("arm %s: no client results", a.name)}
		}
		counts[i] = readSlowArm(e, a, rs, v.Results)
		gone = append(gone, counts[i].gone...)
	}
	for i, a := range slowArms {
		v.Runs = append(v.Runs, counts[i].run(a))
	}
	drops, _ := e.NetstatDelta(kernelLog, "TCPDeferAcceptDrop")
	a, b := counts[0], counts[1]
	expiry := "not sampled"
	if len(gone) > 0 {
		slices.Sort(gone)
		expiry = fmt.Sprintf("%s after the SYN (median of %d)", scenario.Tenths(gone[len(gone)/2]), len(gone))
	}
	switch {
	case a.swallowed == 0:
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("no deferred connection expired after its ACK was swallowed: with defer-accept %d/%d requests reset, without %d/%d (TcpExtTCPDeferAcceptDrop +%d)",
			a.expired, a.n, b.expired, b.n, drops)
	default:
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("with TCP_DEFER_ACCEPT %d/%d requests got a RST: their request sockets expired silently (%s), %d of them although the server had received their ACK "+
			"(swallowed: TcpExtTCPDeferAcceptDrop +%d) and only the ACK after its one SYN-ACK retransmit was lost; without defer-accept %d/%d, each one with every handshake ACK lost",
			a.expired, a.n, expiry, a.swallowed, drops, b.expired, b.n)
	}
	v.Notes = append(v.Notes,
		"This kernel vs the 2006 report: a deferred connection is no longer dropped when the defer period ends; it is accepted if "+
			"the ACK to its single SYN-ACK retransmit arrives. A lossy link still kills it: the handshake ACK that did arrive was "+
			"swallowed, so only that one later ACK counts, where a server without defer-accept takes the first ACK that arrives.",
		"Clients that send their request right after connecting are not hurt: the request itself completes a deferred handshake. "+
			"The ones here send it 4 s later, like a browser's preconnect or a connection pool.")
	for i, a := range slowArms {
		if g := counts[i].example; g != nil {
			v.Timeline = append(v.Timeline, slowConnTimeline(e, a.name, g)...)
			v.Ladder = append(v.Ladder, report.Conn{A: g.h.Cli, B: g.h.Srv})
		}
	}
	return v
}

// slowArmCount is what one arm's clients got.
type slowArmCount struct {
	n, ok, expired, swallowed, other int
	gone                             []time.Duration // when expired request sockets vanished, after their SYN
	example                          *slowConn       // one expired connection, swallowed ACK first
}

// readSlowArm counts what arm a's clients rs got, from the capture and
// the server's samples, and adds a row per client to table.
func readSlowArm(e *scenario.Evidence, a slowArm, rs []scenario.ClientResult, table *report.Table) slowArmCount {
	var ct slowArmCount
	conns := traceConns(e, scenario.AddrPort("server", a.port))
	slices.SortFunc(rs, func(x, y scenario.ClientResult) int { return x.Start.Compare(y.Start) })
	for _, r := range rs {
		g := slowConn{r: r, h: conns[r.Local]}
		ct.n++
		switch {
		case r.Err == "" && r.Status == 200:
			ct.ok++
		case g.h != nil && !g.h.Data.IsZero() && !g.h.SrvRST.IsZero() && !g.h.SrvRST.Before(g.h.Data) && g.h.SrvData.IsZero() && g.h.SrvFIN.IsZero():
			g.expired = true
			g.swallow = len(g.h.ACKs) > 0
			ct.expired++
			if g.swallow {
				ct.swallowed++
			}
			if l := e.Socket("server", scenario.AddrPort("server", a.port), g.h.Cli); l.Seen && !l.Gone.IsZero() {
				g.gone = l.Gone.Sub(g.h.SYN)
				ct.gone = append(ct.gone, g.gone)
			}
			if ct.example == nil || (g.swallow && !ct.example.swallow) {
				ct.example = &g
			}
		default:
			ct.other++
		}
		table.Rows = append(table.Rows, g.row(a.name))
	}
	return ct
}

// run is the arm's line in the verdict's runs.
func (ct slowArmCount) run(a slowArm) report.Run {
	run := report.Run{Name: a.name, Change: a.change, Expected: a.expect, Outcome: scenario.OutcomeIf(ct.swallowed > 0)}
	run.Reason = fmt.Sprintf("%d/%d requests reset after the server's request socket expired silently (%d of them after the server had received and swallowed a handshake ACK); %d ok, %d other failures",
		ct.expired, ct.n, ct.swallowed, ct.ok, ct.other)
	return run
}

func (g *slowConn) row(arm string) []string {
	got := "200"
	if g.r.Err != "" {
		got = g.r.Kind + ": " + g.r.Err
	}
	if g.h == nil {
		return []string{arm, g.r.Name, g.r.Local.String(), "—", "—", "—", "—", got}
	}
	sock := "accepted"
	switch {
	case g.expired && g.gone > 0:
		sock = fmt.Sprintf("expired silently at %s", scenario.Tenths(g.gone))
	case g.expired:
		sock = "expired silently"
	case g.h.SrvData.IsZero():
		sock = "no response"
	}
	req := "—"
	if !g.h.Data.IsZero() {
		req = fmt.Sprintf("at %s", scenario.Tenths(g.h.Data.Sub(g.h.SYN)))
		if !g.h.SrvRST.IsZero() && !g.h.SrvRST.Before(g.h.Data) {
			req += ", answered with RST"
		}
	}
	return []string{arm, g.r.Name, g.r.Local.String(), fmt.Sprintf("%d/%d", len(g.h.ACKs), len(g.h.ACKsDropped)),
		fmt.Sprint(len(g.h.SYNACKs)), sock, req, got}
}

// slowConnTimeline shows one expired connection of an arm, packet by packet.
func slowConnTimeline(e *scenario.Evidence, arm string, g *slowConn) []report.Entry {
	h := g.h
	var what []string
	if len(h.ACKs) > 0 {
		what = append(what, fmt.Sprintf("%d handshake ACK(s) reached the server and were swallowed", len(h.ACKs)))
	}
	if len(h.ACKsDropped) > 0 {
		what = append(what, fmt.Sprintf("%d lost on the link", len(h.ACKsDropped)))
	}
	out := []report.Entry{
		e.Entry(h.SYN, "client", "%s: %s connects (SYN)", arm, h.Cli),
		e.Entry(h.lastSYNACK(), "server", "%s: last SYN-ACK to %s, %d in all; %s", arm, h.Cli, len(h.SYNACKs), strings.Join(what, ", ")),
	}
	if g.gone > 0 {
		out = append(out, e.Entry(h.SYN.Add(g.gone), "server", "%s: the request socket for %s is gone from the server's sockets: expired, nothing sent", arm, h.Cli))
	}
	return append(out,
		e.Entry(h.Data, "client", "%s: %s sends its request on a connection the server no longer has", arm, h.Cli),
		e.Entry(h.SrvRST, "server", "%s: RST to %s", arm, h.Cli))
}
