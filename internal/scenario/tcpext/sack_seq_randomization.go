package tcpext

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// sack-seq-randomization: a firewall randomizes the server's sequence
// numbers (Cisco ASA's default) and translates SEQ and ACK but not the
// SACK blocks of the client's ACKs; on a path that loses some of the
// server's data, the server is fed SACK blocks far outside its window
// (docs/field-failures.md#sack-seq-randomization). Three downloads run one
// after the other through the same lossy path: behind the box as it is,
// behind a box that translates the blocks too, and with SACK off on the
// client. Kernel counters are read in both namespaces around each.

const (
	sackLeftPort      = 8401 // seq-randomize, SACK blocks left
	sackRewrittenPort = 8402 // seq-randomize, SACK blocks translated
	sackDownload      = 2 << 20
	sackDeadline      = 12 * time.Second // one download's bound
	armSACKLeft       = "SACK blocks left"
	armSACKRewritten  = "SACK blocks translated"
	armSACKOff        = "tcp_sack=0 on the client"
	sackServerLog     = "server-counters"
	sackClientLog     = "client-counters"
)

const sackProfile = `name: sack-seq-randomization
description: >-
  TCP sequence number randomization as a Cisco ASA does it, on the server's
  sequence numbers, twice: port 8401 leaves the SACK blocks of the client's
  ACKs untranslated (the ASA default), port 8402 translates them too. 2 % of
  the server's data segments are lost on the way, so that the client has
  something to SACK.
sources:
  - "Cisco, 'Disable TCP Sequence Randomization', https://docs.manage.security.cisco.com/cdfmc/t_disable_tcp_sequence_randomization.html"
  - "docs/field-failures.md#sack-seq-randomization"
behaviors:
  - type: seq-randomize
    match: {protocol: tcp, port: 8401}
    side: server
  - type: seq-randomize
    match: {protocol: tcp, port: 8402}
    side: server
    rewrite_sack: true
  - type: loss
    match: {direction: downstream, tcp_flags: [data]}
    p: 2%
`

var sackArms = []arm{
	{name: armSACKLeft, port: sackLeftPort, change: "port 8401: seq-randomize on the server's side, SACK blocks left as the client wrote them (the built-in asa-seq-randomize)"},
	{name: armSACKRewritten, port: sackRewrittenPort, change: "port 8402: the same box translating the SACK blocks too"},
	{name: armSACKOff, port: sackLeftPort, change: "port 8401 again, with net.ipv4.tcp_sack=0 in the client's namespace: no SACK blocks to mangle"},
}

// The counters read around each download: the server is the sender that
// receives the SACK blocks, the client the receiver that writes them.
var (
	sackServerCounters = []string{"Tcp.RetransSegs", "TCPTimeouts", "TCPSpuriousRTOs", "TCPLossProbes", "TCPFastRetrans",
		"TCPSackRecovery", "TCPRenoRecovery", "TCPSACKDiscard", "TCPDSACKIgnoredOld", "TCPDSACKIgnoredNoUndo",
		"TCPDSACKIgnoredDubious", "TCPSACKReneging", "TCPDSACKRecv", "TCPLossUndo"}
	sackClientCounters = []string{"TCPDSACKOldSent", "TCPDSACKOfoSent", "TCPOFOQueue", "Tcp.InSegs"}
)

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "sack-seq-randomization",
		Summary: "a firewall randomizing sequence numbers leaves SACK blocks untranslated: loss recovery falls back to timeouts",
		Description: "A Cisco ASA randomizes the initial sequence number of every connection and translates the sequence and " +
			"acknowledgment numbers, but not the SACK blocks in the TCP options; Cisco's documentation says it \"effectively breaks " +
			"TCP SACK\". On a path that loses 2 % of the server's data, the client's SACK blocks reach the server in the randomized " +
			"space, far outside its window. The run downloads 2 MiB three times, one after the other: behind that box, behind a box " +
			"that translates the blocks too, and with SACK turned off on the client, and reads the kernel's counters in the server's " +
			"and the client's namespace around each download to show what the server made of the blocks.",
		ProfileYAML: sackProfile,
		Budget:      25 * time.Second,
		Drive:       driveSACK,
		Judge:       judgeSACK,
	})
}

func driveSACK(c *scenario.Context) error {
	if _, err := c.Serve("server", "serve", "--listen", scenario.Addr("server", sackLeftPort),
		"--listen", scenario.Addr("server", sackRewrittenPort), "--keepalive-timeout", "0"); err != nil {
		return err
	}
	server, err := c.KernelLog("server", sackServerLog)
	if err != nil {
		return err
	}
	// A namespace may only pick among the congestion controls the host
	// allows: say which one the sender ran.
	if cc, err := c.Exec("server", 3*time.Second, "sysctl", "-n", "net.ipv4.tcp_congestion_control"); err == nil {
		c.Note("The server (the sender) ran congestion control %s, the lab machine's default.", strings.TrimSpace(cc.Stdout))
	}
	client, err := c.KernelLog("client", sackClientLog)
	if err != nil {
		return err
	}
	for _, a := range sackArms {
		if a.name == armSACKOff {
			if err := c.Sysctl("client", "net.ipv4.tcp_sack", "0", "the usual workaround: the client offers no SACK, so there are no blocks to mangle"); err != nil {
				return err
			}
		}
		for _, l := range []struct {
			log      *scenario.KernelLog
			counters []string
		}{{server, sackServerCounters}, {client, sackClientCounters}} {
			if err := l.log.Netstat(a.name+" start", l.counters); err != nil {
				return err
			}
		}
		download(c, a)
		for _, l := range []struct {
			log      *scenario.KernelLog
			counters []string
		}{{server, sackServerCounters}, {client, sackClientCounters}} {
			if err := l.log.Netstat(a.name+" end", l.counters); err != nil {
				return err
			}
		}
	}
	return nil
}

// download fetches sackDownload bytes on a new connection to a.port.
func download(c *scenario.Context, a arm) {
	c.RunClient(scenario.ClientResult{Name: "client :" + fmt.Sprint(a.port), Arm: a.name}, scenario.Addr("server", a.port), 2*time.Second,
		func(conn *net.TCPConn, r *scenario.ClientResult) {
			c.Step("client", "[%s] downloads %s", a.name, scenario.ByteSize(sackDownload))
			conn.SetDeadline(time.Now().Add(sackDeadline))
			var err error
			r.Status, r.Bytes, err = scenario.Get(conn, bufio.NewReader(conn), fmt.Sprintf("/bytes/%d", sackDownload), true, -1)
			r.SetErr(err)
		})
}

// sackResult is what the evidence shows of one download.
type sackResult struct {
	arm
	r                  scenario.ClientResult
	took               time.Duration
	server, client     map[string]int64 // counter growth during the download
	lost, left, transl int              // data segments lost; ACKs whose SACK blocks the box left or translated
	firstLeft          time.Time
	complete           bool
	// The packets the ladder marks: the first data segment lost, the
	// first ACK whose blocks the box left, the first retransmission
	// after a silence of a retransmission timeout or more.
	firstLost, firstLeftACK, firstTimeout *report.Packet
}

func judgeSACK(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	res := map[string]*sackResult{}
	for _, a := range sackArms {
		r, bad := e.ArmClient(a.name, a.name+": the client")
		if bad != nil {
			return *bad
		}
		s := &sackResult{arm: a, r: r, took: r.End.Sub(r.Start), complete: r.Err == "" && r.Bytes == sackDownload,
			server: deltas(e, sackServerLog, a.name, sackServerCounters), client: deltas(e, sackClientLog, a.name, sackClientCounters)}
		pkts := e.Packets(r.Local, r.Remote)
		for i := range pkts {
			p := &pkts[i]
			switch {
			case p.Dropped && strings.HasPrefix(p.Note, "dropped by loss"):
				if s.lost == 0 {
					s.firstLost = p
				}
				s.lost++
			case strings.Contains(p.Note, "SACK blocks left"):
				if s.left == 0 {
					s.firstLeft, s.firstLeftACK = p.When(), p
				}
				s.left++
			case strings.Contains(p.Note, "SACK blocks translated"):
				s.transl++
			}
		}
		s.firstTimeout = timeoutRetransmission(pkts, r.Remote)
		res[a.name] = s
	}
	left, fixed, off := res[armSACKLeft], res[armSACKRewritten], res[armSACKOff]
	v.Ladder = []report.Conn{{A: left.r.Local, B: left.r.Remote}}
	v.Marks = mark(v.Marks, left.firstLost, "lost on the path: the client SACKs what follows")
	v.Marks = mark(v.Marks, left.firstLeftACK, "SACK blocks left in the randomized space: the server discards them")
	v.Marks = mark(v.Marks, left.firstTimeout, "retransmitted only after a timeout")

	bogus := left.server["TCPSACKDiscard"] + left.server["TCPDSACKIgnoredOld"] + left.server["TCPDSACKIgnoredNoUndo"] +
		left.server["TCPDSACKIgnoredDubious"] + left.server["TCPSACKReneging"]
	// The failure: the box left blocks in the randomized space, the server
	// threw them away (or, inside its window, mistook them), and the
	// download that had them took several times as long as the one whose
	// blocks were translated, recovering by timeouts.
	collapsed := left.took >= 3*fixed.took && left.server["TCPTimeouts"] > fixed.server["TCPTimeouts"]
	failed := left.left > 0 && bogus > 0 && collapsed
	v.Runs = []report.Run{
		{Name: left.name, Change: left.change, Outcome: scenario.OutcomeIf(failed), Reason: left.describe()},
		{Name: fixed.name, Change: fixed.change, Outcome: scenario.OutcomeIf(fixed.left > 0), Reason: fixed.describe()},
		{Name: off.name, Change: off.change, Outcome: scenario.OutcomeIf(off.left > 0), Reason: off.describe()},
	}
	v.Results = sackTable(left, fixed, off)
	for _, s := range []*sackResult{left, fixed, off} {
		label := "[" + s.name + "]"
		if !s.firstLeft.IsZero() {
			v.Timeline = append(v.Timeline, e.Entry(s.firstLeft, "device", "%s first ACK whose SACK blocks the box left in the randomized space (%d in all)", label, s.left))
		}
		v.Timeline = append(v.Timeline, e.Entry(s.r.End, "client", "%s download ended after %s: %s", label, scenario.Secs(s.took), s.r.Describe()))
	}
	ratio := float64(left.took) / float64(max(fixed.took, time.Millisecond))
	switch {
	case failed:
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("with SACK blocks left untranslated the %s download took %s, %.0f times as long as with the blocks translated (%s): "+
			"the server discarded or ignored %d SACK and D-SACK blocks and recovered by %d retransmission timeouts (%d with the blocks translated); "+
			"with SACK off on the client it took %s",
			scenario.ByteSize(sackDownload), scenario.Secs(left.took), ratio, scenario.Secs(fixed.took), bogus,
			left.server["TCPTimeouts"], fixed.server["TCPTimeouts"], scenario.Secs(off.took))
	default:
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("SACK recovery was not broken: %s: %s; %s: %s", left.name, left.describe(), fixed.name, fixed.describe())
	}
	v.Notes = append(v.Notes, "Discarded blocks: TCPSACKDiscard counts SACK blocks outside the sender's window; TCPDSACKIgnoredOld/NoUndo/Dubious count "+
		"D-SACK blocks (a duplicate reported back) it could not use; TCPSACKReneging counts blocks inside the window that were taken back, "+
		"which blocks shifted by a small offset produce. Counters are the growth in each namespace during that download alone.",
		"The ladder shows each segment as its receiver got it: the server's sequence numbers randomized, the client's acknowledgments "+
			"translated back into the server's own space, so that measured from the randomized ISN they read as huge numbers; the SACK "+
			"blocks, which the ladder does not draw, stayed in the randomized space.")
	return v
}

// timeoutRetransmission is the first segment from server in pkts that
// carries data sent before and leaves after 200 ms (Linux's minimum
// retransmission timeout) without anything from server: a retransmission
// on a timeout rather than on SACK or duplicate ACKs.
func timeoutRetransmission(pkts []report.Packet, server netip.AddrPort) *report.Packet {
	var highest uint32
	var last time.Time
	seen := false
	for i := range pkts {
		p := &pkts[i]
		if !report.SameEnd(p.Src, server) || p.Injected {
			continue
		}
		end := p.Seq + uint32(p.Len)
		if p.Len > 0 && seen && int32(end-highest) <= 0 && p.When().Sub(last) >= 200*time.Millisecond {
			return p
		}
		if !seen || int32(end-highest) > 0 {
			highest, seen = end, true
		}
		last = p.When()
	}
	return nil
}

// describe is one download's line: what it took and what the server made
// of the blocks.
func (s *sackResult) describe() string {
	got := fmt.Sprintf("%s in %s", scenario.ByteSize(uint32(s.r.Bytes)), scenario.Secs(s.took))
	if !s.complete {
		got = fmt.Sprintf("incomplete: %s of %s after %s (%s)", scenario.ByteSize(uint32(s.r.Bytes)), scenario.ByteSize(sackDownload), scenario.Secs(s.took), s.r.Err)
	}
	return fmt.Sprintf("%s; %d data segments lost on the path, %d ACKs with SACK blocks left in the randomized space, %d translated; "+
		"server: %d segments retransmitted, %d timeouts, %d SACK blocks discarded, %d D-SACK ignored, %d reneging",
		got, s.lost, s.left, s.transl, s.server["Tcp.RetransSegs"], s.server["TCPTimeouts"], s.server["TCPSACKDiscard"],
		s.server["TCPDSACKIgnoredOld"]+s.server["TCPDSACKIgnoredNoUndo"]+s.server["TCPDSACKIgnoredDubious"], s.server["TCPSACKReneging"])
}

// sackTable is the report's table: one row per download.
func sackTable(rs ...*sackResult) *report.Table {
	t := &report.Table{Columns: []string{"download", "took", "lost on the path", "ACKs with SACK left / translated",
		"server: retransmitted", "timeouts (spurious)", "loss probes", "SACK discarded", "D-SACK ignored", "reneging", "recoveries SACK / Reno",
		"client: D-SACKs sent"}}
	for _, s := range rs {
		took := scenario.Secs(s.took)
		if !s.complete {
			took += " (incomplete)"
		}
		sv, cl := s.server, s.client
		t.Rows = append(t.Rows, []string{s.name, took, fmt.Sprint(s.lost), fmt.Sprintf("%d / %d", s.left, s.transl),
			fmt.Sprint(sv["Tcp.RetransSegs"]), fmt.Sprintf("%d (%d)", sv["TCPTimeouts"], sv["TCPSpuriousRTOs"]), fmt.Sprint(sv["TCPLossProbes"]),
			fmt.Sprint(sv["TCPSACKDiscard"]), fmt.Sprint(sv["TCPDSACKIgnoredOld"] + sv["TCPDSACKIgnoredNoUndo"] + sv["TCPDSACKIgnoredDubious"]),
			fmt.Sprint(sv["TCPSACKReneging"]), fmt.Sprintf("%d / %d", sv["TCPSackRecovery"], sv["TCPRenoRecovery"]),
			fmt.Sprint(cl["TCPDSACKOldSent"] + cl["TCPDSACKOfoSent"])})
	}
	return t
}
