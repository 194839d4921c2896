package tcpext

import (
	"bufio"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// ecn-blackhole: a firewall drops ECN-setup SYNs (ECE and CWR set), the
// black hole RFC 3168 section 6.1.1.1 answers with a retry without them
// (docs/field-failures.md#ecn-tfo-black-holes). Three clients, one
// namespace each so that each has its own ECN settings, open connections
// through the box side by side: one that requests ECN with Linux's
// fallback, one with the fallback off, one with the defaults (which never
// request ECN); the first also connects on a clean port.

const (
	ecnDropPort  = 8601
	ecnCleanPort = 8602
	ecnConns     = 3 // connections per arm, one after the other
	ecnDialFor   = 4 * time.Second
	armECN       = "ECN requested"
	armECNClean  = "ECN requested, clean path"
	armECNNoFB   = "ECN requested, fallback off"
	armECNOff    = "ECN not requested (default)"
)

const ecnProfile = `name: ecn-blackhole
description: >-
  The built-in ecn-syn-blackhole on port 8601: ECN-setup SYNs (ECE and CWR
  set) are dropped, plain SYNs pass. Port 8602 is clean.
sources:
  - "RFC 3168 section 6.1.1.1, https://www.rfc-editor.org/rfc/rfc3168#section-6.1.1.1"
  - "docs/field-failures.md#ecn-tfo-black-holes"
behaviors:
  - type: ecn-syn-drop
    match: {protocol: tcp, port: 8601}
`

var ecnArms = []arm{
	{armECN, "client", ecnDropPort, "port 8601 (ECN-setup SYNs dropped), from a client with net.ipv4.tcp_ecn=1 and tcp_ecn_fallback=1 (the default)"},
	{armECNClean, "client", ecnCleanPort, "the same client on port 8602, which the device leaves alone"},
	{armECNNoFB, "nofallback", ecnDropPort, "port 8601 from a client with tcp_ecn=1 and tcp_ecn_fallback=0"},
	{armECNOff, "defaults", ecnDropPort, "port 8601 from a client with Linux's defaults: tcp_ecn=2 accepts ECN but never requests it"},
}

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "ecn-blackhole",
		Summary: "a firewall drops ECN-setup SYNs: Linux retries without ECN after the SYN timeout, or never connects without its fallback",
		Description: "Some firewalls and hosts dropped SYNs with the ECN flags ECE and CWR set, which is why RFC 3168 lets a client resend " +
			"the SYN without them after a timeout and why Linux has tcp_ecn_fallback. Here the device drops every ECN-setup SYN on one " +
			"port. Three clients with different ECN settings open three connections each, side by side: one requesting ECN with the " +
			"fallback (and, on a clean port, without the box), one requesting ECN with the fallback off, one with Linux's defaults.",
		Hosts:       []string{"client", "server", "nofallback", "defaults"},
		ProfileYAML: ecnProfile,
		Sysctls: []scenario.Sysctl{
			{Host: "client", Key: "net.ipv4.tcp_ecn", Value: "1", Why: "the client requests ECN in its SYNs (Linux's default 2 only accepts it)"},
			{Host: "nofallback", Key: "net.ipv4.tcp_ecn", Value: "1", Why: "this client requests ECN too"},
			{Host: "nofallback", Key: "net.ipv4.tcp_ecn_fallback", Value: "0", Why: "and does not retry without it after a SYN timeout"},
		},
		Budget: 15 * time.Second,
		Drive:  driveECN,
		Judge:  judgeECN,
	})
}

func driveECN(c *scenario.Context) error {
	if _, err := c.Serve("server", "serve", "--listen", scenario.Addr("server", ecnDropPort),
		"--listen", scenario.Addr("server", ecnCleanPort), "--keepalive-timeout", "0"); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, host := range []string{"client", "nofallback", "defaults"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, a := range ecnArms {
				if a.host != host {
					continue
				}
				for i := 1; i <= ecnConns; i++ {
					if !ecnConnect(c, a, i) {
						break // a client that cannot connect will not the next time either
					}
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// ecnConnect opens connection i of arm a and makes one request on it; it
// reports whether the connection opened.
func ecnConnect(c *scenario.Context, a arm, i int) bool {
	r := scenario.ClientResult{Name: fmt.Sprintf("%s connection %d", a.host, i), Arm: a.name, Start: time.Now(),
		Remote: scenario.AddrPort("server", a.port)}
	defer func() {
		r.End = time.Now()
		c.Record(r)
	}()
	conn, err := c.Dial(a.host, scenario.Addr("server", a.port), ecnDialFor)
	if err != nil {
		r.SetErr(err)
		r.Detail = fmt.Sprintf("no connection after %s", scenario.Secs(time.Since(r.Start)))
		return false
	}
	defer conn.Close()
	r.Local, r.Remote = scenario.Ends(conn)
	r.Detail = fmt.Sprintf("connected after %s", scenario.Secs(time.Since(r.Start)))
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	var gerr error
	r.Status, r.Bytes, gerr = scenario.Get(conn, bufio.NewReader(conn), "/", true, -1)
	r.SetErr(gerr)
	return true
}

// ecnConn is what the capture shows of one connection attempt.
type ecnConn struct {
	r                          scenario.ClientResult
	ecnSYNs, plainSYNs         int // SYNs the client sent, with and without ECE and CWR
	dropped                    int // of them, dropped by the device
	negotiated                 bool
	firstSYN, synack, lastDrop time.Time
	src                        netip.AddrPort // the client's end, from its first SYN
	dropP, plainP, lastDropP   *report.Packet // the first SYN dropped, the first plain SYN, the last SYN dropped
}

// handshake is how long the connection took to open: from its first SYN
// to the SYN-ACK that answered; zero when it never opened.
func (k *ecnConn) handshake() time.Duration {
	if k.synack.IsZero() {
		return 0
	}
	return k.synack.Sub(k.firstSYN)
}

// readECNConn finds connection r's handshake in the capture. An attempt
// that never opened has no local address: its SYNs are those to its server
// port, during the attempt, from a source no opened connection claims.
func readECNConn(e *scenario.Evidence, r scenario.ClientResult, unclaimed map[string]bool) ecnConn {
	k := ecnConn{r: r}
	var pkts []report.Packet
	if r.Local.IsValid() {
		pkts = e.Packets(r.Local, r.Remote)
	} else if e.Capture != nil {
		for _, p := range e.Capture.Packets {
			if p.Flags&(packet.SYN|packet.ACK) == packet.SYN && report.SameEnd(p.Dst, r.Remote) && unclaimed[p.Src.String()] &&
				p.When().After(r.Start.Add(-time.Millisecond)) && !p.When().After(r.End) {
				pkts = append(pkts, p)
			}
		}
	}
	for i := range pkts {
		p := &pkts[i]
		switch {
		case p.Flags&(packet.SYN|packet.ACK) == packet.SYN:
			if k.firstSYN.IsZero() {
				k.firstSYN, k.src = p.When(), p.Src
			}
			if p.Flags&(packet.ECE|packet.CWR) == packet.ECE|packet.CWR {
				k.ecnSYNs++
			} else {
				k.plainSYNs++
				if k.plainP == nil {
					k.plainP = p
				}
			}
			if p.Dropped && strings.Contains(p.Note, "ecn-syn-drop") {
				if k.dropped == 0 {
					k.dropP = p
				}
				k.dropped++
				k.lastDrop, k.lastDropP = p.When(), p
			}
		case p.Flags&(packet.SYN|packet.ACK) == packet.SYN|packet.ACK && !p.Dropped && k.synack.IsZero():
			k.synack = p.Out
			k.negotiated = p.Flags&packet.ECE != 0
		}
	}
	return k
}

func judgeECN(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	// The source ends of connections that opened, to tell the SYNs of one
	// that never did apart.
	claimed := map[string]bool{}
	for _, r := range e.Clients {
		if r.Local.IsValid() {
			claimed[r.Local.String()] = true
		}
	}
	unclaimed := map[string]bool{}
	if e.Capture != nil {
		for _, p := range e.Capture.Packets {
			if p.Flags&(packet.SYN|packet.ACK) == packet.SYN && !claimed[p.Src.String()] {
				unclaimed[p.Src.String()] = true
			}
		}
	}
	conns := map[string][]ecnConn{}
	for _, a := range ecnArms {
		rs := e.Client(a.name)
		if len(rs) == 0 {
			return scenario.Verdict{Outcome: report.Error, Reason: a.name + ": no client result"}
		}
		for _, r := range rs {
			conns[a.name] = append(conns[a.name], readECNConn(e, r, unclaimed))
		}
	}
	res := map[string]report.Run{}
	var rows [][]string
	for _, a := range ecnArms {
		run, armRows := judgeECNArm(a, conns[a.name])
		res[a.name] = run
		v.Runs = append(v.Runs, run)
		rows = append(rows, armRows...)
		for _, k := range conns[a.name] {
			if k.dropped > 0 {
				v.Timeline = append(v.Timeline, e.Entry(k.lastDrop, "device", "[%s] %s: ECN-setup SYN dropped (%d in all)", a.name, k.r.Name, k.dropped))
			}
			v.Timeline = append(v.Timeline, e.Entry(k.r.End, "client", "[%s] %s: %s", a.name, k.r.Name, k.r.Detail))
		}
		if ks := conns[a.name]; len(ks) > 0 && (a.name == armECN || a.name == armECNNoFB) && ks[0].src.IsValid() {
			k := ks[0]
			v.Ladder = append(v.Ladder, report.Conn{A: k.src, B: scenario.AddrPort("server", a.port)})
			if a.name == armECN {
				v.Marks = mark(v.Marks, k.dropP, "ECN-setup SYN dropped")
				v.Marks = mark(v.Marks, k.plainP, "resent without ECE and CWR after the SYN timeout")
			} else {
				v.Marks = mark(v.Marks, k.lastDropP, fmt.Sprintf("SYN %d: still ECE and CWR, dropped again", k.ecnSYNs))
			}
		}
	}
	v.Results = &report.Table{Columns: []string{"arm", "connection", "SYNs with ECE+CWR", "plain SYNs", "dropped by the device", "opened after", "ECN negotiated", "result"}, Rows: rows}
	fb, nofb := res[armECN], res[armECNNoFB]
	if fb.Outcome == report.Reproduced {
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("the device dropped the ECN-setup SYNs: %s: %s; %s: %s; clean path: %s; default settings: %s",
			armECN, fb.Reason, armECNNoFB, nofb.Reason, res[armECNClean].Reason, res[armECNOff].Reason)
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("ECN-setup SYNs got through: %s: %s; %s: %s", armECN, fb.Reason, armECNNoFB, nofb.Reason)
	}
	return v
}

// judgeECNArm judges one arm's connections and returns its run and its
// rows of the report's table.
func judgeECNArm(a arm, ks []ecnConn) (report.Run, [][]string) {
	var rows [][]string
	var opened, fellBack, failed, negotiated, dropped int
	var slowest, fastest time.Duration
	for _, k := range ks {
		d := k.handshake()
		if d > 0 {
			opened++
			if slowest == 0 || d > slowest {
				slowest = d
			}
			if fastest == 0 || d < fastest {
				fastest = d
			}
		} else {
			failed++
		}
		if k.dropped > 0 && d > 0 && k.plainSYNs > 0 && !k.negotiated {
			fellBack++
		}
		if k.negotiated {
			negotiated++
		}
		dropped += k.dropped
		after := "never"
		if d > 0 {
			after = brief(d)
		}
		result := k.r.Describe()
		rows = append(rows, []string{a.name, k.r.Name, fmt.Sprint(k.ecnSYNs), fmt.Sprint(k.plainSYNs), fmt.Sprint(k.dropped), after, yesNo(k.negotiated), result})
	}
	run := report.Run{Name: a.name, Change: a.change}
	switch {
	case len(ks) == 0:
		run.Outcome, run.Reason = report.Error, "no connection attempted"
	case dropped > 0 && failed > 0:
		run.Outcome = report.Reproduced
		run.Reason = fmt.Sprintf("never connected: all %d SYNs of the first attempt kept ECE and CWR and the device dropped them", ks[0].ecnSYNs)
	case dropped > 0 && fellBack == len(ks):
		run.Outcome = report.Reproduced
		run.Reason = fmt.Sprintf("each of %d connections lost its ECN-setup SYN and opened after %s to %s, with the retransmitted SYN without ECE and CWR; none negotiated ECN",
			len(ks), brief(fastest), brief(slowest))
	case opened == len(ks):
		run.Outcome = report.NotReproduced
		run.Reason = fmt.Sprintf("%d connections opened in %s to %s, %d negotiated ECN", len(ks), brief(fastest), brief(slowest), negotiated)
	default:
		run.Outcome = report.NotReproduced
		run.Reason = fmt.Sprintf("%d of %d connections opened, %d SYNs dropped by the device", opened, len(ks), dropped)
	}
	return run, rows
}

// brief renders a handshake's duration: microseconds below a millisecond.
func brief(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return scenario.Secs(d)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
