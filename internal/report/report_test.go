package report

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/faultbox/faultbox/internal/packet"
)

// writeASAReport writes the asa fixture's report into a fresh directory (or
// into $FAULTBOX_REPORT_OUT, to look at it) and returns the directory.
func writeASAReport(t *testing.T) (string, *Report) {
	t.Helper()
	src := t.TempDir()
	r := asaReport(src)
	r.Start = time.Now()
	writeASACapture(t, r.Capture)
	dir := filepath.Join(t.TempDir(), "report")
	if out := os.Getenv("FAULTBOX_REPORT_OUT"); out != "" {
		dir = out
	}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	return dir, r
}

func readHTML(t *testing.T, dir string) *html.Node {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	return parseHTML(t, string(b))
}

func TestWrite_LadderDrawsEveryPacketOfTheSelectedConnection(t *testing.T) {
	dir, _ := writeASAReport(t)
	svg := svgByID(t, readHTML(t, dir), "ladder")
	pkts := find(svg, elem("g", "pkt"))
	var flags []string
	for _, g := range pkts {
		flags = append(flags, attr(g, "data-flags"))
	}
	if fmt.Sprint(flags) != fmt.Sprint(asaFlags) {
		t.Fatalf("arrows' flags:\n got %v\nwant %v (port 8080 filtered out)", flags, asaFlags)
	}
	for i, g := range pkts {
		if got := attr(g, "data-conn"); got != "1" {
			t.Errorf("arrow %d: data-conn %q, want 1", i, got)
		}
	}
	// Labels: flags and sequence numbers relative to each side's ISN,
	// across the server's wrap-around.
	want := map[int]string{
		0:  "[S] seq 0",
		1:  "[S.] seq 0 ack 1",
		3:  "[P.] seq 1 ack 1 len 100",
		5:  "[P.] seq 1 ack 101 len 200",
		7:  "[.] seq 201 ack 151",
		9:  "[F.] seq 151 ack 201",
		10: "[R.] seq 153 ack 201",
		11: "[F.] seq 201 ack 152",
	}
	for i, w := range want {
		if got := pktLabel(pkts[i]); got != w {
			t.Errorf("arrow %d label %q, want %q", i, got, w)
		}
	}
	// Absolute numbers on hover.
	if title := text(find(pkts[5], elem("title", ""))[0]); !strings.Contains(title, fmt.Sprintf("seq %d (relative 1)", uint32(sISN+1))) {
		t.Errorf("title of the response lacks the absolute seq: %q", title)
	}
}

func TestWrite_LadderHighlightsWhatTheDeviceDid(t *testing.T) {
	dir, _ := writeASAReport(t)
	svg := svgByID(t, readHTML(t, dir), "ladder")
	pkts := find(svg, elem("g", "pkt"))
	var injected, dropped, delayed []int
	for i, g := range pkts {
		if attr(g, "data-injected") == "true" {
			injected = append(injected, i)
		}
		if attr(g, "data-dropped") == "true" {
			dropped = append(dropped, i)
		}
		if attr(g, "data-delayed") == "true" {
			delayed = append(delayed, i)
		}
	}
	if fmt.Sprint(injected, dropped, delayed) != "[10] [11] [5]" {
		t.Fatalf("injected %v dropped %v delayed %v, want [10] [11] [5]", injected, dropped, delayed)
	}
	inj := pkts[10]
	if !hasClass(inj, "injected") || len(find(inj, elem("rect", "inj"))) != 1 {
		t.Error("injected RST not highlighted")
	}
	if got := text(find(inj, elem("text", "note"))[0]); got != "injected: asa-teardown: rst to server" {
		t.Errorf("injected note %q", got)
	}
	// Drawn from the device lane to the server (to the right of the lane).
	circle := find(inj, elem("circle", "src"))
	line := find(inj, elem("line", ""))
	if len(circle) != 1 || len(line) != 1 || attr(line[0], "stroke") != colorInj {
		t.Fatalf("injected arrow: %d source circles, %d lines", len(circle), len(line))
	}
	g := ladGeom{n: 2}
	if attr(line[0], "x1") != fmt.Sprintf("%.1f", g.lane(0)) || attr(line[0], "x2") != fmt.Sprintf("%.1f", g.host(1)) {
		t.Errorf("injected arrow from x=%s to x=%s, want device lane %.1f to server %.1f",
			attr(line[0], "x1"), attr(line[0], "x2"), g.lane(0), g.host(1))
	}
	drop := pkts[11]
	if len(find(drop, elem("path", "cross"))) != 1 {
		t.Error("dropped FIN has no cross")
	}
	if l := find(drop, elem("line", "")); len(l) != 1 || attr(l[0], "x1") != fmt.Sprintf("%.1f", g.host(1)) || attr(l[0], "x2") != fmt.Sprintf("%.1f", g.lane(0)+6) {
		t.Error("dropped FIN does not end at the device")
	}
	if got := text(find(drop, elem("text", "note"))[0]); got != "asa-teardown: flow forgotten" {
		t.Errorf("drop note %q", got)
	}
	del := pkts[5]
	if len(find(del, elem("line", "held"))) != 1 {
		t.Error("delayed response has no held segment")
	}
	notes := find(del, elem("text", "note"))
	if len(notes) != 2 || text(notes[0]) != "delayed 20ms" || text(notes[1]) != "delivered after 20ms" {
		var s []string
		for _, n := range notes {
			s = append(s, text(n))
		}
		t.Errorf("delayed notes %q", s)
	}
	// Others are plain.
	for _, i := range []int{0, 1, 2, 3, 4, 6, 7, 8, 9} {
		if c := attr(pkts[i], "class"); c != "pkt" {
			t.Errorf("arrow %d class %q, want plain pkt", i, c)
		}
	}
}

func TestWrite_VerdictTimelineAndFiles(t *testing.T) {
	dir, r := writeASAReport(t)
	doc := readHTML(t, dir)
	v := byID(doc, "verdict")
	if v == nil {
		t.Fatal("no #verdict")
	}
	if attr(v, "data-outcome") != "reproduced" || attr(v, "data-pass") != "true" || !hasClass(v, "pass") {
		t.Errorf("verdict attrs: %v", v.Attr)
	}
	if !strings.Contains(text(v), r.Reason) {
		t.Error("verdict lacks the reason")
	}
	tl := byID(doc, "timeline")
	if n := len(find(tl, elem("tr", "entry"))); n != len(r.Timeline) {
		t.Errorf("timeline rows %d, want %d", n, len(r.Timeline))
	}
	if !strings.Contains(text(tl), "0.030s") || !strings.Contains(text(tl), "client FIN followed by injected RST") {
		t.Error("timeline text missing")
	}
	if n := len(find(byID(doc, "ab"), elem("tr", "run"))); n != 2 {
		t.Errorf("A/B rows %d, want 2", n)
	}
	page := text(doc)
	for _, s := range []string{"net.ipv4.tcp_fin_timeout", "Timeouts were shortened inside the lab namespaces", "6.1.0-test", "GET /2"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	// Offline: nothing is loaded from anywhere.
	for _, n := range find(doc, func(n *html.Node) bool { return attr(n, "src") != "" || n.Data == "link" || n.Data == "script" }) {
		t.Errorf("page loads something: <%s %v>", n.Data, n.Attr)
	}

	var vj map[string]any
	b, err := os.ReadFile(filepath.Join(dir, VerdictFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &vj); err != nil {
		t.Fatal(err)
	}
	if vj["scenario"] != "asa-off-by-one" || vj["outcome"] != "reproduced" || vj["pass"] != true ||
		vj["seed"] != 42.0 || vj["capture_file"] != "device.pcapng" || vj["kernel"] != "6.1.0-test" {
		t.Errorf("verdict.json: %s", b)
	}
	if tl, _ := vj["timeline"].([]any); len(tl) != 4 {
		t.Errorf("verdict.json timeline: %v", vj["timeline"])
	}
	var socks []SocketSample
	b, _ = os.ReadFile(filepath.Join(dir, SocketsFile))
	if err := json.Unmarshal(b, &socks); err != nil || len(socks) != len(r.Sockets) || socks[3].State != "CLOSE-WAIT" {
		t.Errorf("sockets.json: %v %s", err, b)
	}
	b, _ = os.ReadFile(filepath.Join(dir, EventsFile))
	if got := strings.Count(string(b), "\n"); got != 2 || !strings.Contains(string(b), "rst to server") {
		t.Errorf("events.log: %q", b)
	}
	c1, _ := os.ReadFile(r.Capture)
	c2, err := os.ReadFile(filepath.Join(dir, "device.pcapng"))
	if err != nil || string(c1) != string(c2) || len(c1) == 0 {
		t.Errorf("capture not copied: %v", err)
	}
}

func TestWrite_SocketChart(t *testing.T) {
	dir, _ := writeASAReport(t)
	doc := readHTML(t, dir)
	svg := svgByID(t, doc, "sockets")
	socks := find(svg, elem("g", "sock"))
	if len(socks) != 2 {
		t.Fatalf("%d socket rows, want 2", len(socks))
	}
	var states []string
	for _, b := range find(socks[0], elem("rect", "band")) {
		states = append(states, attr(b, "data-state"))
	}
	if fmt.Sprint(states) != "[ESTAB CLOSE-WAIT]" {
		t.Errorf("bands of the port-80 socket: %v, want runs [ESTAB CLOSE-WAIT]", states)
	}
	// New retransmits at 20ms and 40ms.
	if n := len(find(socks[0], elem("path", "retrans"))); n != 2 {
		t.Errorf("%d retransmit marks, want 2", n)
	}
	counts := svgByID(t, doc, "socket-counts")
	// 5 ticks: one state each, except the last (CLOSE-WAIT + SYN-RECV).
	if n := len(find(counts, func(n *html.Node) bool { return n.Data == "rect" && attr(n, "data-state") != "" })); n != 6 {
		t.Errorf("%d count bars, want 6", n)
	}
}

func TestWrite_NotReproducedAndNoEvidence(t *testing.T) {
	dir := t.TempDir()
	r := &Report{Scenario: "fin-wait-2", Outcome: NotReproduced, Expected: Reproduced, Reason: "no FIN-WAIT-2 socket seen",
		Capture: filepath.Join(dir, "missing.pcapng")}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	doc := readHTML(t, dir)
	v := byID(doc, "verdict")
	if attr(v, "data-pass") != "false" || !hasClass(v, "fail") || !hasClass(v, "not-reproduced") {
		t.Errorf("verdict attrs %v", v.Attr)
	}
	if !strings.Contains(text(doc), "Evidence problem: capture:") {
		t.Error("missing capture not reported on the page")
	}
	if byID(doc, "ladder") != nil || byID(doc, "sockets") != nil {
		t.Error("charts drawn without evidence")
	}
	b, _ := os.ReadFile(filepath.Join(dir, VerdictFile))
	if !strings.Contains(string(b), `"warnings"`) || !strings.Contains(string(b), `"pass": false`) {
		t.Errorf("verdict.json: %s", b)
	}
}

// A long transfer is capped; what the device did and the handshake stay.
func TestWrite_LadderCapKeepsNotablePackets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pcapng")
	c := newCapWriter(t, path, "client", "server")
	us := time.Microsecond
	syn := seg(clientIP, 5000, serverIP, 80, packet.SYN, 1, 0, 0)
	c.pass("client", "server", 0, syn)
	for i := range 300 {
		s := seg(serverIP, 80, clientIP, 5000, packet.ACK, uint32(100+i*1000), 2, 1000)
		if i == 150 {
			c.record("server", time.Duration(i+1)*100*us, false, "dropped by loss", 0, s)
			continue
		}
		c.pass("server", "client", time.Duration(i+1)*100*us, s)
	}
	c.record("server", 40*time.Millisecond, true, "injected: reset: rst", 0, seg(clientIP, 5000, serverIP, 80, packet.RST, 2, 0, 0))
	c.close()
	r := &Report{Scenario: "cap", Outcome: Reproduced, Expected: Reproduced, Capture: path, Ladder: LadderOptions{MaxPackets: 40}}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	doc := readHTML(t, dir)
	ladder := svgByID(t, doc, "ladder")
	pkts := find(ladder, elem("g", "pkt"))
	if len(pkts) != 40 {
		t.Fatalf("%d arrows, want the cap 40", len(pkts))
	}
	hidden := 0
	for _, g := range find(ladder, elem("g", "gap")) {
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(text(g), "⋯ "), "%d packets not shown", &n); err != nil {
			t.Fatalf("gap text %q: %v", text(g), err)
		}
		hidden += n
	}
	if hidden != 302-40 {
		t.Errorf("gaps account for %d hidden packets, want %d", hidden, 302-40)
	}
	var sawSYN, sawDrop, sawInj bool
	for _, g := range pkts {
		sawSYN = sawSYN || attr(g, "data-flags") == "S"
		sawDrop = sawDrop || attr(g, "data-dropped") == "true"
		sawInj = sawInj || attr(g, "data-injected") == "true"
	}
	if !sawSYN || !sawDrop || !sawInj {
		t.Errorf("capped ladder lost a notable packet: SYN %v drop %v injected %v", sawSYN, sawDrop, sawInj)
	}
	if s := text(byID(doc, "ladder-section")); !strings.Contains(s, "40 of 302 packets") || !strings.Contains(s, "262 left out") {
		t.Errorf("summary does not say what was left out: %q", s[:min(len(s), 300)])
	}
}

// Marks outline the packets a verdict rests on and put their note beside
// the device lane, before the device's own; a marked packet survives the
// cap like any notable one, and a mark that matches no packet is not
// counted.
func TestWrite_LadderMarksHighlightPackets(t *testing.T) {
	src := t.TempDir()
	r := asaReport(src)
	r.Start = time.Now()
	writeASACapture(t, r.Capture)
	c, err := ReadCapture(r.Capture, Filter{Ports: []uint16{80}})
	if err != nil {
		t.Fatal(err)
	}
	req, held := c.Packets[3], c.Packets[5] // the request, the response the device held
	r.Ladder.Marks = []Mark{
		{Src: req.Src, Dst: req.Dst, At: req.When(), Note: "the request"},
		{Src: held.Src, Dst: held.Dst, At: held.When(), Note: "the late answer"},
		{Src: held.Dst, Dst: held.Src, At: held.When(), Note: "no such packet"},
	}
	r.Ladder.MaxPackets = 4 // the handshake and the marked ones: the request only because it is marked
	dir := filepath.Join(t.TempDir(), "report")
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	doc := readHTML(t, dir)
	svg := svgByID(t, doc, "ladder")
	marked := map[string]*html.Node{}
	for _, g := range find(svg, elem("g", "pkt")) {
		if hasClass(g, "marked") {
			marked[attr(g, "data-mark")] = g
		}
	}
	if len(marked) != 2 || marked["the request"] == nil || marked["the late answer"] == nil {
		t.Fatalf("marked arrows %v, want the request and the late answer", marked)
	}
	for note, want := range map[string]string{"the request": "the request", "the late answer": "the late answer (delayed 20ms)"} {
		g := marked[note]
		if len(find(g, elem("rect", "mark"))) != 1 {
			t.Errorf("%s: row not outlined", note)
		}
		if got := text(find(g, elem("text", "mark"))[0]); got != want {
			t.Errorf("%s: note %q, want %q", note, got, want)
		}
	}
	if l := find(marked["the request"], elem("line", "")); len(l) != 1 || attr(l[0], "stroke-width") != "2.4" {
		t.Error("the marked request's arrow is not drawn wider")
	}
	if s := text(byID(doc, "ladder-section")); !strings.Contains(s, "what the verdict rests on (2)") {
		t.Errorf("legend does not count the marks: %q", s[:min(len(s), 400)])
	}
}

// When a device rewrote every packet (seq-randomize), every packet is
// notable and the cap can keep only some: it keeps the marked ones and
// their neighbours, not just the first packets of the capture.
func TestWrite_LadderCapKeepsMarksAmongRewrittenPackets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pcapng")
	c := newCapWriter(t, path, "client", "server")
	us := time.Microsecond
	for i := range 300 {
		s := seg(serverIP, 80, clientIP, 5000, packet.ACK, uint32(100+i*1000), 2, 1000)
		at := time.Duration(i+1) * 100 * us
		c.record("server", at, false, "", 0, s)
		out := s
		out.Seq += 7777 // rewritten on the way: modified, no note
		c.record("client", at+20*us, true, "", 0, out)
	}
	c.close()
	read, err := ReadCapture(path, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var marks []Mark
	for _, i := range []int{120, 250} {
		p := read.Packets[i]
		marks = append(marks, Mark{Src: p.Src, Dst: p.Dst, At: p.When(), Note: fmt.Sprintf("packet %d", i)})
	}
	r := &Report{Scenario: "rewritten", Outcome: Reproduced, Expected: Reproduced, Capture: path, Ladder: LadderOptions{MaxPackets: 30, Marks: marks}}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	svg := svgByID(t, readHTML(t, dir), "ladder")
	var got []string
	for _, g := range find(svg, elem("g", "pkt")) {
		if hasClass(g, "marked") {
			got = append(got, attr(g, "data-mark"))
		}
	}
	if fmt.Sprint(got) != "[packet 120 packet 250]" {
		t.Errorf("marked arrows drawn %v, want both marks", got)
	}
}

// With an lb, the columns are client, lb, server with a device lane
// between each pair, whatever order the ports were created in.
func TestWrite_LadderThreeHosts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pcapng")
	c := newCapWriter(t, path, "server", "lb", "client")
	c.pass("client", "lb", 0, seg(clientIP, 6000, lbIP, 80, packet.SYN, 1, 0, 0))
	c.pass("lb", "server", time.Millisecond, seg(lbIP, 7000, serverIP, 8080, packet.SYN, 9, 0, 0))
	c.close()
	r := &Report{Scenario: "lb", Outcome: Reproduced, Expected: Reproduced, Capture: path}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	svg := svgByID(t, readHTML(t, dir), "ladder")
	var names []string
	for _, h := range find(svg, elem("g", "head")) {
		names = append(names, text(find(h, elem("text", "name"))[0]))
	}
	if fmt.Sprint(names) != "[faultbox faultbox client lb server]" {
		t.Errorf("column heads %v", names)
	}
	g := ladGeom{n: 3}
	pkts := find(svg, elem("g", "pkt"))
	for i, want := range [][2]float64{{g.host(0), g.host(1)}, {g.host(1), g.host(2)}} {
		l := find(pkts[i], elem("line", ""))[0]
		if attr(l, "x1") != fmt.Sprintf("%.1f", want[0]) || attr(l, "x2") != fmt.Sprintf("%.1f", want[1]) {
			t.Errorf("arrow %d from %s to %s, want %.1f to %.1f", i, attr(l, "x1"), attr(l, "x2"), want[0], want[1])
		}
	}
}

func TestReadCapture_PairsRecordsAndFilters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pcapng")
	writeASACapture(t, path)
	all, err := ReadCapture(path, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if all.Records != 24 || len(all.Packets) != 13 || fmt.Sprint(all.Ports) != "[client server]" {
		t.Fatalf("records %d packets %d ports %v, want 24 13 [client server]", all.Records, len(all.Packets), all.Ports)
	}
	resp := all.Packets[5]
	if resp.From != "server" || resp.To != "client" || !resp.Delayed || resp.Note != "delayed 20ms" ||
		resp.Out.Sub(resp.In) != 20*time.Millisecond || resp.Len != 200 {
		t.Errorf("delayed response: %+v", resp)
	}
	inj := all.Packets[10]
	if !inj.Injected || inj.From != "" || inj.To != "server" || inj.Note != "asa-teardown: rst to server" || !inj.In.IsZero() {
		t.Errorf("injected RST: %+v", inj)
	}
	if d := all.Packets[11]; !d.Dropped || d.To != "" || d.Note != "asa-teardown: flow forgotten" {
		t.Errorf("dropped FIN: %+v", d)
	}
	byConn, err := ReadCapture(path, Filter{Conns: []Conn{{A: netipAP(serverIP, 8080), B: netipAP(clientIP, 40400)}}})
	if err != nil || len(byConn.Packets) != 1 || byConn.Packets[0].Dst.Port() != 8080 {
		t.Errorf("filter by connection: %v %+v", err, byConn)
	}
	byPort, _ := ReadCapture(path, Filter{Ports: []uint16{80}})
	if len(byPort.Packets) != 12 {
		t.Errorf("filter by port: %d packets, want 12", len(byPort.Packets))
	}
}

// A tuple reused by a new connection (new SYN after an RST, other ISN) gets
// its own number and its own relative sequence numbers; IPv6 as well.
func TestWrite_LadderTupleReuseIPv6(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pcapng")
	c6, s6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	c := newCapWriter(t, path, "client", "server")
	ms := time.Millisecond
	c.pass("client", "server", 0, seg(c6, 9000, s6, 80, packet.SYN, 100, 0, 0))
	c.pass("server", "client", 1*ms, seg(s6, 80, c6, 9000, packet.RST|packet.ACK, 0, 101, 0))
	c.pass("client", "server", 2*ms, seg(c6, 9000, s6, 80, packet.SYN, 5000, 0, 0))
	c.pass("server", "client", 3*ms, seg(s6, 80, c6, 9000, packet.SYN|packet.ACK, 70, 5001, 0))
	c.close()
	r := &Report{Scenario: "reuse", Outcome: Reproduced, Expected: Reproduced, Capture: path}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	pkts := find(svgByID(t, readHTML(t, dir), "ladder"), elem("g", "pkt"))
	var got []string
	for _, g := range pkts {
		got = append(got, attr(g, "data-conn")+" "+pktLabel(g))
	}
	want := []string{"1 [S] seq 0", "1 [R.] seq 0 ack 1", "2 [S] seq 0", "2 [S.] seq 0 ack 1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("arrows\n got %q\nwant %q", got, want)
	}
	if title := text(find(pkts[2], elem("title", ""))[0]); !strings.Contains(title, "[2001:db8::1]:9000 → [2001:db8::2]:80") {
		t.Errorf("title %q", title)
	}
}

// A packet a behavior changed without a note (a FIN stripped from a data
// segment) is paired by its tuple and shown as it left.
func TestReadCapture_ModifiedPacket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcapng")
	c := newCapWriter(t, path, "client", "server")
	in := seg(clientIP, 9000, serverIP, 80, packet.FIN|packet.PSH|packet.ACK, 10, 20, 5)
	out := in
	out.Flags = packet.PSH | packet.ACK
	c.record("client", 0, false, "", 0, in)
	c.record("server", time.Microsecond, true, "", 0, out)
	c.close()
	cp, err := ReadCapture(path, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cp.Packets) != 1 {
		t.Fatalf("%d packets, want 1", len(cp.Packets))
	}
	p := cp.Packets[0]
	if !p.Modified || p.Dropped || p.Flags != packet.PSH|packet.ACK || p.From != "client" || p.To != "server" {
		t.Errorf("modified packet: %+v", p)
	}
}

// A capture already in the report directory is kept where it is.
func TestWrite_KeepsCaptureInPlace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lab.pcapng")
	writeASACapture(t, path)
	before, _ := os.ReadFile(path)
	r := &Report{Scenario: "keep", Outcome: Reproduced, Expected: Reproduced, Capture: path}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil || string(before) != string(after) {
		t.Fatalf("capture changed: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, VerdictFile))
	if !strings.Contains(string(b), `"capture_file": "lab.pcapng"`) || strings.Contains(string(b), `"warnings"`) {
		t.Errorf("verdict.json: %s", b)
	}
	// The default filter: every TCP packet of both connections.
	if n := len(find(svgByID(t, readHTML(t, dir), "ladder"), elem("g", "pkt"))); n != 13 {
		t.Errorf("%d arrows, want 13", n)
	}
}
