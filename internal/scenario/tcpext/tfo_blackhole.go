package tcpext

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// tfo-blackhole: middleboxes that drop TCP Fast Open SYNs, or the whole
// connection that began with one (docs/field-failures.md#ecn-tfo-black-holes).
// Three Fast Open clients, one namespace each (Linux keeps Fast Open's
// cookies and its blackhole state per namespace), run side by side: one
// behind a box that drops SYNs with data (after a few requests on a clean
// port), two behind a box that also drops the rest of such a connection,
// with and without the kernel's blackhole detection.

const (
	tfoDataPort   = 8701 // SYN-data dropped
	tfoFlowPort   = 8702 // SYN-data and the rest of its connection dropped
	tfoCleanPort  = 8703
	tfoAnswerWait = 3500 * time.Millisecond // a request's bound: past the kernel's third SYN timeout (3 s)
	tfoRunFor     = 14 * time.Second        // how long the detecting client starts requests: past its second pause (2 s, then 4 s)
	tfoPause      = 500 * time.Millisecond  // between its requests
	tfoBHTimeout  = "2"                     // tcp_fastopen_blackhole_timeout_sec where it is on (default 0, off)
	armTFOClean   = "clean path"
	armTFOData    = "SYN-data dropped"
	armTFODetect  = "connection black-holed, detection on"
	armTFODefault = "connection black-holed, detection off (default)"
	tfoCookie     = "cookie request"
)

var tfoCounters = []string{"TCPFastOpenActive", "TCPFastOpenActiveFail", "TCPFastOpenBlackhole", "TCPSynRetrans", "TCPFastOpenCookieReqd"}

const tfoProfile = `name: tfo-blackhole
description: >-
  Port 8701: the built-in tfo-syn-data-drop (SYNs with data dropped, their
  plain retransmissions pass). Port 8702: the same box also drops the rest
  of a connection whose SYN it dropped. Port 8703 is clean.
sources:
  - "Linux commit cf1ef3f0719b, https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/commit/?id=cf1ef3f0719b4dcb74810ed507e2a2540f9811b4"
  - "docs/field-failures.md#ecn-tfo-black-holes"
behaviors:
  - type: tfo-drop
    match: {protocol: tcp, port: 8701}
    drop: [data]
  - type: tfo-drop
    match: {protocol: tcp, port: 8702}
    drop: [data]
    flow: true
`

var tfoArms = []arm{
	{armTFOClean, "client", tfoCleanPort, "port 8703, which the device leaves alone: a cookie request, then Fast Open requests"},
	{armTFOData, "client", tfoDataPort, "the same client, its cookie cached, on port 8701: SYNs with data dropped (the built-in tfo-syn-data-drop); tcp_fastopen_blackhole_timeout_sec=2"},
	{armTFODetect, "detect", tfoFlowPort, "port 8702: the SYN-data and the rest of its connection dropped; a client with tcp_fastopen_blackhole_timeout_sec=2 requesting every 0.5 s for 14 s"},
	{armTFODefault, "nodetect", tfoFlowPort, "port 8702 from a client with tcp_fastopen_blackhole_timeout_sec=0, the default since Linux 5.14"},
}

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "tfo-blackhole",
		Summary: "a middlebox drops TCP Fast Open SYNs: every connection pays a SYN timeout, or hangs; what Linux's blackhole detection does",
		Description: "Some middleboxes drop a SYN that carries data, which a TCP Fast Open client sends once it holds the server's cookie, " +
			"and some then drop the rest of that connection too. Linux sends its SYN retransmissions without data and, when " +
			"tcp_fastopen_blackhole_timeout_sec is set, turns active Fast Open off for a while after a Fast Open connection's third " +
			"timeout in a row, doubling the pause each time it happens again. Three Fast Open clients run side by side, each in its own " +
			"namespace: behind a box that drops SYNs with data (after requests on a clean port), and behind a box that drops the whole " +
			"connection, with the detection on (2 s) and off (the default).",
		Hosts:       []string{"client", "server", "detect", "nodetect"},
		ProfileYAML: tfoProfile,
		Sysctls: []scenario.Sysctl{
			{Host: "server", Key: "net.ipv4.tcp_fastopen", Value: "1026", Why: "the server accepts Fast Open on every listener (0x2 | 0x400), without the application asking for it"},
			{Host: "client", Key: "net.ipv4.tcp_fastopen_blackhole_timeout_sec", Value: tfoBHTimeout, Why: "the kernel's Fast Open blackhole detection is on, so the run shows whether it fires (default 0: off; it was 3600 before Linux 5.14)"},
			{Host: "detect", Key: "net.ipv4.tcp_fastopen_blackhole_timeout_sec", Value: tfoBHTimeout, Why: "the same here: 2 s instead of an hour, so that the pause and its doubling fit in the run"},
		},
		Budget: 22 * time.Second,
		Drive:  driveTFO,
		Judge:  judgeTFO,
	})
}

func driveTFO(c *scenario.Context) error {
	if _, err := c.Serve("server", "serve", "--listen", scenario.Addr("server", tfoDataPort), "--listen", scenario.Addr("server", tfoFlowPort),
		"--listen", scenario.Addr("server", tfoCleanPort), "--keepalive-timeout", "0"); err != nil {
		return err
	}
	logs := map[string]*scenario.KernelLog{}
	for _, h := range []string{"client", "detect", "nodetect"} {
		l, err := c.KernelLog(h, h+"-kernel")
		if err != nil {
			return err
		}
		logs[h] = l
	}
	var wg sync.WaitGroup
	for _, h := range []string{"client", "detect", "nodetect"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := logs[h]
			for _, a := range tfoArms {
				if a.host != h {
					continue
				}
				if err := l.Netstat(a.name+" start", tfoCounters); err != nil {
					c.Note("%s: %v", a.name, err)
				}
				tfoRequests(c, l, a)
				if err := l.Netstat(a.name+" end", tfoCounters); err != nil {
					c.Note("%s: %v", a.name, err)
				}
			}
			if r, err := c.Exec(h, 3*time.Second, "ip", "tcp_metrics", "show"); err == nil {
				l.Write("tcp_metrics", map[string]any{"output": r.Stdout})
			}
		}()
	}
	wg.Wait()
	return nil
}

// tfoRequests makes arm a's requests: a cookie request first when the
// host has no cookie yet, then Fast Open requests, three in a row, or for
// tfoRunFor on the detecting client.
func tfoRequests(c *scenario.Context, l *scenario.KernelLog, a arm) {
	if a.name != armTFOData { // the data arm's host got its cookie on the clean port
		tfoRequest(c, l, a, tfoCookie)
	}
	if a.name != armTFODetect {
		for i := 1; i <= 3; i++ {
			tfoRequest(c, l, a, fmt.Sprintf("request %d", i))
		}
		return
	}
	start := time.Now()
	for i := 1; i <= 30 && time.Since(start) < tfoRunFor; i++ {
		if !tfoRequest(c, l, a, fmt.Sprintf("request %d", i)) {
			continue // it hung: the next one at once
		}
		if c.Wait("the next Fast Open request", tfoPause) != nil {
			return
		}
	}
}

// tfoRequest makes one request on a new Fast Open connection
// (TCP_FASTOPEN_CONNECT: with a cookie cached, the request goes out in
// the SYN) and reads the client's tcp_info once answered. It reports
// whether the request was answered.
func tfoRequest(c *scenario.Context, l *scenario.KernelLog, a arm, name string) bool {
	r := scenario.ClientResult{Name: a.host + " " + name, Arm: a.name, Start: time.Now()}
	defer func() {
		r.End = time.Now()
		c.Record(r)
	}()
	conn, err := c.DialControl(a.host, scenario.Addr("server", a.port), tfoAnswerWait, fastOpenConnect)
	if err != nil {
		r.SetErr(err)
		return false
	}
	defer conn.Close()
	r.Local, r.Remote = scenario.Ends(conn)
	conn.SetDeadline(r.Start.Add(tfoAnswerWait))
	r.Status, r.Bytes, err = scenario.Get(conn, bufio.NewReader(conn), "/", false, -1)
	r.SetErr(err)
	if err != nil {
		r.Detail = fmt.Sprintf("no answer in %s", scenario.Secs(time.Since(r.Start)))
		return false
	}
	r.Detail = fmt.Sprintf("answered in %s", scenario.Secs(time.Since(r.Start)))
	if _, err := logSocket(c, l, a.host, a.name+" "+name, r.Local, r.Remote); err != nil {
		c.Note("%s %s: %v", a.name, name, err)
	}
	return true
}

// fastOpenConnect sets TCP_FASTOPEN_CONNECT: connect() returns at once
// when a cookie is cached, and the first write goes out in the SYN.
func fastOpenConnect(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// tfoConn is what the evidence shows of one request.
type tfoConn struct {
	r                scenario.ClientResult
	synData, dropped int // SYNs the client sent with data; packets of the connection the device dropped
	synDataDropped   bool
	plainSYNs        int
	answered         bool
	took             time.Duration
	dataAcked        bool  // tcp_info: the SYN's data was acknowledged
	failReason       uint8 // tcp_info: why Fast Open failed
	firstSYN         time.Time
	thirdRetransmit  time.Time // the fourth SYN: sent at the third SYN timeout, when the kernel checks for a black hole
	// The packets the ladder marks: the SYN with data, the first plain
	// SYN, the fourth SYN.
	synDataP, plainP, fourthP *report.Packet
}

// readTFOConn reads one request's connection from the capture and its
// tcp_info from the kernel log.
func readTFOConn(e *scenario.Evidence, a arm, r scenario.ClientResult) tfoConn {
	k := tfoConn{r: r, answered: r.Err == "" && r.Status != 0, took: r.End.Sub(r.Start)}
	syns := 0
	pkts := e.Packets(r.Local, r.Remote)
	for i := range pkts {
		p := &pkts[i]
		if p.Flags&(packet.SYN|packet.ACK) == packet.SYN {
			if syns++; syns == 1 {
				k.firstSYN = p.When()
			} else if syns == 4 {
				k.thirdRetransmit, k.fourthP = p.When(), p
			}
			if p.Len > 0 {
				k.synData++
				k.synDataDropped = k.synDataDropped || p.Dropped
				k.synDataP = p
			} else {
				k.plainSYNs++
				if k.plainP == nil {
					k.plainP = p
				}
			}
		}
		if p.Dropped && strings.Contains(p.Note, "tfo-drop") {
			k.dropped++
		}
	}
	v := socketAt(e, a.host+"-kernel", a.name+" "+strings.TrimPrefix(r.Name, a.host+" "))
	k.dataAcked = v.Options&sockdiag.OptSYNData != 0
	k.failReason = v.FastOpenFail
	return k
}

// tfoArmResult is one arm's requests and counters.
type tfoArmResult struct {
	arm
	conns    []tfoConn // the Fast Open requests, cookie request aside
	counters map[string]int64
	synDrops int // fo_syn_drops in the host's TCP metrics at the end
	run      report.Run
}

var foSynDropsRE = regexp.MustCompile(`198\.18\.0\.2 .*fo_syn_drops (\d+)/`)

func judgeTFO(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	arms := map[string]*tfoArmResult{}
	for _, a := range tfoArms {
		rs := e.Client(a.name)
		if len(rs) == 0 {
			return scenario.Verdict{Outcome: report.Error, Reason: a.name + ": no client result"}
		}
		t := &tfoArmResult{arm: a, counters: deltas(e, a.host+"-kernel", a.name, tfoCounters)}
		for _, r := range rs {
			if strings.HasSuffix(r.Name, tfoCookie) {
				if r.Err != "" {
					return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("%s: the cookie request failed (%s)", a.name, r.Err)}
				}
				continue
			}
			t.conns = append(t.conns, readTFOConn(e, a, r))
		}
		for _, ev := range e.Logs[a.host+"-kernel"] {
			if out, _ := ev.Raw["output"].(string); ev.Event.Event == "tcp_metrics" {
				if m := foSynDropsRE.FindStringSubmatch(out); m != nil {
					t.synDrops, _ = strconv.Atoi(m[1])
				}
			}
		}
		arms[a.name] = t
	}
	clean, data, detect, nodetect := arms[armTFOClean], arms[armTFOData], arms[armTFODetect], arms[armTFODefault]
	clean.run = clean.judgeClean()
	data.run = data.judgeData()
	detect.run = detect.judgeFlow(true)
	nodetect.run = nodetect.judgeFlow(false)
	var rows [][]string
	for _, t := range []*tfoArmResult{clean, data, detect, nodetect} {
		v.Runs = append(v.Runs, t.run)
		for _, k := range t.conns {
			rows = append(rows, k.row(t.name))
			v.Timeline = append(v.Timeline, e.Entry(k.r.End, "client", "[%s] %s: %s", t.name, strings.TrimPrefix(k.r.Name, t.host+" "), k.summary()))
		}
		if len(t.conns) > 0 && t.name != armTFOClean {
			k := t.conns[0]
			v.Ladder = append(v.Ladder, report.Conn{A: k.r.Local, B: k.r.Remote})
			switch t.name {
			case armTFOData:
				v.Marks = mark(v.Marks, k.synDataP, "the request in the SYN, dropped")
				v.Marks = mark(v.Marks, k.plainP, "resent without data after the SYN timeout")
			case armTFODetect:
				v.Marks = mark(v.Marks, k.fourthP, "third SYN timeout: the kernel pauses Fast Open")
			case armTFODefault:
				v.Marks = mark(v.Marks, k.synDataP, "dropped, and the rest of the connection with it")
			}
		}
	}
	v.Results = &report.Table{Columns: []string{"arm", "request", "SYN with data", "plain SYNs", "dropped by the device", "data in the SYN acknowledged", "answered after", "why Fast Open failed (tcp_info)"}, Rows: rows}
	v.Notes = append(v.Notes, fmt.Sprintf("Kernel counters in the clients' namespaces, per arm (TCPFastOpenActive / ActiveFail / Blackhole / SynRetrans): %s.", tfoCounterText(clean, data, detect, nodetect)))
	if data.run.Outcome == report.Reproduced {
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("%s: %s; %s: %s; %s: %s", data.name, data.run.Reason, detect.name, detect.run.Reason, nodetect.name, nodetect.run.Reason)
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("Fast Open SYNs got through: %s: %s; %s: %s", data.name, data.run.Reason, detect.name, detect.run.Reason)
	}
	return v
}

func (t *tfoArmResult) judgeClean() report.Run {
	run := report.Run{Name: t.name, Change: t.change}
	acked, slow := 0, time.Duration(0)
	for _, k := range t.conns {
		if k.dataAcked {
			acked++
		}
		slow = max(slow, k.took)
	}
	run.Outcome = scenario.OutcomeIf(acked < len(t.conns))
	run.Reason = fmt.Sprintf("%d of %d requests went out in the SYN and were acknowledged with it; the slowest answered in %s", acked, len(t.conns), scenario.Secs(slow))
	return run
}

func (t *tfoArmResult) judgeData() report.Run {
	run := report.Run{Name: t.name, Change: t.change}
	paid, fastest, slowest := 0, time.Duration(0), time.Duration(0)
	for _, k := range t.conns {
		if k.synDataDropped && k.plainSYNs > 0 && k.answered {
			paid++
			if fastest == 0 || k.took < fastest {
				fastest = k.took
			}
			slowest = max(slowest, k.took)
		}
	}
	failed := paid == len(t.conns) && paid > 0
	run.Outcome = scenario.OutcomeIf(failed)
	if failed {
		run.Reason = fmt.Sprintf("each of %d Fast Open requests lost its SYN-data, went out again after the SYN timeout in a plain SYN and was answered after %s to %s; "+
			"Fast Open was tried again every time (TCPFastOpenActiveFail +%d, fo_syn_drops %d in the client's TCP metrics) and the blackhole detection, on, never fired (TCPFastOpenBlackhole +%d)",
			paid, scenario.Secs(fastest), scenario.Secs(slowest), t.counters["TCPFastOpenActiveFail"], t.synDrops, t.counters["TCPFastOpenBlackhole"])
	} else {
		run.Reason = fmt.Sprintf("%d of %d Fast Open requests lost their SYN-data", paid, len(t.conns))
	}
	return run
}

// judgeFlow judges a client behind the box that drops the whole
// connection: requests that hung, and, with the detection on, the pauses
// in which the kernel sent no Fast Open SYN.
func (t *tfoArmResult) judgeFlow(detection bool) report.Run {
	run := report.Run{Name: t.name, Change: t.change}
	var hung, plain int
	var pauses []string
	for i, k := range t.conns {
		switch {
		case !k.answered && k.synDataDropped:
			hung++
			// The pause: from the third SYN timeout of a hung request to
			// the next SYN with data.
			if k.thirdRetransmit.IsZero() {
				continue
			}
			for _, next := range t.conns[i+1:] {
				if next.synData > 0 {
					pauses = append(pauses, scenario.Tenths(next.firstSYN.Sub(k.thirdRetransmit)))
					break
				}
			}
		case k.answered && k.synData == 0:
			plain++
		}
	}
	bh := t.counters["TCPFastOpenBlackhole"]
	failed := hung > 0
	run.Outcome = scenario.OutcomeIf(failed)
	switch {
	case !failed:
		run.Reason = fmt.Sprintf("no request hung (%d requests)", len(t.conns))
	case detection && bh > 0:
		run.Reason = fmt.Sprintf("%d of %d requests hung for %s (their SYN-data and every retransmission dropped); the kernel detected the black hole %d times "+
			"(TCPFastOpenBlackhole) and sent %d requests in between without Fast Open, answered at once", hung, len(t.conns), scenario.Secs(tfoAnswerWait), bh, plain)
		if len(pauses) > 0 {
			run.Reason += fmt.Sprintf("; the next SYN with data went out %s after a hung request's third SYN timeout", strings.Join(pauses, ", then "))
		}
	default:
		run.Reason = fmt.Sprintf("all %d requests hung for %s: every one went out with Fast Open, its SYN-data and retransmissions dropped; no blackhole detection (TCPFastOpenBlackhole +%d)",
			hung, scenario.Secs(tfoAnswerWait), bh)
		if hung < len(t.conns) {
			run.Reason = fmt.Sprintf("%d of %d requests hung for %s; TCPFastOpenBlackhole +%d", hung, len(t.conns), scenario.Secs(tfoAnswerWait), bh)
		}
	}
	return run
}

func (k *tfoConn) summary() string {
	how := "plain SYN"
	if k.synData > 0 {
		how = "SYN with data"
		if k.synDataDropped {
			how += ", dropped"
		}
	}
	if k.answered {
		return fmt.Sprintf("%s; answered after %s", how, scenario.Secs(k.took))
	}
	return fmt.Sprintf("%s; no answer in %s (%d packets dropped)", how, scenario.Secs(k.took), k.dropped)
}

func (k *tfoConn) row(arm string) []string {
	took := "never"
	if k.answered {
		took = scenario.Secs(k.took)
	}
	why := "-"
	switch k.failReason {
	case sockdiag.TFOCookieUnavailable:
		why = "no cookie"
	case sockdiag.TFODataNotAcked:
		why = "data not acknowledged"
	case sockdiag.TFOSYNRetransmitted:
		why = "SYN retransmitted"
	}
	if !k.answered {
		why = "(socket not read: no answer)"
	}
	return []string{arm, k.r.Name, fmt.Sprint(k.synData), fmt.Sprint(k.plainSYNs), fmt.Sprint(k.dropped), yesNo(k.dataAcked), took, why}
}

func tfoCounterText(ts ...*tfoArmResult) string {
	var parts []string
	for _, t := range ts {
		c := t.counters
		parts = append(parts, fmt.Sprintf("%s: %d / %d / %d / %d", t.name, c["TCPFastOpenActive"], c["TCPFastOpenActiveFail"], c["TCPFastOpenBlackhole"], c["TCPSynRetrans"]))
	}
	return strings.Join(parts, "; ")
}
