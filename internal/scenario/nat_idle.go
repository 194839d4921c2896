package scenario

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// nat-idle: a NAT gateway or load balancer forgets an idle connection. The
// next request on it hangs (the device drops it silently: Azure's default)
// or is reset (AWS NAT gateway, Azure "TCP reset on idle"). Both run at
// once, one port each, with the device's idle timeout at 2 s.

const (
	natSilentPort = 8301
	natRSTPort    = 8302
	natTimeout    = 2 * time.Second         // the device's idle timeout
	natIdle       = 2500 * time.Millisecond // how long the client stays idle
	natWait       = 3 * time.Second         // how long the client waits for the second answer
	natArmSilent  = "silent drop"
	natArmRST     = "rst to both"
)

const natIdleProfile = `name: nat-idle-2s
description: >-
  The built-in nat-idle with a 2 s idle timeout, twice: port 8301 drops the
  flow's later packets silently (Azure Load Balancer's default), port 8302
  answers them with RSTs to both ends (Azure "TCP reset on idle"; AWS NAT
  gateway resets the side inside).
sources:
  - "AWS VPC NAT gateway documentation: 350 s idle timeout, then RST"
  - "Azure Load Balancer documentation: 4 min idle timeout by default, flows dropped silently unless TCP reset on idle is enabled"
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
	Register(&Scenario{
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

func driveNATIdle(c *Context) error {
	if _, err := c.Serve("server", "serve", "--listen", Addr("server", natSilentPort), "--listen", Addr("server", natRSTPort),
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
	}{{natArmSilent, natSilentPort}, {natArmRST, natRSTPort}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idleClient(c, fmt.Sprintf("client :%d", arm.port), arm.name, arm.port)
		}()
	}
	wg.Wait()
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

// idleClient makes a request, stays idle natIdle, then makes a second one
// on the same connection and waits natWait for its answer.
func idleClient(c *Context, name, arm string, port int) {
	c.runClient(ClientResult{Name: name, Arm: arm}, Addr("server", port), 2*time.Second, func(conn *net.TCPConn, r *ClientResult) {
		br := bufio.NewReader(conn)
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		status, _, err := Get(conn, br, "/", false, -1)
		if err != nil {
			r.SetErr(fmt.Errorf("first request: %w", err))
			return
		}
		c.Step(name, "first request answered %d; the connection now stays idle %s", status, natIdle)
		if err := c.Wait("the device's idle timeout to pass", natIdle); err != nil {
			r.SetErr(err)
			return
		}
		second := time.Now()
		c.Step(name, "second request on the idle connection")
		conn.SetDeadline(second.Add(natWait))
		r.Status, r.Bytes, err = Get(conn, br, "/", false, -1)
		r.SetErr(err)
		r.Detail = fmt.Sprintf("first request %d; second after %s idle: ", status, natIdle)
		if err != nil {
			r.Detail += fmt.Sprintf("failed after %s", time.Since(second).Round(time.Millisecond))
		} else {
			r.Detail += fmt.Sprintf("answered %d", r.Status)
		}
		r.Start = second // the row is about the second request
	})
}

type natArm struct {
	r            ClientResult
	dropped      int // client packets dropped by the device after the idle time
	firstDrop    time.Time
	rstToClient  *time.Time
	rstToServer  *time.Time
	serverState  string // the server socket's state at the last sample, or "gone"
	serverGoneAt time.Time
	text         string
	failed       bool
}

func judgeNATIdle(e *Evidence) Verdict {
	var v Verdict
	arms := map[string]*natArm{}
	for _, name := range []string{natArmSilent, natArmRST} {
		r, bad := armClient(e, name, name+": the client")
		if bad != nil {
			return *bad
		}
		a := &natArm{r: r}
		arms[name] = a
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
		a.serverState = lastState(life)
		if !life.Gone.IsZero() {
			a.serverGoneAt = life.Gone
			a.serverState = "gone"
		}
		v.Ladder = append(v.Ladder, report.Conn{A: a.r.Local, B: a.r.Remote})
	}

	s, r := arms[natArmSilent], arms[natArmRST]
	took := func(a *natArm) string { return secs(a.r.End.Sub(a.r.Start)) }
	// Silent: the request got nothing, the device dropped what the client
	// sent, and the server never heard of it.
	s.failed = s.r.Err != "" && s.r.Bytes == 0 && s.r.Status == 0 && s.dropped > 0 && s.rstToClient == nil
	switch {
	case s.failed:
		s.text = fmt.Sprintf("the second request hung: no answer in %s (%s), the device dropped %d packets from the client (the request and its retransmissions); the server socket stayed %s, unaware",
			took(s), s.r.Kind, s.dropped, s.serverState)
	case s.r.Err == "":
		s.text = fmt.Sprintf("the second request was answered %d in %s", s.r.Status, took(s))
	default:
		s.text = fmt.Sprintf("the second request failed (%s: %s) with %d packets dropped by the device", s.r.Kind, s.r.Err, s.dropped)
	}
	// RST: the request failed at once with a reset the device sent.
	r.failed = r.r.Err != "" && (r.r.Kind == KindReset || r.r.Kind == KindEOF) && r.rstToClient != nil
	switch {
	case r.failed:
		r.text = fmt.Sprintf("the second request was reset after %s (%s): the device answered it with RSTs to the client and to the server; the server socket: %s",
			took(r), r.r.Kind, r.serverState)
	case r.r.Err == "":
		r.text = fmt.Sprintf("the second request was answered %d in %s", r.r.Status, took(r))
	default:
		r.text = fmt.Sprintf("the second request failed (%s: %s) without a RST from the device", r.r.Kind, r.r.Err)
	}

	for _, name := range []string{natArmSilent, natArmRST} {
		a := arms[name]
		run := report.Run{Name: name, Outcome: outcomeIf(a.failed), Reason: a.text}
		if name == natArmSilent {
			run.Change = fmt.Sprintf("port %d: idle-timeout 2s, mode silent", natSilentPort)
		} else {
			run.Change = fmt.Sprintf("port %d: idle-timeout 2s, mode rst, rst_to both", natRSTPort)
		}
		v.Runs = append(v.Runs, run)
		label := "[" + name + "]"
		if a.dropped > 0 {
			v.Timeline = append(v.Timeline, e.Entry(a.firstDrop, "device", "%s flow expired after %s idle: the second request is dropped (%d client packets dropped in all)", label, natTimeout, a.dropped))
		}
		if a.rstToClient != nil {
			v.Timeline = append(v.Timeline, e.Entry(*a.rstToClient, "device", "%s RST to the client", label))
		}
		if a.rstToServer != nil {
			v.Timeline = append(v.Timeline, e.Entry(*a.rstToServer, "device", "%s RST to the server", label))
		}
		v.Timeline = append(v.Timeline, e.Entry(a.r.End, "client", "%s second request: %s", label, resultText(a.r)))
		if !a.serverGoneAt.IsZero() {
			v.Timeline = append(v.Timeline, e.Entry(a.serverGoneAt, "server", "%s server socket gone", label))
		}
	}
	if s.failed && r.failed {
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("the idle connection was forgotten by the device — %s: %s; %s: %s", natArmSilent, s.text, natArmRST, r.text)
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("the idle connections survived — %s: %s; %s: %s", natArmSilent, s.text, natArmRST, r.text)
	}
	return v
}

func resultText(r ClientResult) string {
	if r.Err == "" {
		return fmt.Sprintf("answered %d (%d bytes)", r.Status, r.Bytes)
	}
	return fmt.Sprintf("%s (%s)", r.Kind, r.Err)
}
