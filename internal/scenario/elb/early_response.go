package elb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// elb-early-response (docs/field-failures.md#elb-early-response).
// akka-http answered a chunked POST early, before reading its body, and
// then closed the connection without "Connection: close" (because the
// proxy in front had forwarded a hop-by-hop "Connection: keep-alive"); the
// ELB took the connection for reusable, sent the next request on it: RST,
// 504. Two arms run at once: the LB forwarding Connection and reusing
// after an early response (hop_by_hop: buggy), and the correct one.

type earlyArm struct {
	name   string
	port   int
	hop    string // hop_by_hop with the fault on
	expect report.Outcome
	change string
}

var earlyArms = []earlyArm{
	{"Connection: keep-alive forwarded", 8611, "buggy", report.Reproduced,
		"hop_by_hop: buggy: the LB forwards the client's Connection: keep-alive and reuses a connection after an early response that lacked Connection: close"},
	{"Connection not forwarded", 8612, "correct", report.NotReproduced,
		"hop_by_hop: correct: hop-by-hop fields stay on their hop, and a connection that answered early is never reused"},
}

// earlyRounds is how many POST-then-GET rounds each arm's client runs.
const earlyRounds = 6

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "elb-early-response",
		Summary: "Classic ELB reuses a connection after an early response without Connection: close: RST, 504",
		Description: "The second cause of the ELB 504s in 'Akka-http random connections close' (Lightbend forum, 2019; akka-http issue 2403): the akka-http proxy behind the ELB answered chunked " +
			"requests early, before reading their body, and then closed the connection, but without \"Connection: close\", " +
			"because the proxy had forwarded a hop-by-hop \"Connection: keep-alive\" into its response. The ELB took the " +
			"connection for reusable and sent the next request, from any client, on it: RST, 504. Here faultbox serve " +
			"answers a chunked POST with 401 before reading the body and closes without Connection: close; faultbox proxy " +
			"(elb) in the lb host either forwards Connection: keep-alive and reuses after the early response " +
			"(hop_by_hop: buggy) or does not (correct). Each arm's client sends a chunked POST, the rest of its body after " +
			"the early answer, and then a GET on a new connection.",
		Hosts:  []string{"client", "lb", "server"},
		Budget: 15 * time.Second,
		Drive:  driveEarly,
		Judge:  judgeEarly,
	})
}

func earlyProcName(a earlyArm) string { return fmt.Sprintf("lb-%d", a.port) }

func driveEarly(c *scenario.Context) error {
	flags := []string{"--early-response", "--early-close-no-header", "--keepalive-timeout", "5s"}
	var ports []int
	for _, a := range earlyArms {
		flags = append(flags, "--listen", scenario.Addr("server", a.port))
		ports = append(ports, a.port)
	}
	if _, err := c.Serve("server", "serve", flags...); err != nil {
		return err
	}
	for _, a := range earlyArms {
		hop := a.hop
		if !c.Fault() && hop != "correct" {
			hop = "correct" // the fix the report applied: stop forwarding Connection
			c.Note("Fault off: the LB on port %d runs hop_by_hop: correct as well.", a.port)
		}
		if err := startProxy(c, earlyProcName(a), a.port, a.name+": "+a.change, "hop_by_hop: "+hop); err != nil {
			return err
		}
	}
	if err := lbsUp(c, ports); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, a := range earlyArms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range earlyRounds {
				if c.Context().Err() != nil {
					return
				}
				earlyRound(c, a, i+1)
			}
		}()
	}
	wg.Wait()
	if err := c.Context().Err(); err != nil {
		return err
	}
	// The device writes its capture out every second: wait for it, then
	// say what went over the wire between the LB and the server.
	if err := c.Wait("the capture to be written", 1200*time.Millisecond); err != nil {
		return err
	}
	countWireHeaders(c, ports)
	return nil
}

// earlyRound is one round of an arm's client: a chunked POST whose body
// the server will not wait for, the rest of the body once the answer is
// in, then a GET through the LB on a new connection.
func earlyRound(c *scenario.Context, a earlyArm, round int) {
	post := scenario.ClientResult{Name: fmt.Sprintf("client :%d POST #%d", a.port, round), Arm: a.name}
	c.RunClient(post, scenario.Addr("lb", a.port), 2*time.Second, func(conn *net.TCPConn, post *scenario.ClientResult) {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		chunk := func(b byte, n int) string { return fmt.Sprintf("%x\r\n%s\r\n", n, bytes.Repeat([]byte{b}, n)) }
		head := "POST /upload HTTP/1.1\r\nHost: server\r\nUser-Agent: faultbox-scenario\r\nTransfer-Encoding: chunked\r\n" +
			"Connection: keep-alive\r\n\r\n"
		_, err := io.WriteString(conn, head+chunk('a', 4096))
		if err == nil {
			var resp *http.Response
			if resp, err = http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
				post.Status = resp.StatusCode
				post.Bytes, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		post.SetErr(err)
		if err == nil {
			// The rest of the body, as the client goes on sending it.
			time.Sleep(50 * time.Millisecond)
			if _, werr := io.WriteString(conn, chunk('b', 4096)+"0\r\n\r\n"); werr != nil {
				post.Detail = "the rest of the body: " + werr.Error()
			} else {
				post.Detail = "answered before the rest of the body (4 KiB) was sent"
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	get := scenario.ClientResult{Name: fmt.Sprintf("client :%d GET #%d", a.port, round), Arm: a.name,
		Detail: "the next request, on a new client connection"}
	c.RunClient(get, scenario.Addr("lb", a.port), 2*time.Second, func(conn *net.TCPConn, get *scenario.ClientResult) {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var err error
		get.Status, get.Bytes, err = scenario.Get(conn, bufio.NewReader(conn), "/", true, -1)
		get.SetErr(err)
	})
}

// countWireHeaders reads the requests and 401 answers between the LB and the
// server out of the capture so far and records, per port, how many
// requests carried Connection: keep-alive and how many 401s Connection:
// close.
func countWireHeaders(c *scenario.Context, ports []int) {
	type counts struct{ reqs, keepAlive, answers, close int }
	got := map[uint16]*counts{}
	for _, p := range ports {
		got[uint16(p)] = &counts{}
	}
	f, err := os.Open(filepath.Join(c.Dir, "capture.pcapng"))
	if err != nil {
		c.Note("capture: %v", err)
		return
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		c.Note("capture: %v", err)
		return
	}
	lb, server := scenario.AddrPort("lb", 0).Addr(), scenario.AddrPort("server", 0).Addr()
	var pk packet.Parsed
	for i := 0; i < 1<<20; i++ {
		data, _, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			break // io.EOF, or the record the device is writing now
		}
		if opts.Flags != nil && opts.Flags.Direction == pcapgo.NgEpbFlagDirectionOutbound {
			continue // each packet once: as it arrived
		}
		pk.Decode(data)
		if !pk.IsTCP() || pk.PayloadLen() == 0 {
			continue
		}
		pl := pk.Payload()
		hdr, _, _ := bytes.Cut(pl, []byte("\r\n\r\n"))
		lower := strings.ToLower(string(hdr))
		switch {
		case pk.Src == lb && pk.Dst == server && got[pk.DstPort] != nil && isRequest(pl):
			n := got[pk.DstPort]
			n.reqs++
			if strings.Contains(lower, "\r\nconnection: keep-alive") {
				n.keepAlive++
			}
		case pk.Src == server && pk.Dst == lb && got[pk.SrcPort] != nil && bytes.HasPrefix(pl, []byte("HTTP/1.1 401")):
			n := got[pk.SrcPort]
			n.answers++
			if strings.Contains(lower, "\r\nconnection: close") {
				n.close++
			}
		}
	}
	for _, p := range ports {
		n := got[uint16(p)]
		c.Step("device", "capture [:%d]: %d of %d requests from the LB to the server carried Connection: keep-alive; "+
			"%d of %d early 401 answers carried Connection: close", p, n.keepAlive, n.reqs, n.close, n.answers)
	}
}

func isRequest(b []byte) bool {
	for _, m := range []string{"GET ", "POST ", "PUT ", "HEAD "} {
		if bytes.HasPrefix(b, []byte(m)) {
			return true
		}
	}
	return false
}

// earlyStats is one arm's evidence summed up.
type earlyStats struct {
	arm       earlyArm
	early     int // requests answered before their body was sent (access log)
	reused    int // requests sent on a connection that had answered early
	reusedBad int // ... and failed
	causes    map[string]int
	maxFail   float64
	gets      int // GETs the clients sent, and how many got 504
	gets504   int
	discarded int // connections the LB closed after an early response
	rsts      int // RSTs from the server on connections that had answered early
	first     *earlyCase
}

// earlyCase is one early-answered backend connection.
type earlyCase struct {
	post, next *proxy.Entry
	wire       wireClose
	rsts       int
	closed     time.Time // the LB closed it after the early answer
}

func readEarlyStats(e *scenario.Evidence, a earlyArm) (earlyStats, error) {
	s := earlyStats{arm: a, causes: map[string]int{}}
	l, err := accessLog(e, earlyProcName(a), a.name)
	if err != nil {
		return s, err
	}
	server := scenario.AddrPort("server", a.port)
	answeredEarly := map[uint64]*earlyCase{}
	var cases []*earlyCase
	for i := range l.Requests {
		en := &l.Requests[i]
		if ec := answeredEarly[en.BackendConn]; ec != nil && en.BackendConn != 0 {
			s.reused++
			if ec.next == nil {
				ec.next = en
			}
			if lbFailed(*en) {
				s.reusedBad++
				s.causes[cause(*en)]++
				s.maxFail = max(s.maxFail, en.BackendTime)
			}
		}
		if en.Early && answeredEarly[en.BackendConn] == nil {
			s.early++
			ec := &earlyCase{post: en}
			answeredEarly[en.BackendConn] = ec
			cases = append(cases, ec)
		}
	}
	for _, pe := range l.Closes {
		if ec := answeredEarly[pe.BackendConn]; ec != nil && pe.Reason == "not reusable" {
			s.discarded++
			ec.closed, _ = time.Parse(time.RFC3339Nano, pe.Time)
		}
	}
	for id, ec := range answeredEarly {
		lb, ok := l.Local[id]
		if !ok {
			continue
		}
		ec.wire = readWireClose(e, lb, server)
		for _, p := range e.Packets(lb, server) {
			if report.SameEnd(p.Src, server) && p.Flags&packet.RST != 0 {
				ec.rsts++
			}
		}
		s.rsts += ec.rsts
	}
	for _, ec := range cases {
		if s.first == nil || (s.first.next == nil && ec.next != nil) {
			s.first = ec
		}
	}
	for _, r := range e.Client(a.name) {
		if strings.Contains(r.Name, "GET") {
			s.gets++
			if r.Status == 504 {
				s.gets504++
			}
		}
	}
	return s, nil
}

func (s *earlyStats) reason() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests answered early; %d later requests sent on those connections, %d failed",
		s.early, s.reused, s.reusedBad)
	if s.reusedBad > 0 {
		fmt.Fprintf(&b, " (%s from the backend, backend time at most %s)", causesText(s.causes), logMS(s.maxFail))
	}
	fmt.Fprintf(&b, "; the server sent %d RSTs on them; the LB closed %d of them after the early answer; clients' GETs: %s got 504",
		s.rsts, s.discarded, share(s.gets504, s.gets))
	return b.String()
}

func judgeEarly(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	stats := make([]earlyStats, len(earlyArms))
	for i, a := range earlyArms {
		s, err := readEarlyStats(e, a)
		if err != nil {
			return scenario.Verdict{Outcome: report.Error, Reason: err.Error()}
		}
		if s.early == 0 {
			return scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("arm %q: no request was answered early: the run shows nothing about cause B", a.name)}
		}
		stats[i] = s
		v.Runs = append(v.Runs, report.Run{Name: a.name, Change: a.change, Expected: a.expect, Reason: s.reason(), Outcome: scenario.OutcomeIf(s.reusedBad > 0)})
		if s.first != nil {
			v.Timeline = append(v.Timeline, earlyTimeline(e, &s)...)
			v.Ladder = append(v.Ladder, report.Conn{A: s.first.wire.lb, B: s.first.wire.server})
		}
	}
	bug, fix := &stats[0], &stats[1]
	failsBug := bug.reused > 0 && float64(bug.reusedBad) >= 0.9*float64(bug.early) && bug.gets504 > 0
	numbers := fmt.Sprintf("with Connection: keep-alive forwarded, %d of %d connections that answered a chunked POST early "+
		"carried a later request that failed with 504", bug.reusedBad, bug.early)
	if bug.reusedBad > 0 {
		numbers += fmt.Sprintf(" (%s, backend time at most %s)", causesText(bug.causes), logMS(bug.maxFail))
	}
	numbers += fmt.Sprintf("; the server sent %d RSTs on them; with it not forwarded, %d of %d such connections were reused "+
		"(the LB closed %d) and %s of the clients' GETs got 504", bug.rsts, fix.reused, fix.early, fix.discarded,
		share(fix.gets504, fix.gets))
	switch {
	case failsBug && fix.reusedBad == 0 && fix.gets504 == 0:
		v.Outcome, v.Reason = report.Reproduced, "early response + forwarded Connection: keep-alive reproduced: "+numbers
	case failsBug:
		v.Outcome, v.Reason = report.NotReproduced, "the reuse after an early response failed in both arms: "+numbers
	default:
		v.Outcome, v.Reason = report.NotReproduced, "no request failed on a connection that had answered early: "+numbers
	}
	return v
}

// earlyTimeline tells one early-answered connection of an arm.
func earlyTimeline(e *scenario.Evidence, s *earlyStats) []report.Entry {
	ec := s.first
	w := &ec.wire
	label := fmt.Sprintf("[:%d]", s.arm.port)
	var out []report.Entry
	for _, ev := range e.ConnLog("serve", w.lb) {
		switch ev.Event.Event {
		case "request", "response", "close":
			what := strings.Join(strings.Fields(fmt.Sprintf("%s %s %s", ev.Method, ev.Path, ev.Reason)), " ")
			if ev.Status != 0 {
				what = strings.TrimSpace(fmt.Sprintf("%d %s", ev.Status, what))
			}
			out = append(out, e.Entry(ev.At, "server", "%s serve conn %d: %s %s", label, ev.Conn, ev.Event.Event, what))
		}
	}
	if w.fin != nil {
		out = append(out, e.Entry(w.fin.When(), "server", "%s FIN to the LB after the early answer", label))
	}
	if ec.rsts > 0 {
		if w.rst != nil {
			out = append(out, e.Entry(w.rst.When(), "server", "%s RST: the LB sent more on the closed connection (%d RSTs in all)", label, ec.rsts))
		}
	}
	if n := ec.next; n != nil {
		at, err := time.Parse(time.RFC3339Nano, n.Time)
		if err == nil {
			out = append(out, e.Entry(at, "lb", "%s reuses the connection for %s %s: %s, backend time %s (%s)",
				label, n.Method, n.Path, n.Outcome, logMS(n.BackendTime), cause(*n)))
		}
	} else if !ec.closed.IsZero() {
		out = append(out, e.Entry(ec.closed, "lb", "%s does not reuse it: closed once the request body was relayed", label))
	}
	return out
}
