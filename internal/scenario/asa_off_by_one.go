package scenario

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// asa-off-by-one: FIELD-FAILURES.md §4. A client cancels a download behind
// a Cisco ASA, which forwards the FIN, sends the server one RST one below
// the sequence number the server expects, and forgets the connection. Three
// variants run at once in one lab, one port each, so the run shows which
// case the server's kernel falls into.

type asaArm struct {
	name   string
	port   int
	change string
}

var asaOffByOneArms = []asaArm{
	{"offset -1, FIN forwarded", 8001, "the 2015 ASA exactly (profile cisco-asa): FIN forwarded, RST at RCV.NXT-1"},
	{"offset -2, FIN forwarded", 8002, "the same teardown with the RST two below RCV.NXT"},
	{"FIN lost, offset -1", 8003, "the FIN never reaches the server (profile cisco-asa-lost-fin)"},
}

const asaOffByOneProfile = `name: asa-off-by-one
description: >-
  Three Cisco ASA teardowns side by side, one per server port: 8001 is the
  built-in cisco-asa (FIN forwarded, RST at RCV.NXT-1, forget), 8002 the same
  with the RST at RCV.NXT-2, 8003 the built-in cisco-asa-lost-fin (FIN
  swallowed, RST at RCV.NXT-1, forget).
sources:
  - "Devon H. O'Dell, 'Debugging the Internet' (2015), seeds/004"
  - "RFC 5961 section 3.2; Linux tcp_reset_check() (FIELD-FAILURES.md)"
behaviors:
  - type: asa-teardown
    match: {protocol: tcp, port: 8001}
    on: [fin]
    fin: forward
    offset: -1
  - type: asa-teardown
    match: {protocol: tcp, port: 8002}
    on: [fin]
    fin: forward
    offset: -2
  - type: asa-teardown
    match: {protocol: tcp, port: 8003}
    on: [fin]
    fin: swallow
    offset: -1
`

func init() {
	Register(&Scenario{
		Name:    "asa-off-by-one",
		Summary: "Cisco ASA FIN + off-by-one RST after a cancelled download: which case the server's kernel falls into",
		Description: "A client behind a Cisco ASA cancels a download. The ASA forwards the FIN, sends the server a single RST " +
			"one below the sequence number the server expects, and forgets the connection, dropping the server's challenge " +
			"ACKs and retransmissions (seeds/004, 2015: Varnish sockets stuck in CLOSE_WAIT). Current Linux accepts a RST at " +
			"RCV.NXT-1 after the peer's FIN; it still hangs with another offset or when the FIN is lost. Three variants run " +
			"side by side, one server port each; the verdict says which case the server's kernel fell into in each.",
		ProfileYAML: asaOffByOneProfile,
		Sysctls: []Sysctl{{Host: "server", Key: "net.ipv4.tcp_retries2", Value: "4",
			Why: "a server socket retransmitting to nobody gives up after about 6.2 s (200 ms × (2^5−1)) instead of about 15 minutes (default 15)"}},
		Budget: 20 * time.Second,
		Drive:  driveASAOffByOne,
		Judge:  judgeASAOffByOne,
	})
}

func driveASAOffByOne(c *Context) error {
	flags := []string{"--keepalive-timeout", "0"}
	for _, a := range asaOffByOneArms {
		flags = append(flags, "--listen", Addr("server", a.port))
	}
	if _, err := c.Serve("server", "serve", flags...); err != nil {
		return err
	}
	names := make([]string, len(asaOffByOneArms))
	ports := make([]int, len(asaOffByOneArms))
	for i, a := range asaOffByOneArms {
		names[i], ports[i] = a.name, a.port
	}
	if err := cancelDownloads(c, names, ports); err != nil {
		return err
	}
	return waitServerSocketsGone(c, ports, 12*time.Second,
		"the server's sockets to close (a stuck one ends at tcp_retries2, about 6 s)")
}

// cancelDownloads is the shared drive of the ASA scenarios: one capture
// record per segment on both hosts, the server's sockets sampled, and one
// cancelled download per arm (names[i] on ports[i]), all at once.
func cancelDownloads(c *Context, names []string, ports []int) error {
	for _, h := range []string{"client", "server"} {
		if err := c.SegmentsOnly(h); err != nil {
			return err
		}
	}
	if err := c.Sample("server", sockdiag.Filter{}, 0); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cancelDownload(c, fmt.Sprintf("client :%d", ports[i]), names[i], ports[i], 16<<10)
		}()
	}
	wg.Wait()
	return nil
}

// waitServerSocketsGone waits until the server has no connected socket
// (TIME-WAIT aside) on ports, or timeout; then samples a little longer so
// the evidence shows them gone.
func waitServerSocketsGone(c *Context, ports []int, timeout time.Duration, what string) error {
	live := sockdiag.StateMask(sockdiag.Established, sockdiag.SynRecv, sockdiag.FinWait1, sockdiag.FinWait2,
		sockdiag.CloseWait, sockdiag.LastAck, sockdiag.Closing)
	_, err := c.WaitFor(what, timeout, func() bool {
		socks, err := c.Sockets("server", sockdiag.Filter{States: live})
		if err != nil {
			return false
		}
		return !slices.ContainsFunc(socks, func(s sockdiag.Socket) bool { return slices.Contains(ports, int(s.Src.Port())) })
	})
	if err != nil {
		return err
	}
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

func judgeASAOffByOne(e *Evidence) Verdict {
	var v Verdict
	var stuck, cases []string
	offByOne := false
	for _, a := range asaOffByOneArms {
		r, bad := armClient(e, a.name, fmt.Sprintf("variant %q: its client", a.name))
		if bad != nil {
			return *bad
		}
		t := analyzeTeardown(e, r, "serve")
		label := fmt.Sprintf("[:%d]", a.port)
		v.Timeline = append(v.Timeline, t.timeline(e, label)...)
		v.Ladder = append(v.Ladder, t.ladderConn())
		what := describeASACase(&t)
		failed := t.rst != nil && t.offset != 0 && t.stuck
		if failed {
			stuck = append(stuck, fmt.Sprintf("%s: %s", a.name, what))
			offByOne = true
		}
		cases = append(cases, fmt.Sprintf("%s: %s", a.name, what))
		v.Runs = append(v.Runs, report.Run{Name: a.name, Change: a.change, Outcome: outcomeIf(failed), Reason: what})
	}
	if offByOne {
		v.Outcome = report.Reproduced
		v.Reason = "server socket left stuck after the ASA's off-by-one RST — " + strings.Join(stuck, "; ")
		if first := v.Runs[0]; first.Outcome == report.NotReproduced {
			v.Reason += ". The exact 2015 sequence did not hang this kernel: " + first.Reason
		}
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = "no server socket stayed stuck — " + strings.Join(cases, "; ")
	}
	return v
}

// describeASACase says which case one cancelled download fell into.
func describeASACase(t *teardown) string {
	var b strings.Builder
	switch {
	case t.rst == nil && t.clientRST:
		b.WriteString("no RST from the device; the client's own FIN and RST reached the server")
	case t.rst == nil:
		b.WriteString("no RST from the device")
	case t.finDelivered:
		fmt.Fprintf(&b, "FIN delivered, then RST at RCV.NXT%+d (seq %s, server expected %s)", t.offset, t.rel(t.rst.Seq), t.rel(t.rcvNxt))
	default:
		fmt.Fprintf(&b, "FIN lost, RST at RCV.NXT%+d (seq %s, server expected %s)", t.offset, t.rel(t.rst.Seq), t.rel(t.rcvNxt))
	}
	b.WriteString(": ")
	if t.rst != nil && !t.stuck && (t.life.Seen || t.unsampled) && !t.stillThere && t.lived < 500*time.Millisecond {
		b.WriteString("RST accepted, ")
	}
	b.WriteString(t.fate())
	if s := t.logText(); s != "" {
		fmt.Fprintf(&b, " (serve: %s after %s)", s, secs(t.logErrAfter))
	}
	return b.String()
}
