package idle

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// cloud-idle-timeouts: the idle timeouts of cloud load balancers and NAT
// gateways, vendor by vendor (docs/field-failures.md#cloud-idle-timeouts),
// each as its built-in profile has it, scaled 1:100 so a run takes
// seconds: AWS NLB (350 s, then a RST to whoever speaks), Azure Load
// Balancer (4 min, silent by default, RSTs to both with "TCP reset on
// idle"), Google Cloud NAT (20 min established, and 30 s for a connection
// after a FIN, scaled 1:10: TCP keepalive cannot probe more often than
// once a second). A pooled connection sits idle past the timeout and is
// used again; a half-closed one waits for a slow answer. Each has a fix
// arm with TCP keepalive below the timeout (probes every second).

// cloudVendor is one device's timeout as its profile has it, and the
// client pattern that meets it.
type cloudVendor struct {
	name     string
	profile  string        // the built-in profile it scales
	real     string        // the vendor's timeout, for the report
	params   string        // the idle-timeout behavior's parameters, scaled
	timeout  time.Duration // the scaled timeout the client meets
	idle     time.Duration // how long the pooled connection sits idle
	half     bool          // a half-closed connection waiting for a slow answer instead
	rstTo    string        // which ends the device resets: "", "client", "both"
	port     int           // the fault arm's; the keepalive arm's is port+1
	hangWait time.Duration // how long the client waits for the answer
}

var cloudVendors = []cloudVendor{
	{name: "AWS NLB", profile: "aws-nlb", real: "350 s, then a RST to the side that speaks",
		params: "timeout: 3500ms\n    mode: rst\n    rst_to: sender", timeout: 3500 * time.Millisecond, idle: 4 * time.Second,
		rstTo: "client", port: 8701, hangWait: 3 * time.Second},
	{name: "Azure LB", profile: "azure-lb", real: "4 min, then silence",
		params: "timeout: 2400ms\n    mode: silent", timeout: 2400 * time.Millisecond, idle: 3 * time.Second,
		port: 8703, hangWait: 3 * time.Second},
	{name: "Azure LB, TCP reset on idle", profile: "azure-lb-tcp-reset", real: "4 min, then RSTs to both ends",
		params: "timeout: 2400ms\n    mode: rst\n    rst_to: both", timeout: 2400 * time.Millisecond, idle: 3 * time.Second,
		rstTo: "both", port: 8705, hangWait: 3 * time.Second},
	{name: "Cloud NAT", profile: "gcp-cloud-nat", real: "20 min established, then silence",
		params: "timeout: 12s\n    transitory_timeout: 3s\n    mode: silent", timeout: 12 * time.Second, idle: 12500 * time.Millisecond,
		port: 8707, hangWait: 3 * time.Second},
	{name: "Cloud NAT, half-closed", profile: "gcp-cloud-nat", real: "30 s transitory (after a FIN), then silence",
		params: "timeout: 12s\n    transitory_timeout: 3s\n    mode: silent", timeout: 3 * time.Second, half: true,
		port: 8709, hangWait: 7 * time.Second},
}

// halfClosedSleep is how long the server takes to answer a half-closed
// connection: past the transitory timeout.
const (
	halfClosedSleep = 4 * time.Second
	keepaliveEvery  = time.Second
	expiredNote     = "idle-timeout: flow expired"
	keepaliveSuffix = " + keepalive"
)

var cloudIdleProfile = func() string {
	var b strings.Builder
	b.WriteString(`name: cloud-idle-timeouts
description: >-
  The built-in aws-nlb, azure-lb, azure-lb-tcp-reset and gcp-cloud-nat,
  timeouts scaled 1:100 (Cloud NAT's transitory one 1:10), one server port
  per arm.
sources:
  - "docs/field-failures.md#cloud-idle-timeouts"
behaviors:
`)
	for _, v := range cloudVendors {
		for _, port := range []int{v.port, v.port + 1} {
			fmt.Fprintf(&b, "  - type: idle-timeout # %s\n    match: {protocol: tcp, port: %d}\n    %s\n", v.name, port, v.params)
		}
	}
	return b.String()
}()

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "cloud-idle-timeouts",
		Summary: "AWS NLB, Azure LB and Google Cloud NAT idle timeouts, scaled 1:100: reset or hang, and TCP keepalive as the fix",
		Description: "Cloud load balancers and NAT gateways forget connections that stay idle, each its own way: an AWS Network " +
			"Load Balancer after 350 s, resetting the side that speaks next; an Azure Load Balancer after 4 minutes, silently, or " +
			"with RSTs to both ends when \"TCP reset on idle\" is on; Google Cloud NAT after 20 minutes for an established " +
			"connection and 30 s for one past its first FIN. Here the timeouts are scaled 1:100 (Cloud NAT's 30 s 1:10, as TCP " +
			"keepalive cannot probe more often than every second): a pooled connection is used again after sitting idle past the " +
			"timeout, and a half-closed one waits for a slow answer. Each vendor has a fix arm with TCP keepalive probes every " +
			"second, below the timeout.",
		ProfileYAML: cloudIdleProfile,
		Budget:      22 * time.Second,
		Drive:       driveCloudIdle,
		Judge:       judgeCloudIdle,
	})
}

func driveCloudIdle(c *scenario.Context) error {
	var flags []string
	for _, v := range cloudVendors {
		flags = append(flags, "--listen", scenario.Addr("server", v.port), "--listen", scenario.Addr("server", v.port+1))
	}
	if _, err := c.Serve("server", "serve", append(flags, "--keepalive-timeout", "60s", "--read-timeout", "60s")...); err != nil {
		return err
	}
	if err := c.Sample("server", sockdiag.Filter{}, 50*time.Millisecond); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, v := range cloudVendors {
		for _, keepalive := range []bool{false, true} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cloudClient(c, v, keepalive)
			}()
		}
	}
	wg.Wait()
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

func armName(v cloudVendor, keepalive bool) string {
	if keepalive {
		return v.name + keepaliveSuffix
	}
	return v.name
}

// cloudClient is one arm's client: a pooled connection used again after
// sitting idle, or a half-closed one waiting for a slow answer.
func cloudClient(c *scenario.Context, v cloudVendor, keepalive bool) {
	name, port := armName(v, keepalive), v.port
	if keepalive {
		port++
	}
	c.RunClient(scenario.ClientResult{Name: name, Arm: name}, scenario.Addr("server", port), 2*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		if keepalive {
			conn.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: keepaliveEvery, Interval: keepaliveEvery, Count: 5})
		}
		br := bufio.NewReader(conn)
		var err error
		if v.half {
			start := time.Now()
			conn.SetDeadline(start.Add(v.hangWait))
			c.Step(name, "asks for an answer the server takes %s to give, and half-closes", halfClosedSleep)
			r.Status, r.Bytes, err = halfClosedGet(conn, br, "/sleep/"+halfClosedSleep.String())
			r.SetErr(err)
			r.Start = start
			return
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := scenario.Get(conn, br, "/", false, -1); err != nil {
			r.SetErr(fmt.Errorf("first request: %w", err))
			return
		}
		c.Step(name, "first request answered; the connection sits idle %s", v.idle)
		if err := c.Wait("idle connections", v.idle); err != nil {
			r.SetErr(err)
			return
		}
		second := time.Now()
		conn.SetDeadline(second.Add(v.hangWait))
		r.Status, r.Bytes, err = scenario.Get(conn, br, "/", false, -1)
		r.SetErr(err)
		r.Start = second // the row is about the second request
	})
}

// halfClosedGet sends a request, shuts the connection's sending side
// (FIN) and reads the answer.
func halfClosedGet(conn *net.TCPConn, br *bufio.Reader, path string) (int, int64, error) {
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, 0, fmt.Errorf("write request: %w", err)
	}
	if err := conn.CloseWrite(); err != nil {
		return 0, 0, fmt.Errorf("half-close: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, err
}

// cloudArm is what the evidence shows of one arm.
type cloudArm struct {
	v          cloudVendor
	keepalive  bool
	name       string
	r          scenario.ClientResult
	dropped    int
	firstDrop  time.Time
	rstClient  *report.Packet
	rstServer  *report.Packet
	probes     int    // keepalive probes from the client
	server     string // the server socket's state at the last sample, or "gone"
	serverGone time.Time
	failed     bool
	text       string
	marks      []report.Mark // the packets the arm's verdict rests on
}

func readCloudArm(e *scenario.Evidence, v cloudVendor, keepalive bool) (*cloudArm, *scenario.Verdict) {
	name := armName(v, keepalive)
	r, bad := e.ArmClient(name, name+": the client")
	if bad != nil {
		return nil, bad
	}
	a := &cloudArm{v: v, keepalive: keepalive, name: name, r: r}
	var clientNext uint32
	seen := false
	for _, p := range e.Packets(r.Local, r.Remote) {
		if p.When().After(r.End) {
			break // the servers' closes at teardown are not the client's business
		}
		fromClient := report.SameEnd(p.Src, r.Local)
		switch {
		case p.Injected && p.Flags&packet.RST != 0 && report.SameEnd(p.Dst, r.Local) && a.rstClient == nil:
			q := p
			a.rstClient = &q
			a.marks = append(a.marks, p.Mark(a.name+": the device resets the client"))
		case p.Injected && p.Flags&packet.RST != 0 && report.SameEnd(p.Dst, r.Remote) && a.rstServer == nil:
			q := p
			a.rstServer = &q
			a.marks = append(a.marks, p.Mark(a.name+": the device resets the server"))
		case p.Dropped && p.Note == expiredNote:
			if a.dropped == 0 {
				a.firstDrop = p.When()
				a.marks = append(a.marks, p.Mark(fmt.Sprintf("%s: idle past %s, the device has forgotten the flow", a.name, v.timeout)))
			}
			a.dropped++
		}
		if fromClient && !p.Injected {
			// A keepalive probe is a bare ACK one below what the client
			// has sent: the byte the peer already acknowledged.
			if seen && p.Flags&(packet.SYN|packet.FIN|packet.RST|packet.ACK) == packet.ACK && p.Len == 0 && p.Seq+1 == clientNext {
				a.probes++
			}
			end := p.Seq + uint32(p.Len)
			if p.Flags&(packet.SYN|packet.FIN) != 0 {
				end++
			}
			if !seen || int32(end-clientNext) > 0 {
				clientNext, seen = end, true
			}
		}
	}
	life := e.Socket("server", r.Remote, r.Local)
	a.server = life.LastState()
	if !life.Gone.IsZero() {
		a.server, a.serverGone = "gone", life.Gone
	}
	return a, nil
}

// judge decides whether the arm met its vendor's failure.
func (a *cloudArm) judge() {
	took := scenario.Secs(a.r.End.Sub(a.r.Start))
	what := "the second request"
	if a.v.half {
		what = "the slow answer to the half-closed connection"
	}
	answered := a.r.Err == "" && a.r.Status != 0
	reset := a.r.Kind == scenario.KindReset || a.r.Kind == scenario.KindEOF
	switch a.v.rstTo {
	case "client":
		a.failed = reset && a.dropped > 0 && a.rstClient != nil && a.rstServer == nil
	case "both":
		a.failed = reset && a.dropped > 0 && a.rstClient != nil && a.rstServer != nil
	default:
		a.failed = !answered && a.r.Bytes == 0 && a.dropped > 0 && a.rstClient == nil && a.rstServer == nil
	}
	var rsts []string
	if a.rstClient != nil {
		rsts = append(rsts, "the client")
	}
	if a.rstServer != nil {
		rsts = append(rsts, "the server")
	}
	switch {
	case answered && a.keepalive:
		a.text = fmt.Sprintf("%s was answered %d after %s; %d keepalive probes kept the device's flow alive", what, a.r.Status, took, a.probes)
	case answered:
		a.text = fmt.Sprintf("%s was answered %d after %s", what, a.r.Status, took)
	case len(rsts) > 0:
		a.text = fmt.Sprintf("%s failed at once (%s after %s): the device had forgotten the flow and reset %s", what, a.r.Kind, took, strings.Join(rsts, " and "))
	default:
		a.text = fmt.Sprintf("%s hung: nothing in %s (%s), %d packets dropped by the device, no RST", what, took, a.r.Kind, a.dropped)
	}
	if !answered {
		a.text += fmt.Sprintf("; the server's socket: %s", a.server)
		if a.server == sockdiag.Established.String() {
			a.text += ", unaware"
		}
	}
}

func (a *cloudArm) run() report.Run {
	change := fmt.Sprintf("%s (%s), scaled to %s (port %d)", a.v.profile, a.v.real, a.v.timeout, a.v.port)
	expect := report.Reproduced
	if a.keepalive {
		change = fmt.Sprintf("the same with TCP keepalive every %s (port %d)", keepaliveEvery, a.v.port+1)
		expect = report.NotReproduced
	}
	return report.Run{Name: a.name, Change: change, Expected: expect, Outcome: scenario.OutcomeIf(a.failed), Reason: a.text}
}

func (a *cloudArm) timeline(e *scenario.Evidence) []report.Entry {
	label := "[" + a.name + "]"
	var out []report.Entry
	if a.dropped > 0 {
		out = append(out, e.Entry(a.firstDrop, "device", "%s the flow idle past %s is forgotten: %d packets dropped", label, a.v.timeout, a.dropped))
	}
	if a.rstClient != nil {
		out = append(out, e.Entry(a.rstClient.When(), "device", "%s RST to the client", label))
	}
	if a.rstServer != nil {
		out = append(out, e.Entry(a.rstServer.When(), "device", "%s RST to the server", label))
	}
	out = append(out, e.Entry(a.r.End, "client", "%s %s", label, a.r.Describe()))
	if !a.serverGone.IsZero() {
		out = append(out, e.Entry(a.serverGone, "server", "%s server socket gone", label))
	}
	return out
}

func judgeCloudIdle(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	var faults, fixes []string
	all := true
	for _, vendor := range cloudVendors {
		for _, keepalive := range []bool{false, true} {
			a, bad := readCloudArm(e, vendor, keepalive)
			if bad != nil {
				return *bad
			}
			a.judge()
			v.Runs = append(v.Runs, a.run())
			v.Timeline = append(v.Timeline, a.timeline(e)...)
			if keepalive {
				fixes = append(fixes, fmt.Sprintf("%s: %s", a.name, map[bool]string{false: "answered", true: "still failed"}[a.failed]))
				continue
			}
			all = all && a.failed
			faults = append(faults, fmt.Sprintf("%s: %s", a.name, a.text))
			v.Ladder = append(v.Ladder, report.Conn{A: a.r.Local, B: a.r.Remote})
			v.Marks = append(v.Marks, a.marks...)
		}
	}
	v.Outcome = scenario.OutcomeIf(all)
	if all {
		v.Reason = "every device forgot its idle connection its own way — " + strings.Join(faults, "; ")
	} else {
		v.Reason = "not every device forgot its idle connection — " + strings.Join(faults, "; ")
	}
	v.Reason += ". With TCP keepalive below the timeout — " + strings.Join(fixes, "; ") + "."
	return v
}
