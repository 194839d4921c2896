package deferaccept

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// The judge of the DX runs: the DX's log (which pooled connection carried
// which request), the capture of every pooled connection, the clients'
// results and the server's kernel counters, joined per arm.

// poolRequest is one client request joined with what the DX and the
// capture show of it.
type poolRequest struct {
	Client scenario.ClientResult
	Req    *proxy.Entry // the DX's log line of it; nil if it logged nothing
	Conn   *hsConn      // the pooled connection that carried it, if seen
}

func (q *poolRequest) failed() bool { return q.Client.Err != "" || q.Client.Status != 200 }

// emptyReply: the DX closed the client connection with no response.
func (q *poolRequest) emptyReply() bool {
	return q.Client.Kind == scenario.KindEOF || (q.Req != nil && q.Req.Outcome == proxy.OutcomeEmptyReply)
}

// stalled reports a request the server's kernel did not take at once: the
// DX sent it more than once before the response came.
func (q *poolRequest) stalled() (time.Duration, bool) {
	h := q.Conn
	if h == nil || h.DataSends < 2 || h.SrvData.IsZero() || h.Data.IsZero() {
		return 0, false
	}
	return h.SrvData.Sub(h.Data), true
}

// poolArmEvidence is what the judge works out for one arm.
type poolArmEvidence struct {
	Arm      poolArm
	Desc     string // server configuration as Drive logged it
	Defer    int    // TCP_DEFER_ACCEPT read back (-1: unknown)
	Conns    map[netip.AddrPort]*hsConn
	Pool     []*hsConn // connections the DX opened, in order of opening
	Initial  int       // how many of them it opened at start (the rest replaced closed ones)
	Checked  int       // pooled connections the DX found closed before reuse and dropped
	Requests []poolRequest
}

// deferred reports a pooled connection held in the kernel's deferral: its
// handshake ACK reached the server, the server kept silent until exactly
// one SYN-ACK retransmit near the end of the defer period, and no request
// had arrived by then.
func (ae *poolArmEvidence) deferred(h *hsConn) bool {
	if len(h.ACKs) == 0 || h.synackRetransmits() != 1 {
		return false
	}
	rx := h.lastSYNACK()
	if !h.Data.IsZero() && h.Data.Before(rx) {
		return false
	}
	wait := rx.Sub(h.SYN)
	if ae.Defer > 0 {
		d := time.Duration(ae.Defer) * time.Second
		return wait >= d-100*time.Millisecond && wait <= d+2*time.Second
	}
	return wait >= 900*time.Millisecond
}

func (pl *poolRun) armEvidence(e *scenario.Evidence, a poolArm) *poolArmEvidence {
	ae := &poolArmEvidence{Arm: a, Defer: -1}
	if v, ok := listenerDeferOf(e, kernelLog, a.Name); ok {
		ae.Defer = v
	}
	for _, ev := range e.Logs[kernelLog] {
		if ev.Event.Event == "arm" && ev.Raw["arm"] == a.Name {
			ae.Desc, _ = ev.Raw["server"].(string)
		}
	}
	ae.Conns = traceConns(e, scenario.AddrPort("server", int(a.Port)))
	lg := e.ProxyLog(proxyName(a))
	for _, id := range slices.Sorted(maps.Keys(lg.Local)) {
		if h := ae.Conns[lg.Local[id]]; h != nil {
			ae.Pool = append(ae.Pool, h)
			if h.SYN.Sub(ae.Pool[0].SYN) < time.Second {
				ae.Initial++
			}
		}
	}
	for _, pe := range lg.Closes {
		if strings.HasPrefix(pe.Reason, "check_before_reuse") {
			ae.Checked++
		}
	}
	for _, cr := range e.Client(a.Name) {
		q := poolRequest{Client: cr}
		for i := range lg.Requests {
			if ap, err := netip.ParseAddrPort(lg.Requests[i].Client); err == nil && report.SameEnd(ap, cr.Local) {
				q.Req = &lg.Requests[i]
				q.Conn = ae.Conns[lg.Local[q.Req.BackendConn]]
			}
		}
		ae.Requests = append(ae.Requests, q)
	}
	slices.SortFunc(ae.Requests, func(x, y poolRequest) int { return x.Client.Start.Compare(y.Client.Start) })
	return ae
}

// idleAt is a pooled connection's age at t.
func idleAt(h *hsConn, t time.Time) time.Duration { return t.Sub(h.SYN) }

// outcomeText says what one request got, in a few words.
func (q *poolRequest) outcomeText() string {
	switch {
	case !q.failed():
		if d, ok := q.stalled(); ok {
			return fmt.Sprintf("200 after a %s stall", scenario.Tenths(d))
		}
		return "200"
	case q.emptyReply():
		return "empty reply (blank page)"
	case q.Client.Kind != "":
		return q.Client.Kind
	case q.Client.Err == "":
		return fmt.Sprintf("HTTP %d", q.Client.Status)
	}
	return "failed: " + q.Client.Err
}

// serverText says what the server's side of the pooled connection did.
func (q *poolRequest) serverText() string {
	h := q.Conn
	if h == nil {
		return "connection not in the capture"
	}
	var parts []string
	if n := h.synackRetransmits(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d SYN-ACK retransmit at idle %s", n, scenario.Tenths(idleAt(h, h.lastSYNACK()))))
	}
	if len(h.Probes) > 0 && (h.Data.IsZero() || h.Probes[0].Before(h.Data)) {
		parts = append(parts, fmt.Sprintf("DX keep-alive probe at idle %s", scenario.Tenths(idleAt(h, h.Probes[0]))))
	}
	if !h.SrvFIN.IsZero() && !h.Data.IsZero() && h.SrvFIN.Before(h.Data) {
		parts = append(parts, fmt.Sprintf("server FIN at idle %s, before the request", scenario.Tenths(idleAt(h, h.SrvFIN))))
	}
	if d, ok := q.stalled(); ok {
		parts = append(parts, fmt.Sprintf("request sent %d times, not acknowledged for %s", h.DataSends, scenario.Tenths(d)))
	}
	switch {
	case !h.SrvData.IsZero():
		parts = append(parts, "served")
	case !h.SrvRST.IsZero() && !h.Data.IsZero() && !h.SrvRST.Before(h.Data):
		parts = append(parts, "request answered with RST")
	case !h.Data.IsZero():
		parts = append(parts, "request got no response")
	}
	return strings.Join(parts, "; ")
}

func (pl *poolRun) judge(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	arms := make([]*poolArmEvidence, len(pl.Arms))
	for i, a := range pl.Arms {
		arms[i] = pl.armEvidence(e, a)
		if len(arms[i].Pool) == 0 {
			return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("arm %s: no pooled connection of its DX in the capture (proxy log or capture missing)", a.Name)}
		}
		if len(arms[i].Requests) != len(pl.Ages) {
			return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("arm %s: %d of %d client requests recorded", a.Name, len(arms[i].Requests), len(pl.Ages))}
		}
	}
	fails := make([]int, len(arms))
	v.Results = &report.Table{Columns: []string{"arm", "request", "sent at", "pooled connection", "its idle time", "client got", "took", "server side (capture)"}}
	for ai, ae := range arms {
		fails[ai] = ae.addTo(e, &v)
	}
	v.Ladder = ladder(arms)
	pl.decide(e, &v, arms, fails)
	if tsecr, _ := e.NetstatDelta(kernelLog, "TSEcrRejected"); tsecr > 0 {
		v.Notes = append(v.Notes, fmt.Sprintf("TcpExtTSEcrRejected grew by %d in the server's namespace: requests the DX sent to a deferred connection after its own TCP keep-alive probe "+
			"were refused by the kernel until the SYN-ACK retransmit (see the stall in the table).", tsecr))
	}
	return v
}

// addTo adds the arm's requests to the verdict's table and timeline, and
// its run; it returns how many of its requests failed.
func (ae *poolArmEvidence) addTo(e *scenario.Evidence, v *scenario.Verdict) (failed int) {
	var what []string
	for _, q := range ae.Requests {
		conn, idle := "—", "—"
		if q.Req != nil {
			conn = fmt.Sprintf("#%d", q.Req.BackendConn)
			idle = scenario.Tenths(time.Duration(q.Req.ConnAge * float64(time.Millisecond)))
			if q.Conn != nil {
				conn += " " + q.Conn.Cli.String()
			}
		}
		v.Results.Rows = append(v.Results.Rows, []string{ae.Arm.Name, q.Client.Name, fmt.Sprintf("%.3fs", e.At(q.Client.Start).Seconds()),
			conn, idle, q.outcomeText(), q.Client.End.Sub(q.Client.Start).Round(time.Millisecond).String(), q.serverText()})
		if q.failed() {
			failed++
		}
		what = append(what, fmt.Sprintf("idle %s: %s", idle, q.outcomeText()))
		v.Timeline = append(v.Timeline, e.Entry(q.Client.Start, "client", "%s via DX %s: pooled connection idle %s → %s", q.Client.Name, ae.Arm.Name, idle, q.outcomeText()))
	}
	v.Runs = append(v.Runs, report.Run{Name: ae.Arm.Name, Change: ae.Arm.Change, Expected: ae.Arm.Expect, Outcome: scenario.OutcomeIf(failed > 0),
		Reason: fmt.Sprintf("%s; %d/%d requests failed — %s", ae.summary(), failed, len(ae.Requests), strings.Join(what, ", "))})
	v.Timeline = append(v.Timeline, ae.timeline(e)...)
	return failed
}

// ladder lists arm A's stalled and failed requests (pooled connection and
// client connection), and the first failure of every other arm.
func ladder(arms []*poolArmEvidence) []report.Conn {
	var out []report.Conn
	for i, ae := range arms {
		for _, q := range ae.Requests {
			_, stalled := q.stalled()
			if q.Conn == nil || !(q.failed() || (i == 0 && stalled)) {
				continue
			}
			out = append(out, report.Conn{A: q.Conn.Cli, B: q.Conn.Srv})
			if q.failed() {
				out = append(out, report.Conn{A: q.Client.Local, B: q.Client.Remote})
			}
			if i > 0 {
				break
			}
		}
	}
	return out
}

// blankPages returns arm A's pooled connections the kernel deferred, and
// its requests that got an empty reply on one of them the server had
// closed after the deferred accept: the DX's blank page.
func (ae *poolArmEvidence) blankPages() (deferred []*hsConn, blank []poolRequest) {
	for _, h := range ae.Pool {
		if ae.deferred(h) {
			deferred = append(deferred, h)
		}
	}
	for _, q := range ae.Requests {
		if q.emptyReply() && q.Conn != nil && slices.Contains(deferred, q.Conn) &&
			!q.Conn.SrvFIN.IsZero() && q.Conn.SrvFIN.After(q.Conn.lastSYNACK()) && q.Conn.Data.After(q.Conn.SrvFIN) {
			blank = append(blank, q)
		}
	}
	return deferred, blank
}

// decide sets the verdict: arm A's, the DX's blank page after a deferred
// handshake, with the other arms' failures in the reason.
func (pl *poolRun) decide(e *scenario.Evidence, v *scenario.Verdict, arms []*poolArmEvidence, fails []int) {
	a := arms[0]
	deferredConns, blank := a.blankPages()
	drops, haveDrops := e.NetstatDelta(kernelLog, "TCPDeferAcceptDrop")
	switch {
	case len(deferredConns) == 0:
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("%s never deferred a pooled connection of arm A (%s): no swallowed ACK with a single late SYN-ACK retransmit, TcpExtTCPDeferAcceptDrop +%d", pl.Server, a.summary(), drops)
	case haveDrops && drops < int64(len(deferredConns)):
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("the capture shows %d deferred handshakes but TcpExtTCPDeferAcceptDrop grew by only %d", len(deferredConns), drops)
	case len(blank) == 0:
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("%d pooled connections of arm A were deferred, but no request through the DX got an empty reply on one the server had closed after its deferred accept", len(deferredConns))
	default:
		h := blank[0].Conn
		rx := h.lastSYNACK()
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("blank page: DX A opened %d pooled connections with no request; the kernel swallowed their bare ACKs (TcpExtTCPDeferAcceptDrop +%d in the server's namespace), "+
			"retransmitted one SYN-ACK %s after the SYN and accepted; %s closed them %s later (FIN) and %d request(s) on them got an empty reply (first at idle %s)",
			a.Initial, drops, scenario.Tenths(rx.Sub(h.SYN)), pl.Server, scenario.Tenths(h.SrvFIN.Sub(rx)), len(blank), scenario.Tenths(idleAt(h, h.Data)))
		for i, ae := range arms[1:] {
			v.Reason += fmt.Sprintf("; arm %s (%s): %d/%d requests failed", ae.Arm.Name, ae.Arm.Change, fails[i+1], len(ae.Requests))
		}
	}
}

// summary describes an arm's server and its pooled connections.
func (ae *poolArmEvidence) summary() string {
	var b strings.Builder
	b.WriteString(ae.Desc)
	if ae.Defer >= 0 {
		fmt.Fprintf(&b, " (TCP_DEFER_ACCEPT read back: %d s)", ae.Defer)
	}
	n := 0
	var finAfter []time.Duration
	for _, h := range ae.Pool {
		if ae.deferred(h) {
			n++
		}
		if h.idleClose() {
			finAfter = append(finAfter, h.SrvFIN.Sub(h.SYN))
		}
	}
	fmt.Fprintf(&b, "; the DX opened %d pooled connections with no request", ae.Initial)
	if r := len(ae.Pool) - ae.Initial; r > 0 {
		fmt.Fprintf(&b, " (and %d replacements later)", r)
	}
	fmt.Fprintf(&b, ", %d deferred by the kernel", n)
	if len(finAfter) > 0 {
		fmt.Fprintf(&b, ", %d closed idle by the server (FIN %s after the SYN)", len(finAfter), span(finAfter))
	}
	if ae.Checked > 0 {
		fmt.Fprintf(&b, ", %d found closed and dropped by the DX before reuse", ae.Checked)
	}
	return b.String()
}

// timeline gives the packets that matter of an arm's pooled connections,
// one entry per kind of event with how many connections it concerned.
func (ae *poolArmEvidence) timeline(e *scenario.Evidence) []report.Entry {
	if len(ae.Pool) == 0 {
		return nil
	}
	name := "DX " + ae.Arm.Name
	acked := 0
	var probes, rx, finDeferred, finPlain []time.Time
	var rxWait, finAfterRx, finAfterSYN []time.Duration
	for i, h := range ae.Pool {
		if i < ae.Initial && len(h.ACKs) > 0 {
			acked++
		}
		idleFIN := h.idleClose()
		if len(h.Probes) > 0 && (h.Data.IsZero() || h.Probes[0].Before(h.Data)) {
			probes = append(probes, h.Probes[0])
		}
		switch {
		case ae.deferred(h):
			r := h.lastSYNACK()
			rx, rxWait = append(rx, r), append(rxWait, r.Sub(h.SYN))
			if idleFIN && h.SrvFIN.After(r) {
				finDeferred, finAfterRx = append(finDeferred, h.SrvFIN), append(finAfterRx, h.SrvFIN.Sub(r))
			}
		case idleFIN && h.synackRetransmits() == 0:
			finPlain, finAfterSYN = append(finPlain, h.SrvFIN), append(finAfterSYN, h.SrvFIN.Sub(h.SYN))
		}
	}
	out := []report.Entry{e.Entry(ae.Pool[0].SYN, "lb", "%s opens %d pooled connections to server:%d (SYN, SYN-ACK, ACK; %d of their handshake ACKs reach the server) and sends no request on them",
		name, ae.Initial, ae.Arm.Port, acked)}
	if len(probes) > 0 {
		out = append(out, e.Entry(slices.MinFunc(probes, time.Time.Compare), "lb", "%s sends TCP keep-alive probes on %d idle pooled connections", name, len(probes)))
	}
	if len(rx) > 0 {
		out = append(out, e.Entry(slices.MinFunc(rx, time.Time.Compare), "server",
			"server:%d retransmits the SYN-ACK of %d idle deferred connections %s after their SYN, its only retransmit; the DX's ACK completes the deferred accept",
			ae.Arm.Port, len(rx), span(rxWait)))
		out = append(out, ae.acceptEntries(e)...)
	}
	if len(finDeferred) > 0 {
		out = append(out, e.Entry(slices.MinFunc(finDeferred, time.Time.Compare), "server",
			"server:%d closes %d idle connections (FIN) %s after their deferred accept; the DX does not notice", ae.Arm.Port, len(finDeferred), span(finAfterRx)))
	}
	if len(finPlain) > 0 {
		out = append(out, e.Entry(slices.MinFunc(finPlain, time.Time.Compare), "server",
			"server:%d closes %d idle pooled connections (FIN) %s after their handshake; the DX does not notice", ae.Arm.Port, len(finPlain), span(finAfterSYN)))
	}
	return out
}

// span renders the range of ds ("31.5 s" or "31.5–31.6 s").
func span(ds []time.Duration) string {
	lo, hi := slices.Min(ds), slices.Max(ds)
	if hi-lo < 50*time.Millisecond {
		return scenario.Tenths(lo)
	}
	return fmt.Sprintf("%.1f–%.1f s", lo.Seconds(), hi.Seconds())
}

// acceptEntries show, from the server's socket samples, one deferred
// connection's socket going from SYN-RECV (a request socket, invisible to
// the application) to ESTAB: the deferred accept.
func (ae *poolArmEvidence) acceptEntries(e *scenario.Evidence) []report.Entry {
	for _, h := range ae.Pool {
		if !ae.deferred(h) {
			continue
		}
		l := e.Socket("server", h.Srv, h.Cli)
		var recv, estab *scenario.Span
		for i := range l.Spans {
			switch sp := &l.Spans[i]; {
			case sp.State == sockdiag.SynRecv && recv == nil:
				recv = sp
			case sp.State == sockdiag.Established && recv != nil && estab == nil:
				estab = sp
			}
		}
		if recv == nil || estab == nil {
			continue
		}
		return []report.Entry{
			e.Entry(recv.From, "server", "server:%d: the socket of pooled connection %s is SYN-RECV (a request socket the application cannot accept)", ae.Arm.Port, h.Cli),
			e.Entry(estab.From, "server", "server:%d: the socket of %s turns ESTAB %s after the SYN: accepted, with nothing to read", ae.Arm.Port, h.Cli, scenario.Tenths(estab.From.Sub(h.SYN))),
		}
	}
	return nil
}
