package idle

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// nat-idle: a NAT gateway or load balancer forgets an idle connection. The
// next request on it hangs (the device drops it silently: Azure's default)
// or is reset (AWS NAT gateway, Azure "TCP reset on idle"). Both run at
// once, one port each, with the device's idle timeout at 2 s.

const (
	silentPort    = 8301
	rstPort       = 8302
	deviceTimeout = 2 * time.Second         // the device's idle timeout
	clientIdle    = 2500 * time.Millisecond // how long the client stays idle
	secondWait    = 3 * time.Second         // how long the client waits for the second answer
	armSilent     = "silent drop"
	armRST        = "rst to both"
)

const natIdleProfile = `name: nat-idle-2s
description: >-
  The built-in nat-idle with a 2 s idle timeout, twice: port 8301 drops the
  flow's later packets silently (Azure Load Balancer's default), port 8302
  answers them with RSTs to both ends (Azure "TCP reset on idle"; AWS NAT
  gateway resets the side inside).
sources:
  - "350 s idle timeout, then RST: Amazon VPC User Guide, 'Troubleshoot NAT gateways', https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html#nat-gateway-troubleshooting-timeout"
  - "4 min idle timeout by default, flows dropped silently unless TCP reset on idle is enabled: Microsoft, 'Load Balancer TCP Reset and Idle Timeout', https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-tcp-reset"
behaviors:
  - type: idle-timeout
    match: {protocol: tcp, port: 8301}
    timeout: 2s
    mode: silent
  - type: idle-timeout
    match: {protocol: tcp, port: 8302}
    timeout: 2s
    mode: rst
    rst_to: both
`

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "nat-idle",
		Summary: "a NAT forgets an idle connection: the next request hangs (silent) or is reset (rst)",
		Description: "A long-lived keep-alive connection goes idle; the NAT gateway or load balancer in between forgets it " +
			"after its idle timeout (AWS NAT gateway 350 s, Azure 4 min; 2 s here). The next request on it either hangs, its " +
			"packets dropped silently until the client's own timeout, while the server never learns anything, or is reset at " +
			"once when the device answers with RSTs. Both variants run side by side, one server port each.",
		ProfileYAML: natIdleProfile,
		Budget:      15 * time.Second,
		Drive:       driveNATIdle,
		Judge:       judgeNATIdle,
	})
}

func driveNATIdle(c *scenario.Context) error {
	if _, err := c.Serve("server", "serve", "--listen", scenario.Addr("server", silentPort), "--listen", scenario.Addr("server", rstPort),
		"--keepalive-timeout", "60s", "--read-timeout", "60s"); err != nil {
		return err
	}
	if err := c.Sample("server", sockdiag.Filter{}, 0); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, arm := range []struct {
		name string
		port int
	}{{armSilent, silentPort}, {armRST, rstPort}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idleClient(c, fmt.Sprintf("client :%d", arm.port), arm.name, arm.port)
		}()
	}
	wg.Wait()
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

// idleClient makes a request, stays idle clientIdle, then makes a second one
// on the same connection and waits secondWait for its answer.
func idleClient(c *scenario.Context, name, arm string, port int) {
	c.RunClient(scenario.ClientResult{Name: name, Arm: arm}, scenario.Addr("server", port), 2*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		br := bufio.NewReader(conn)
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		status, _, err := scenario.Get(conn, br, "/", false, -1)
		if err != nil {
			r.SetErr(fmt.Errorf("first request: %w", err))
			return
		}
		c.Step(name, "first request answered %d; the connection now stays idle %s", status, clientIdle)
		if err := c.Wait("the device's idle timeout to pass", clientIdle); err != nil {
			r.SetErr(err)
			return
		}
		second := time.Now()
		c.Step(name, "second request on the idle connection")
		conn.SetDeadline(second.Add(secondWait))
		r.Status, r.Bytes, err = scenario.Get(conn, br, "/", false, -1)
		r.SetErr(err)
		r.Detail = fmt.Sprintf("first request %d; second after %s idle: ", status, clientIdle)
		if err != nil {
			r.Detail += fmt.Sprintf("failed after %s", time.Since(second).Round(time.Millisecond))
		} else {
			r.Detail += fmt.Sprintf("answered %d", r.Status)
		}
		r.Start = second // the row is about the second request
	})
}

// natArm is what the evidence shows of one arm's second request.
type natArm struct {
	name         string
	r            scenario.ClientResult
	dropped      int // client packets dropped by the device after the idle time
	firstDrop    time.Time
	rstToClient  *time.Time
	rstToServer  *time.Time
	serverState  string // the server socket's state at the last sample, or "gone"
	serverGoneAt time.Time
	text         string
	failed       bool
}

func judgeNATIdle(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	var arms []*natArm
	for _, name := range []string{armSilent, armRST} {
		a, bad := readNATArm(e, name)
		if bad != nil {
			return *bad
		}
		arms = append(arms, a)
		v.Ladder = append(v.Ladder, report.Conn{A: a.r.Local, B: a.r.Remote})
	}
	s, r := arms[0], arms[1]
	s.judgeSilent()
	r.judgeRST()
	for _, a := range arms {
		v.Runs = append(v.Runs, a.run())
		v.Timeline = append(v.Timeline, a.timeline(e)...)
	}
	if s.failed && r.failed {
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("the idle connection was forgotten by the device — %s: %s; %s: %s", armSilent, s.text, armRST, r.text)
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("the idle connections survived — %s: %s; %s: %s", armSilent, s.text, armRST, r.text)
	}
	return v
}

// readNATArm reads arm name's client, what the device did to its
// connection, and what became of the server's socket.
func readNATArm(e *scenario.Evidence, name string) (*natArm, *scenario.Verdict) {
	r, bad := e.ArmClient(name, name+": the client")
	if bad != nil {
		return nil, bad
	}
	a := &natArm{name: name, r: r}
	for _, p := range e.Packets(a.r.Local, a.r.Remote) {
		switch {
		case p.Injected && p.Flags&packet.RST != 0 && report.SameEnd(p.Dst, a.r.Local) && a.rstToClient == nil:
			t := p.Out
			a.rstToClient = &t
		case p.Injected && p.Flags&packet.RST != 0 && report.SameEnd(p.Dst, a.r.Remote) && a.rstToServer == nil:
			t := p.Out
			a.rstToServer = &t
		case p.Dropped && report.SameEnd(p.Src, a.r.Local) && strings.Contains(p.Note, "idle"):
			if a.dropped == 0 {
				a.firstDrop = p.When()
			}
			a.dropped++
		}
	}
	life := e.Socket("server", a.r.Remote, a.r.Local)
	a.serverState = life.LastState()
	if !life.Gone.IsZero() {
		a.serverGoneAt = life.Gone
		a.serverState = "gone"
	}
	return a, nil
}

// took is how long the second request took.
func (a *natArm) took() string { return scenario.Secs(a.r.End.Sub(a.r.Start)) }

// judgeSilent judges the silent arm: the request got nothing, the device
// dropped what the client sent, and the server never heard of it.
func (a *natArm) judgeSilent() {
	a.failed = a.r.Err != "" && a.r.Bytes == 0 && a.r.Status == 0 && a.dropped > 0 && a.rstToClient == nil
	switch {
	case a.failed:
		a.text = fmt.Sprintf("the second request hung: no answer in %s (%s), the device dropped %d packets from the client (the request and its retransmissions); the server socket stayed %s, unaware",
			a.took(), a.r.Kind, a.dropped, a.serverState)
	case a.r.Err == "":
		a.text = fmt.Sprintf("the second request was answered %d in %s", a.r.Status, a.took())
	default:
		a.text = fmt.Sprintf("the second request failed (%s: %s) with %d packets dropped by the device", a.r.Kind, a.r.Err, a.dropped)
	}
}

// judgeRST judges the rst arm: the request failed at once with a reset
// the device sent.
func (a *natArm) judgeRST() {
	a.failed = a.r.Err != "" && (a.r.Kind == scenario.KindReset || a.r.Kind == scenario.KindEOF) && a.rstToClient != nil
	switch {
	case a.failed:
		a.text = fmt.Sprintf("the second request was reset after %s (%s): the device answered it with RSTs to the client and to the server; the server socket: %s",
			a.took(), a.r.Kind, a.serverState)
	case a.r.Err == "":
		a.text = fmt.Sprintf("the second request was answered %d in %s", a.r.Status, a.took())
	default:
		a.text = fmt.Sprintf("the second request failed (%s: %s) without a RST from the device", a.r.Kind, a.r.Err)
	}
}

// run is the arm's line in the verdict's runs.
func (a *natArm) run() report.Run {
	run := report.Run{Name: a.name, Outcome: scenario.OutcomeIf(a.failed), Reason: a.text}
	if a.name == armSilent {
		run.Change = fmt.Sprintf("port %d: idle-timeout 2s, mode silent", silentPort)
	} else {
		run.Change = fmt.Sprintf("port %d: idle-timeout 2s, mode rst, rst_to both", rstPort)
	}
	return run
}

// timeline is what the evidence shows of the arm's second request.
func (a *natArm) timeline(e *scenario.Evidence) []report.Entry {
	var out []report.Entry
	label := "[" + a.name + "]"
	if a.dropped > 0 {
		out = append(out, e.Entry(a.firstDrop, "device", "%s flow expired after %s idle: the second request is dropped (%d client packets dropped in all)", label, deviceTimeout, a.dropped))
	}
	if a.rstToClient != nil {
		out = append(out, e.Entry(*a.rstToClient, "device", "%s RST to the client", label))
	}
	if a.rstToServer != nil {
		out = append(out, e.Entry(*a.rstToServer, "device", "%s RST to the server", label))
	}
	out = append(out, e.Entry(a.r.End, "client", "%s second request: %s", label, a.r.Describe()))
	if !a.serverGoneAt.IsZero() {
		out = append(out, e.Entry(a.serverGoneAt, "server", "%s server socket gone", label))
	}
	return out
}
