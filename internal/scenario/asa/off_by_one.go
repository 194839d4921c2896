package asa

import (
	"fmt"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// asa-off-by-one (docs/field-failures.md#cisco-asa-off-by-one-rst). A
// client cancels a download behind a Cisco ASA, which forwards the FIN,
// sends the server one RST one below the sequence number the server
// expects, and forgets the connection. Three variants run at once in one
// lab, one port each, so the run shows which case the server's kernel
// falls into.

type offByOneArm struct {
	name   string
	port   int
	change string
}

var offByOneArms = []offByOneArm{
	{"offset -1, FIN forwarded", 8001, "the 2015 ASA exactly (profile cisco-asa): FIN forwarded, RST at RCV.NXT-1"},
	{"offset -2, FIN forwarded", 8002, "the same teardown with the RST two below RCV.NXT"},
	{"FIN lost, offset -1", 8003, "the FIN never reaches the server (profile cisco-asa-lost-fin)"},
}

const offByOneProfile = `name: asa-off-by-one
description: >-
  Three Cisco ASA teardowns side by side, one per server port: 8001 is the
  built-in cisco-asa (FIN forwarded, RST at RCV.NXT-1, forget), 8002 the same
  with the RST at RCV.NXT-2, 8003 the built-in cisco-asa-lost-fin (FIN
  swallowed, RST at RCV.NXT-1, forget).
sources:
  - "Devon H. O'Dell, 'Debugging the Internet', 2015, https://9vx.org/post/debugging-the-internet/"
  - "RFC 5961, 2010, section 3.2, https://www.rfc-editor.org/rfc/rfc5961#section-3.2; Linux tcp_reset_check(): docs/field-failures.md#what-linux-does"
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
	scenario.Register(&scenario.Scenario{
		Name:    "asa-off-by-one",
		Summary: "Cisco ASA FIN + off-by-one RST after a cancelled download: which case the server's kernel falls into",
		Description: "A client behind a Cisco ASA cancels a download. The ASA forwards the FIN, sends the server a single RST " +
			"one below the sequence number the server expects, and forgets the connection, dropping the server's challenge " +
			"ACKs and retransmissions (Devon H. O'Dell, 'Debugging the Internet', 2015: Varnish sockets stuck in CLOSE_WAIT). Current Linux accepts a RST at " +
			"RCV.NXT-1 after the peer's FIN; it still hangs with another offset or when the FIN is lost. Three variants run " +
			"side by side, one server port each; the verdict says which case the server's kernel fell into in each.",
		ProfileYAML: offByOneProfile,
		Sysctls: []scenario.Sysctl{{Host: "server", Key: "net.ipv4.tcp_retries2", Value: "4",
			Why: "a server socket retransmitting to nobody gives up after about 6.2 s (200 ms × (2^5−1)) instead of about 15 minutes (default 15)"}},
		Budget: 20 * time.Second,
		Drive:  driveOffByOne,
		Judge:  judgeOffByOne,
	})
}

func driveOffByOne(c *scenario.Context) error {
	flags := []string{"--keepalive-timeout", "0"}
	for _, a := range offByOneArms {
		flags = append(flags, "--listen", scenario.Addr("server", a.port))
	}
	if _, err := c.Serve("server", "serve", flags...); err != nil {
		return err
	}
	names := make([]string, len(offByOneArms))
	ports := make([]int, len(offByOneArms))
	for i, a := range offByOneArms {
		names[i], ports[i] = a.name, a.port
	}
	if err := cancelDownloads(c, names, ports); err != nil {
		return err
	}
	return waitServerSocketsGone(c, ports, 12*time.Second,
		"the server's sockets to close (a stuck one ends at tcp_retries2, about 6 s)")
}

func judgeOffByOne(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	var stuck, cases []string
	offByOne := false
	for _, a := range offByOneArms {
		r, bad := e.ArmClient(a.name, fmt.Sprintf("variant %q: its client", a.name))
		if bad != nil {
			return *bad
		}
		t := readDownload(e, r, "serve")
		label := fmt.Sprintf("[:%d]", a.port)
		v.Timeline = append(v.Timeline, t.timeline(e, label)...)
		v.Ladder = append(v.Ladder, t.ladderConn())
		what := describeOffByOne(&t)
		failed := t.rst != nil && t.offset != 0 && t.stuck
		if failed {
			stuck = append(stuck, fmt.Sprintf("%s: %s", a.name, what))
			offByOne = true
		}
		cases = append(cases, fmt.Sprintf("%s: %s", a.name, what))
		v.Runs = append(v.Runs, report.Run{Name: a.name, Change: a.change, Outcome: scenario.OutcomeIf(failed), Reason: what})
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

// describeOffByOne says which case one cancelled download fell into.
func describeOffByOne(t *download) string {
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
		fmt.Fprintf(&b, " (serve: %s after %s)", s, scenario.Secs(t.logErrAfter))
	}
	return b.String()
}
