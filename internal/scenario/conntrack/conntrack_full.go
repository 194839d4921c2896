// Package conntrack holds the scenarios of stateful middleboxes running
// out of connection-tracking room.
package conntrack

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

// conntrack-full: a stateful firewall or NAT whose connection table is
// full (docs/field-failures.md#conntrack-full). One established
// connection holds an entry and keeps working; a burst of new clients
// finds 7 free entries: the rest have their SYNs dropped and connect only
// on the retransmission that follows a freed entry, so their connect
// times fall on the kernel's SYN retransmission schedule, which the run
// measures from the capture. The A/B arm is the same burst through a
// table with room for all. Linux's conntrack timeouts are scaled 1:100
// (TIME_WAIT 1.2 s), so a closed connection frees its entry in seconds.

const (
	fullPort, roomyPort = 8601, 8602
	tableSize           = 8  // the full table: the existing connection and 7 more
	roomySize           = 64 // the fixed one: room for every client
	burst               = 21 // new clients per arm: three tables' worth
	hold                = 1300 * time.Millisecond
	dialWait            = 16 * time.Second
	fullNote            = "conntrack: table full, dropping packet"
	armFull             = "table full"
	armRoomy            = "room for all"
	armExisting         = "existing connection"
)

// conntrackTimeouts are Linux's nf_conntrack_tcp_timeout_* defaults
// scaled 1:100.
const conntrackTimeouts = `    timeout_syn_sent: 1200ms
    timeout_syn_recv: 600ms
    timeout_established: 72m
    timeout_fin_wait: 1200ms
    timeout_close_wait: 600ms
    timeout_last_ack: 300ms
    timeout_time_wait: 1200ms
    timeout_close: 100ms
    gc_interval: 600ms`

var conntrackProfile = fmt.Sprintf(`name: conntrack-full-arms
description: >-
  Two connection tables with Linux's conntrack timeouts scaled 1:100: port
  %[1]d's holds %[3]d entries (the built-in conntrack-full, smaller), port
  %[2]d's %[4]d.
sources:
  - "Linux kernel documentation, 'Netfilter Conntrack Sysfs variables': https://docs.kernel.org/networking/nf_conntrack-sysctl.html"
  - "docs/field-failures.md#conntrack-full"
behaviors:
  - type: conntrack
    match: {protocol: tcp, port: %[1]d}
    max: %[3]d
%[5]s
  - type: conntrack
    match: {protocol: tcp, port: %[2]d}
    max: %[4]d
%[5]s
`, fullPort, roomyPort, tableSize, roomySize, conntrackTimeouts)

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "conntrack-full",
		Summary: "a full conntrack table: new SYNs dropped, connect times step at the SYN retransmission schedule",
		Description: "A stateful firewall or NAT whose connection table is full, as a busy Linux node logging \"nf_conntrack: " +
			"table full, dropping packet\". An established connection keeps its entry and keeps working; of a burst of 21 new " +
			"clients, 7 find a free entry, the others have their SYNs dropped and connect only on the retransmission that " +
			"follows a freed entry (a connection's entry is freed 1.2 s after it closes: Linux's TIME_WAIT timeout, scaled " +
			"1:100). Their connect times step at the kernel's SYN retransmission schedule, measured from the capture and drawn " +
			"with the connect-time distribution. The A/B arm is the same burst through a table with room for all.",
		ProfileYAML: conntrackProfile,
		Budget:      22 * time.Second,
		Drive:       driveConntrack,
		Judge:       judgeConntrack,
	})
}

func driveConntrack(c *scenario.Context) error {
	if _, err := c.Serve("server", "serve", "--listen", scenario.Addr("server", fullPort), "--listen", scenario.Addr("server", roomyPort),
		"--keepalive-timeout", "60s", "--read-timeout", "60s"); err != nil {
		return err
	}
	stop := make(chan struct{})
	established := make(chan struct{})
	var existing sync.WaitGroup
	existing.Add(1)
	go func() {
		defer existing.Done()
		existingClient(c, established, stop)
	}()
	select {
	case <-established:
	case <-time.After(3 * time.Second):
	}
	c.Step("scenario", "%d new clients per table at once", burst)
	var wg sync.WaitGroup
	for _, arm := range []struct {
		name string
		port int
	}{{armFull, fullPort}, {armRoomy, roomyPort}} {
		for i := range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				burstClient(c, arm.name, fmt.Sprintf("%s client %d", arm.name, i+1), arm.port)
			}()
		}
	}
	wg.Wait()
	close(stop)
	existing.Wait()
	return nil
}

// existingClient holds a connection through the full table and asks for
// something every 300 ms until stop: a connection with an entry must
// not notice that the table is full.
func existingClient(c *scenario.Context, established chan<- struct{}, stop <-chan struct{}) {
	c.RunClient(scenario.ClientResult{Name: armExisting, Arm: armExisting}, scenario.Addr("server", fullPort), 2*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		close(established)
		br := bufio.NewReader(conn)
		asked, answered := 0, 0
		t := time.NewTicker(300 * time.Millisecond)
		defer t.Stop()
		for done := false; !done; {
			asked++
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			status, n, err := scenario.Get(conn, br, "/bytes/200", false, -1)
			if err != nil {
				r.SetErr(err)
				break
			}
			answered++
			r.Status, r.Bytes = status, r.Bytes+n
			select {
			case <-stop:
				done = true
			case <-t.C:
			}
		}
		r.Detail = fmt.Sprintf("%d of %d requests answered", answered, asked)
	})
}

// burstClient connects (the kernel retransmits its SYN as long as the
// dial waits), asks for an answer the server holds back, and closes.
func burstClient(c *scenario.Context, arm, name string, port int) {
	c.RunClient(scenario.ClientResult{Name: name, Arm: arm}, scenario.Addr("server", port), dialWait, func(conn *net.TCPConn, r *scenario.ClientResult) {
		r.Detail = fmt.Sprintf("connected after %s", scenario.Secs(time.Since(r.Start)))
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var err error
		r.Status, r.Bytes, err = scenario.Get(conn, bufio.NewReader(conn), "/sleep/"+hold.String(), true, -1)
		r.SetErr(err)
	})
}

// ctConn is what the capture shows of one client's connection.
type ctConn struct {
	r              scenario.ClientResult
	syns           []time.Time // its SYNs as the device saw them
	dropped        int         // of them, dropped for want of an entry
	synAcks        int         // the server's SYN-ACKs up to the one that reached it
	synAcksDropped int         // of them, dropped for want of an entry (the SYN's entry was gone)
	synAck         time.Time   // the SYN-ACK that reached it
	connect        time.Duration
	retried        bool          // it connected on a retransmission, its own or the server's
	marks          []report.Mark // its first dropped SYN and the one that passed
}

func readCTConn(e *scenario.Evidence, r scenario.ClientResult) *ctConn {
	c := &ctConn{r: r}
	for _, p := range e.Packets(r.Local, r.Remote) {
		switch {
		case p.Flags&(packet.SYN|packet.ACK) == packet.SYN && report.SameEnd(p.Src, r.Local):
			c.syns = append(c.syns, p.When())
			if p.Dropped && p.Note == fullNote {
				c.dropped++
				if c.dropped == 1 {
					c.marks = append(c.marks, p.Mark("the table is full: the SYN is dropped"))
				}
			} else if c.dropped > 0 {
				c.marks = append(c.marks, p.Mark(fmt.Sprintf("an entry is free: SYN %d, %s after the first, passes", len(c.syns), scenario.Secs(p.When().Sub(c.syns[0])))))
			}
		case p.Flags&(packet.SYN|packet.ACK) == packet.SYN|packet.ACK && c.synAck.IsZero():
			c.synAcks++
			if p.Dropped {
				c.synAcksDropped++
			} else {
				c.synAck = p.Out
			}
		}
	}
	if len(c.syns) > 0 && !c.synAck.IsZero() {
		c.connect = c.synAck.Sub(c.syns[0])
		c.retried = c.dropped > 0 || c.synAcksDropped > 0
	}
	return c
}

// how says on which packet the connection was made.
func (c *ctConn) how() string {
	if c.synAcksDropped > 0 {
		return fmt.Sprintf("on the server's SYN-ACK %d (%d dropped before: the entry its SYN had made was gone)", c.synAcks, c.synAcksDropped)
	}
	return fmt.Sprintf("on its SYN %d", len(c.syns))
}

// ctArm is the evidence of one arm's burst.
type ctArm struct {
	name           string
	conns          []*ctConn
	never          []scenario.ClientResult // clients that did not connect in time
	waited         int                     // connected on a retransmission
	dropped        int                     // SYNs dropped for want of an entry
	synAcksDropped int
	firstDrop      time.Time
}

func readCTArm(e *scenario.Evidence, name string) *ctArm {
	a := &ctArm{name: name}
	for _, r := range e.Client(name) {
		if !r.Local.IsValid() {
			a.never = append(a.never, r)
			continue
		}
		c := readCTConn(e, r)
		a.conns = append(a.conns, c)
		a.dropped += c.dropped
		a.synAcksDropped += c.synAcksDropped
		if c.retried {
			a.waited++
		}
	}
	for _, c := range a.conns {
		for i, t := range c.syns {
			if i < c.dropped && (a.firstDrop.IsZero() || t.Before(a.firstDrop)) {
				a.firstDrop = t
			}
		}
	}
	return a
}

// steps groups connect times that fall within 250 ms of each other:
// "7 at 0.00 s, 7 at 3.01 s, 7 at 7.02 s".
func (a *ctArm) steps() string {
	ts := a.connects()
	slices.Sort(ts)
	var out []string
	for i := 0; i < len(ts); {
		j := i
		for j < len(ts) && ts[j]-ts[i] < 250*time.Millisecond {
			j++
		}
		out = append(out, fmt.Sprintf("%d at %s", j-i, scenario.Secs(ts[i])))
		i = j
	}
	return strings.Join(out, ", ")
}

// schedule is the SYN retransmission schedule the capture shows: the
// offsets from a connection's first SYN of its later ones, from the
// connection that sent the most.
func schedule(arms ...*ctArm) []time.Duration {
	var best []time.Duration
	for _, a := range arms {
		for _, c := range a.conns {
			if len(c.syns) > len(best)+1 {
				best = best[:0]
				for _, t := range c.syns[1:] {
					best = append(best, t.Sub(c.syns[0]))
				}
			}
		}
	}
	return best
}

func scheduleText(s []time.Duration) string {
	if len(s) == 0 {
		return "no SYN was retransmitted"
	}
	var parts []string
	for _, d := range s {
		parts = append(parts, fmt.Sprintf("+%.2f", d.Seconds()))
	}
	return "SYN retransmissions at " + strings.Join(parts, ", ") + " s after the first"
}

func judgeConntrack(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	ex, bad := e.ArmClient(armExisting, "the existing connection")
	if bad != nil {
		return *bad
	}
	full, roomy := readCTArm(e, armFull), readCTArm(e, armRoomy)
	for _, a := range []*ctArm{full, roomy} {
		if len(a.conns)+len(a.never) != burst {
			return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("%s: %d clients recorded, want %d", a.name, len(a.conns)+len(a.never), burst)}
		}
	}
	exDrops := 0
	for _, p := range e.Packets(ex.Local, ex.Remote) {
		if p.Dropped {
			exDrops++
		}
	}
	exOK := ex.Err == "" && exDrops == 0
	sched := schedule(full, roomy)

	text := func(a *ctArm) string {
		s := fmt.Sprintf("of %d clients, %d connected on their first SYN and %d only on a retransmission (%d SYNs and %d SYN-ACKs dropped: %q); connect times: %s",
			burst, len(a.conns)-a.waited, a.waited, a.dropped, a.synAcksDropped, fullNote, a.steps())
		if n := len(a.never); n > 0 {
			s += fmt.Sprintf("; %d did not connect within %s", n, scenario.Secs(dialWait))
		}
		return s
	}
	fullFailed := full.waited > 0 || len(full.never) > 0
	exText := fmt.Sprintf("the existing connection: %s, %d of its packets dropped", ex.Detail, exDrops)
	if ex.Err != "" {
		exText += fmt.Sprintf(", then %s", ex.Err)
	}
	v.Runs = []report.Run{
		{Name: armFull, Change: fmt.Sprintf("a table of %d entries, one held by the existing connection (port %d)", tableSize, fullPort),
			Expected: report.Reproduced, Outcome: scenario.OutcomeIf(fullFailed), Reason: text(full) + "; " + exText},
		{Name: armRoomy, Change: fmt.Sprintf("a table of %d entries (port %d)", roomySize, roomyPort),
			Expected: report.NotReproduced, Outcome: scenario.OutcomeIf(roomy.waited > 0 || len(roomy.never) > 0), Reason: text(roomy)},
	}
	switch {
	case fullFailed && exOK:
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("the full table dropped new SYNs while the connection it tracked kept working — %s; %s. On this kernel: %s. With room for all: %s",
			text(full), exText, scheduleText(sched), roomy.steps())
	case fullFailed:
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("new SYNs were dropped, but the tracked connection suffered too, which a full table does not do — %s; %s", text(full), exText)
	default:
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("no client waited for a retransmitted SYN — %s; %s", text(full), exText)
	}
	marks := []report.AxisMark{{At: 0, Label: "SYN"}}
	for i, d := range sched {
		marks = append(marks, report.AxisMark{At: d, Label: fmt.Sprintf("SYN %d", i+2)})
	}
	v.Distributions = []report.Distribution{{
		ID: "connect-times", Title: "Connect times",
		Caption: "From each client's first SYN to the SYN-ACK that reached it, from the capture; the dashed lines mark the " +
			"kernel's " + scheduleText(sched) + ".",
		Series: []report.DistSeries{
			{Name: fmt.Sprintf("%s (%d entries)", armFull, tableSize), Values: full.connects()},
			{Name: fmt.Sprintf("%s (%d entries)", armRoomy, roomySize), Values: roomy.connects()},
		},
		Marks: marks,
	}}
	if !full.firstDrop.IsZero() {
		v.Timeline = append(v.Timeline, e.Entry(full.firstDrop, "device", "[%s] the table is full: the first SYN dropped (%d in all)", armFull, full.dropped))
	}
	for _, a := range []*ctArm{full, roomy} {
		for _, c := range a.conns {
			if c.retried {
				v.Timeline = append(v.Timeline, e.Entry(c.synAck, "client", "[%s] %s connected %s, %s after its first SYN", a.name, c.r.Name, c.how(), scenario.Secs(c.connect)))
			}
		}
	}
	v.Ladder = append(v.Ladder, report.Conn{A: ex.Local, B: ex.Remote})
	for _, c := range full.conns { // a client that waited longest, and one that did not wait
		if c.retried && len(c.syns) == len(sched)+1 {
			v.Ladder = append(v.Ladder, report.Conn{A: c.r.Local, B: c.r.Remote})
			v.Marks = append(v.Marks, c.marks...)
			break
		}
	}
	for _, c := range full.conns {
		if !c.retried {
			v.Ladder = append(v.Ladder, report.Conn{A: c.r.Local, B: c.r.Remote})
			break
		}
	}
	return v
}

// connects are the arm's connect times.
func (a *ctArm) connects() []time.Duration {
	var out []time.Duration
	for _, c := range a.conns {
		if !c.synAck.IsZero() {
			out = append(out, c.connect)
		}
	}
	return out
}
