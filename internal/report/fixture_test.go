package report

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/faultbox/faultbox/internal/capture"
	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/internal/packet"
)

var (
	clientIP = netip.MustParseAddr("198.18.0.1")
	serverIP = netip.MustParseAddr("198.18.0.2")
	lbIP     = netip.MustParseAddr("198.18.0.3")
)

// capWriter writes hand-made packets through internal/capture, as the
// engine would: ports in AddPort order, engine-clock times.
type capWriter struct {
	t     *testing.T
	w     *capture.Writer
	ports map[string]int
	t0    int64
	buf   [2048]byte
}

func newCapWriter(t *testing.T, path string, ports ...string) *capWriter {
	t.Helper()
	w, err := capture.Create(path, ports, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := &capWriter{t: t, w: w, ports: map[string]int{}, t0: engine.Monotonic()}
	for i, p := range ports {
		c.ports[p] = i
	}
	return c
}

func (c *capWriter) close() {
	c.t.Helper()
	if err := c.w.Close(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *capWriter) record(port string, at time.Duration, egress bool, note string, delayed time.Duration, s packet.TCPSpec) {
	c.t.Helper()
	n := packet.BuildTCP(c.buf[:], s)
	if n == 0 {
		c.t.Fatal("BuildTCP: buffer too small")
	}
	i, ok := c.ports[port]
	if !ok {
		c.t.Fatalf("no port %s", port)
	}
	c.w.Record(engine.Record{Port: i, Time: c.t0 + int64(at), Data: c.buf[:n], Egress: egress, Note: note, Delayed: int64(delayed)})
}

// pass records a packet crossing the device untouched: arriving on the
// sender's port, leaving on the receiver's 20µs later.
func (c *capWriter) pass(from, to string, at time.Duration, s packet.TCPSpec) {
	c.record(from, at, false, "", 0, s)
	c.record(to, at+20*time.Microsecond, true, "", 0, s)
}

func seg(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags packet.TCPFlags, seq, ack uint32, payload int) packet.TCPSpec {
	return packet.TCPSpec{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Flags: flags,
		Window: 502, Payload: make([]byte, payload)}
}

const (
	cISN = 1_000_000_000
	sISN = 4_294_967_000 // wraps within the connection
)

// asaFlags are the flags of the 12 packets of port 80 in writeASACapture,
// in the order the device first saw them.
var asaFlags = []string{"S", "S.", ".", "P.", ".", "P.", "P.", ".", ".", "F.", "R.", "F."}

// writeASACapture writes a connection torn down as by asa-teardown: the
// response is delayed 20ms, the client's FIN is followed by an RST the
// device injects towards the server (one past the FIN), and the server's FIN
// is dropped. A second connection on port 8080 must be filtered out.
func writeASACapture(t *testing.T, path string) {
	c := newCapWriter(t, path, "client", "server")
	ms := time.Millisecond
	const A, P, S, F, R = packet.ACK, packet.PSH | packet.ACK, packet.SYN, packet.FIN | packet.ACK, packet.RST | packet.ACK
	cl := func(flags packet.TCPFlags, seq, ack uint32, n int) packet.TCPSpec {
		return seg(clientIP, 40312, serverIP, 80, flags, cISN+seq, sISN+ack, n)
	}
	sv := func(flags packet.TCPFlags, seq, ack uint32, n int) packet.TCPSpec {
		return seg(serverIP, 80, clientIP, 40312, flags, sISN+seq, cISN+ack, n)
	}
	syn := cl(S, 0, 0, 0)
	syn.Ack = 0
	c.pass("client", "server", 0, syn)
	c.pass("server", "client", 1*ms, sv(S|A, 0, 1, 0))
	c.pass("client", "server", 2*ms, cl(A, 1, 1, 0))
	c.pass("client", "server", 3*ms, cl(P, 1, 1, 100))
	c.pass("server", "client", 4*ms, sv(A, 1, 101, 0))
	c.record("server", 5*ms, false, "", 0, sv(P, 1, 101, 200)) // held 20ms
	c.pass("client", "server", 10*ms, cl(P, 101, 1, 50))
	c.pass("server", "client", 12*ms, sv(A, 201, 151, 0))
	c.record("client", 25*ms, true, "", 20*ms, sv(P, 1, 101, 200))
	c.pass("client", "server", 26*ms, cl(A, 151, 201, 0))
	c.pass("client", "server", 30*ms, cl(F, 151, 201, 0))
	c.record("server", 30*ms+50*time.Microsecond, true, "injected: asa-teardown: rst to server", 0, cl(R, 153, 201, 0))
	c.record("server", 31*ms, false, "asa-teardown: flow forgotten", 0, sv(F, 201, 152, 0))
	other := seg(clientIP, 40400, serverIP, 8080, S, 7, 0, 0)
	c.pass("client", "server", 40*ms, other)
	c.close()
}

func asaReport(dir string) *Report {
	return &Report{
		Scenario:    "asa-off-by-one",
		Description: "Cisco ASA tears a connection down with an RST one past the client's FIN.",
		Profile:     "cisco-asa",
		Outcome:     Reproduced,
		Reason:      "server accepted the injected RST after the FIN: socket gone 30ms after the client's FIN",
		Expected:    Reproduced,
		Seed:        42,
		Kernel:      "6.1.0-test",
		Duration:    2300 * time.Millisecond,
		Sysctls:     map[string]string{"net.ipv4.tcp_fin_timeout": "3", "net.ipv4.tcp_keepalive_time": "5"},
		SysctlNote:  "Timeouts were shortened inside the lab namespaces so the run takes seconds; the host is untouched.",
		Timeline: []Entry{
			{0, "scenario", "lab up: client, server; profile cisco-asa"},
			{3 * time.Millisecond, "client", "GET / sent"},
			{30 * time.Millisecond, "device", "client FIN followed by injected RST (offset +1)"},
			{60 * time.Millisecond, "server", "socket closed"},
		},
		Results: Table{Columns: []string{"request", "status", "time"}, Rows: [][]string{{"GET /", "200", "27ms"}, {"GET /2", "reset", "—"}}},
		Runs: []Run{
			{Name: "A", Change: "offset 1 (default)", Outcome: Reproduced, Expected: Reproduced, Reason: "RST accepted"},
			{Name: "B", Change: "offset 0", Outcome: NotReproduced, Expected: NotReproduced, Reason: "RST in window"},
		},
		Capture: filepath.Join(dir, "device.pcapng"),
		Ladder:  LadderOptions{Filter: Filter{Ports: []uint16{80}}},
		Sockets: []SocketSample{
			sample(0, "ESTAB", 0), sample(10*time.Millisecond, "ESTAB", 0), sample(20*time.Millisecond, "ESTAB", 1),
			sample(30*time.Millisecond, "CLOSE-WAIT", 1), sample(40*time.Millisecond, "CLOSE-WAIT", 2),
			{At: 40 * time.Millisecond, Host: "server", Local: netip.AddrPortFrom(serverIP, 80), Remote: netip.AddrPortFrom(clientIP, 40400), State: "SYN-RECV"},
		},
		SampleInterval: 10 * time.Millisecond,
		Events: []string{
			"    0.030050 asa-teardown: rst to server 198.18.0.1:40312 > 198.18.0.2:80 [R.] seq 1000000153 ack 4294967201 len 0",
			"    0.031000 asa-teardown: flow forgotten 198.18.0.2:80 > 198.18.0.1:40312 [F.] seq 4294967201 ack 1000000152 len 0",
		},
	}
}

func sample(at time.Duration, state string, retrans int) SocketSample {
	return SocketSample{At: at, Host: "server", Local: netip.AddrPortFrom(serverIP, 80), Remote: netip.AddrPortFrom(clientIP, 40312),
		State: state, Retrans: retrans, Unacked: retrans, RTT: 1200 * time.Microsecond}
}

// Small DOM helpers over golang.org/x/net/html.

func parseHTML(t *testing.T, s string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, c string) bool {
	for _, f := range strings.Fields(attr(n, "class")) {
		if f == c {
			return true
		}
	}
	return false
}

// find returns the elements under n (n included) that match, in document order.
func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func byID(n *html.Node, id string) *html.Node {
	if m := find(n, func(e *html.Node) bool { return attr(e, "id") == id }); len(m) > 0 {
		return m[0]
	}
	return nil
}

// svgByID returns the svg element with id, failing the test without one.
func svgByID(t *testing.T, doc *html.Node, id string) *html.Node {
	t.Helper()
	n := byID(doc, id)
	if n == nil || n.Data != "svg" {
		t.Fatalf("no svg#%s", id)
	}
	return n
}

func elem(tag, class string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == tag && (class == "" || hasClass(n, class)) }
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// pktLabel is the text of a packet arrow's label.
func pktLabel(n *html.Node) string {
	for _, t := range find(n, elem("text", "lbl")) {
		return text(t)
	}
	return ""
}

func netipAP(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }
