// Package pathmtu holds the scenarios of links narrower than the hosts
// think: path MTU discovery and what breaks it.
package pathmtu

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// pmtud-black-hole: a link in the path carries 1400-byte packets, the
// hosts sit on 1500-byte links, and the ICMP that path MTU discovery
// needs is filtered (docs/field-failures.md#pmtud-black-hole). The
// handshake and a small answer pass; a 40 kB answer hangs, over IPv4
// and IPv6. Three A/B arms show the ways out: the router's ICMP let
// through (RFC 1191, RFC 8201), net.ipv4.tcp_mtu_probing=1 on the server
// (RFC 4821 probing: it finds the black hole itself, after some
// timeouts), and MSS clamping at the device. Each arm has its own server
// port; the arms run one after the other so that neither the server's
// PMTU cache nor its sysctl reaches another arm.

const (
	linkMTU      = 1400
	smallPath    = "/bytes/500"
	largeSize    = 40_000
	largePath    = "/bytes/40kb"
	holeWait     = 4 * time.Second  // how long the black hole's clients wait
	probeWait    = 14 * time.Second // PLPMTUD needs several retransmission timeouts
	fixedWait    = 4 * time.Second
	router4      = "198.18.0.254" // the address the device answers from, as the router in front of the link
	router6      = "2001:db8::fe"
	tooBigNote   = "mtu: too big for the link"
	clampNote    = "mss-clamp: MSS lowered"
	netstatLog   = "server-netstat"
	sysctlProbes = "net.ipv4.tcp_mtu_probing"
)

// pmtuArm is one arm: its server port, what the device or the server does
// there, how long its clients wait for the large answer.
type pmtuArm struct {
	name, change string
	port         int
	wait         time.Duration
	expect       report.Outcome
}

var (
	armHole    = pmtuArm{"black hole", "a 1400-byte link; too-big packets dropped, ICMP filtered (port 8501)", 8501, holeWait, report.Reproduced}
	armClamp   = pmtuArm{"MSS clamp", "the device also clamps the SYNs' MSS to fit 1400 (mss-clamp mtu 1400; port 8502)", 8502, fixedWait, report.NotReproduced}
	armProbing = pmtuArm{"tcp_mtu_probing=1", "ICMP still filtered; net.ipv4.tcp_mtu_probing=1 on the server (port 8503)", 8503, probeWait, report.NotReproduced}
	armICMP    = pmtuArm{"ICMP allowed", "the device answers too-big packets as a router does: ICMP fragmentation needed / packet too big, MTU 1400 (port 8504)", 8504, fixedWait, report.NotReproduced}
	pmtuArms   = []pmtuArm{armHole, armClamp, armProbing, armICMP}
)

var pmtudProfile = fmt.Sprintf(`name: pmtud-black-hole-arms
description: >-
  A 1400-byte link between 1500-byte hosts, once per arm: port 8501 drops
  too-big packets and filters ICMP (the black hole, as the built-in
  pmtud-black-hole), 8502 also clamps the MSS, 8503 is the black hole again
  (the server probes there), 8504 answers like a router.
sources:
  - "RFC 2923 section 2.1, black hole detection: https://www.rfc-editor.org/rfc/rfc2923"
  - "docs/field-failures.md#pmtud-black-hole"
behaviors:
  - type: mss-clamp
    match: {protocol: tcp, port: %[1]d}
    mtu: %[5]d
  - type: mtu
    match: {port: %[2]d}
    mtu: %[5]d
    icmp: filter
  - type: mtu
    match: {port: %[1]d}
    mtu: %[5]d
    icmp: filter
  - type: mtu
    match: {port: %[3]d}
    mtu: %[5]d
    icmp: filter
  - type: mtu
    match: {port: %[4]d}
    mtu: %[5]d
    icmp: send
    router: [%[6]s, "%[7]s"]
`, armClamp.port, armHole.port, armProbing.port, armICMP.port, linkMTU, router4, router6)

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "pmtud-black-hole",
		Summary: "a 1400-byte link with ICMP filtered: small requests work, a large answer hangs (IPv4 and IPv6)",
		Description: "A link in the path carries 1400-byte packets while client and server sit on 1500-byte links, and a firewall " +
			"filters the ICMP \"fragmentation needed\" / ICMPv6 \"packet too big\" that path MTU discovery depends on. The " +
			"handshake and a 500-byte answer pass; the server's full-sized segments of a 40 kB answer are dropped without a " +
			"word, and the transfer hangs, over IPv4 and IPv6. The A/B arms, one after the other: the device clamping the MSS, " +
			"the server with net.ipv4.tcp_mtu_probing=1 (packetization-layer PMTUD finds the black hole after a few timeouts), " +
			"and the router's ICMP let through.",
		ProfileYAML: pmtudProfile,
		Budget:      24 * time.Second,
		Drive:       drivePMTUD,
		Judge:       judgePMTUD,
	})
}

func drivePMTUD(c *scenario.Context) error {
	var flags []string
	for _, a := range pmtuArms {
		flags = append(flags, "--listen", scenario.Addr("server", a.port), "--listen", scenario.Addr6("server", a.port))
	}
	if _, err := c.Serve("server", "serve", append(flags, "--keepalive-timeout", "60s", "--read-timeout", "60s")...); err != nil {
		return err
	}
	netstat, err := c.KernelLog("server", netstatLog)
	if err != nil {
		return err
	}
	// The black hole and the clamp share nothing: they run together.
	// Probing changes a server sysctl and the ICMP teaches the server a
	// path MTU, so those come after, alone, the ICMP arm last.
	runArms(c, armHole, armClamp)
	why := "packetization-layer PMTUD (RFC 4821) when a black hole is detected, for the " + armProbing.name + " arm only"
	if err := c.Sysctl("server", sysctlProbes, "1", why); err != nil {
		return err
	}
	counters := []string{"TCPMTUPFail", "TCPMTUPSuccess", "TCPTimeouts"}
	if err := netstat.Netstat("start", counters); err != nil {
		return err
	}
	runArms(c, armProbing)
	if err := netstat.Netstat("end", counters); err != nil {
		return err
	}
	if err := c.Sysctl("server", sysctlProbes, "0", "the default again for the "+armICMP.name+" arm"); err != nil {
		return err
	}
	runArms(c, armICMP)
	return nil
}

// runArms runs the IPv4 and IPv6 client of every arm at once.
func runArms(c *scenario.Context, arms ...pmtuArm) {
	var wg sync.WaitGroup
	for _, a := range arms {
		for _, addr := range []string{scenario.Addr("server", a.port), scenario.Addr6("server", a.port)} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pmtuClient(c, a, addr)
			}()
		}
	}
	wg.Wait()
}

// pmtuClient asks for a small answer, then for a large one on the same
// connection, waiting a.wait for it; a client that gives up aborts the
// connection, so that the server stops retransmitting into the hole.
func pmtuClient(c *scenario.Context, a pmtuArm, addr string) {
	family := "IPv4"
	if strings.HasPrefix(addr, "[") {
		family = "IPv6"
	}
	name := a.name + " " + family
	c.RunClient(scenario.ClientResult{Name: name, Arm: a.name}, addr, 2*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		br := bufio.NewReader(conn)
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := scenario.Get(conn, br, smallPath, false, -1); err != nil {
			r.SetErr(fmt.Errorf("small request: %w", err))
			return
		}
		start := time.Now()
		conn.SetDeadline(start.Add(a.wait))
		var err error
		r.Status, r.Bytes, err = scenario.Get(conn, br, largePath, false, -1)
		r.SetErr(err)
		took := time.Since(start)
		if err != nil {
			conn.SetLinger(0)
			c.Step(name, "gave up on the %d-byte answer after %s with %d bytes", largeSize, scenario.Secs(took), r.Bytes)
		} else {
			c.Step(name, "the %d-byte answer arrived in %s", largeSize, scenario.Secs(took))
		}
		r.Start = start // the row is about the large answer
	})
}

// pmtuConn is what the evidence shows of one connection.
type pmtuConn struct {
	r          scenario.ClientResult
	family     string
	smallOK    bool // the server logged the 500-byte answer as written
	drops      int  // the server's packets dropped at the link
	dropSize   int
	firstDrop  report.Packet
	icmp       []report.Packet // too-big messages the device sent about it
	clamped    []report.Packet // SYNs whose MSS the device lowered
	maxPassed  int             // the largest server packet that crossed
	resumed    *report.Packet  // the first server data packet to cross after the first drop
	done       bool            // the whole large answer arrived
	took       time.Duration
	smallBytes int64
}

func readPMTUConn(e *scenario.Evidence, r scenario.ClientResult) *pmtuConn {
	c := &pmtuConn{r: r, family: "IPv4", took: r.End.Sub(r.Start)}
	if r.Remote.Addr().Is6() {
		c.family = "IPv6"
	}
	c.done = r.Err == "" && r.Bytes == largeSize
	for _, ev := range e.ConnLog("serve", r.Local) {
		if ev.Event.Event == "response" && ev.Bytes == 500 {
			c.smallOK, c.smallBytes = true, ev.Bytes
		}
	}
	for _, p := range e.Packets(r.Local, r.Remote) {
		fromServer := report.SameEnd(p.Src, r.Remote)
		switch {
		case p.Dropped && fromServer && p.Note == tooBigNote:
			if c.drops == 0 {
				c.firstDrop = p
			}
			c.drops++
			c.dropSize = max(c.dropSize, p.Size)
		case p.Modified && p.Note == clampNote:
			c.clamped = append(c.clamped, p)
		case fromServer && !p.Dropped:
			c.maxPassed = max(c.maxPassed, p.Size)
			if c.drops > 0 && c.resumed == nil && p.Len > 0 {
				q := p
				c.resumed = &q
			}
		}
	}
	c.icmp = e.ICMPErrors(r.Local, r.Remote)
	return c
}

// hung is the black hole's signature on one connection: the small answer
// crossed, the large one did not, its packets were dropped at the link,
// and no ICMP told the server why.
func (c *pmtuConn) hung() bool {
	return c.smallOK && !c.done && c.drops > 0 && len(c.icmp) == 0
}

func (c *pmtuConn) largeText() string {
	if c.done {
		return fmt.Sprintf("the %d-byte answer arrived in %s", largeSize, scenario.Secs(c.took))
	}
	return fmt.Sprintf("%d of %d bytes after %s (%s)", c.r.Bytes, largeSize, scenario.Secs(c.took), c.r.Kind)
}

// text says what happened on the connection, for the arm's reason.
func (c *pmtuConn) text(a pmtuArm) string {
	var parts []string
	if !c.smallOK {
		parts = append(parts, "even the 500-byte answer failed")
	}
	switch {
	case c.drops == 0:
		parts = append(parts, "nothing dropped")
	case len(c.icmp) > 0 && c.icmp[0].ICMP.TooBig():
		parts = append(parts, fmt.Sprintf("%d server packets of up to %d bytes dropped at the %d-byte link, each answered with an ICMP %s to the server",
			c.drops, c.dropSize, linkMTU, c.icmp[0].ICMP))
	default:
		parts = append(parts, fmt.Sprintf("%d server packets of up to %d bytes dropped at the %d-byte link; no ICMP reached the server", c.drops, c.dropSize, linkMTU))
	}
	if len(c.clamped) > 0 {
		parts = append(parts, fmt.Sprintf("the MSS of %d SYNs clamped", len(c.clamped)))
	}
	if a == armProbing && c.resumed != nil {
		parts = append(parts, fmt.Sprintf("the server found the black hole %s after the first drop and went on with %d-byte packets",
			scenario.Secs(c.resumed.When().Sub(c.firstDrop.When())), c.resumed.Size))
	}
	if c.drops > 0 || len(c.clamped) > 0 {
		parts = append(parts, fmt.Sprintf("the largest server packet that crossed: %d bytes", c.maxPassed))
	}
	parts = append(parts, c.largeText())
	return c.family + ": " + strings.Join(parts, "; ")
}

func judgePMTUD(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	conns := map[string][]*pmtuConn{}
	for _, a := range pmtuArms {
		rs := e.Client(a.name)
		if len(rs) != 2 {
			return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("%s: %d clients recorded, want one per IP version", a.name, len(rs))}
		}
		slices.SortFunc(rs, func(a, b scenario.ClientResult) int { return a.Remote.Addr().BitLen() - b.Remote.Addr().BitLen() }) // IPv4 first
		for _, r := range rs {
			if !r.Local.IsValid() {
				return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("%s: a client never connected (%s)", r.Name, r.Err)}
			}
			conns[a.name] = append(conns[a.name], readPMTUConn(e, r))
		}
	}
	for _, a := range pmtuArms {
		failed := false
		var texts []string
		for _, c := range conns[a.name] {
			if a == armHole {
				failed = failed || c.hung()
			} else {
				failed = failed || !c.done
			}
			texts = append(texts, c.text(a))
			v.Timeline = append(v.Timeline, c.timeline(e, a)...)
		}
		if a == armHole { // the black hole is reproduced when both IP versions hung
			failed = conns[a.name][0].hung() && conns[a.name][1].hung()
		}
		reason := strings.Join(texts, ". ")
		if a == armProbing {
			reason += probingCounters(e)
		}
		v.Runs = append(v.Runs, report.Run{Name: a.name, Change: a.change, Expected: a.expect, Outcome: scenario.OutcomeIf(failed), Reason: reason})
	}
	for _, c := range append(conns[armHole.name], conns[armClamp.name][0], conns[armProbing.name][0], conns[armICMP.name][0]) {
		v.Ladder = append(v.Ladder, report.Conn{A: c.r.Local, B: c.r.Remote})
		v.Marks = append(v.Marks, c.marks(c.r.Arm == armProbing.name)...)
	}
	hole := v.Runs[0]
	v.Outcome = hole.Outcome
	if v.Outcome == report.Reproduced {
		v.Reason = "the black hole: the handshake and a 500-byte answer crossed, the 40 kB answer hung over both IP versions — " + hole.Reason
	} else {
		v.Reason = "no black hole: " + hole.Reason
	}
	var fixes []string
	for _, r := range v.Runs[1:] {
		fixes = append(fixes, fmt.Sprintf("%s: %s", r.Name, map[report.Outcome]string{report.NotReproduced: "the answers arrived", report.Reproduced: "still hung"}[r.Outcome]))
	}
	v.Reason += ". The A/B arms — " + strings.Join(fixes, "; ") + "."
	return v
}

// probingCounters reads the server's PLPMTUD counters over the probing arm.
func probingCounters(e *scenario.Evidence) string {
	var parts []string
	for _, k := range []string{"TCPTimeouts", "TCPMTUPFail", "TCPMTUPSuccess"} {
		if d, ok := e.NetstatDelta(netstatLog, k); ok {
			parts = append(parts, fmt.Sprintf("%s +%d", k, d))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ". The server's counters over the arm: " + strings.Join(parts, ", ")
}

// marks are the packets of the connection the verdict rests on; probing
// says the server found the path MTU by itself.
func (c *pmtuConn) marks(probing bool) []report.Mark {
	var out []report.Mark
	for _, p := range c.clamped {
		out = append(out, p.Mark(fmt.Sprintf("MSS clamped to fit the %d-byte link", linkMTU)))
	}
	if c.drops > 0 {
		note := fmt.Sprintf("%d bytes: too big for the %d-byte link", c.firstDrop.Size, linkMTU)
		if len(c.icmp) == 0 {
			note += "; no ICMP comes back"
		}
		out = append(out, c.firstDrop.Mark(note))
	}
	if len(c.icmp) > 0 {
		out = append(out, c.icmp[0].Mark("the router's answer: "+c.icmp[0].ICMP.String()))
	}
	switch {
	case c.resumed != nil && probing:
		out = append(out, c.resumed.Mark(fmt.Sprintf("black hole found %s later: %d-byte packets cross",
			scenario.Secs(c.resumed.When().Sub(c.firstDrop.When())), c.resumed.Size)))
	case c.resumed != nil:
		out = append(out, c.resumed.Mark(fmt.Sprintf("resent %s later in %d-byte packets", scenario.Secs(c.resumed.When().Sub(c.firstDrop.When())), c.resumed.Size)))
	}
	return out
}

// timeline gives the connection's moments that matter.
func (c *pmtuConn) timeline(e *scenario.Evidence, a pmtuArm) []report.Entry {
	label := "[" + a.name + ", " + c.family + "] "
	var out []report.Entry
	for _, p := range c.clamped {
		out = append(out, e.Entry(p.When(), "device", "%s%s SYN's MSS lowered to fit the %d-byte link", label, flagName(p.Flags), linkMTU))
	}
	if c.drops > 0 {
		out = append(out, e.Entry(c.firstDrop.When(), "device", "%sfirst %d-byte server packet dropped at the %d-byte link (%d in all)", label, c.firstDrop.Size, linkMTU, c.drops))
	}
	if len(c.icmp) > 0 {
		out = append(out, e.Entry(c.icmp[0].When(), "device", "%sICMP %s to the server (%d in all)", label, c.icmp[0].ICMP, len(c.icmp)))
	}
	if a == armProbing && c.resumed != nil {
		out = append(out, e.Entry(c.resumed.When(), "server", "%sblack hole found: a %d-byte packet crosses, %s after the first drop", label, c.resumed.Size,
			scenario.Secs(c.resumed.When().Sub(c.firstDrop.When()))))
	}
	out = append(out, e.Entry(c.r.End, "client", "%s%s", label, c.largeText()))
	return out
}

func flagName(f packet.TCPFlags) string {
	if f&packet.ACK != 0 {
		return "SYN-ACK"
	}
	return "SYN"
}
