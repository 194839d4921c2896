package tcpext

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
)

// window-scale-mangling: a router rewrites the window scale option of the
// server's SYN-ACK (or strips it), so that client and server disagree on
// the scale (docs/field-failures.md#window-scale-mangling). Three paths
// run side by side, one port each: clean, the SYN-ACK's shift rewritten
// to 0, the option stripped. On each the client uploads 1 MiB, then
// downloads 1 MiB on a second connection; each end's tcp_info is read
// after the upload's handshake, during it and after the download.

const (
	wsCleanPort   = 8501
	wsRewritePort = 8502
	wsStripPort   = 8503
	wsSize        = 1 << 20
	wsUploadFor   = 3 * time.Second // how long an upload may take before the client gives up
	wsUploadPeek  = 1500 * time.Millisecond
	armWSClean    = "clean path"
	armWSRewrite  = "SYN-ACK shift rewritten to 0"
	armWSStrip    = "SYN-ACK option stripped"
	wsLog         = "sockets"
)

const wsProfile = `name: window-scale-mangling
description: >-
  Three paths, one per server port: 8501 is clean, 8502 rewrites the window
  scale of the server's SYN-ACK to a shift of 0 and leaves the option in
  place (the built-in wscale-zeroing-router), 8503 strips the option from
  the SYN-ACK.
sources:
  - "TechRepublic, 'Try this workaround for time-out issues in kernel 2.6.17 and higher', 2006, http://www.techrepublic.com/article/try-this-workaround-for-time-out-issues-in-kernel-2617-and-higher/6174075/"
  - "docs/field-failures.md#window-scale-mangling"
behaviors:
  - type: wscale-mangle
    match: {protocol: tcp, port: 8502}
    on: syn-ack
    mode: rewrite
    shift: 0
  - type: wscale-mangle
    match: {protocol: tcp, port: 8503}
    on: syn-ack
    mode: strip
`

var wsArms = []arm{
	{name: armWSClean, port: wsCleanPort, change: "port 8501: nothing changed"},
	{name: armWSRewrite, port: wsRewritePort, change: "port 8502: wscale-mangle on the SYN-ACK, shift rewritten to 0 (the built-in wscale-zeroing-router)"},
	{name: armWSStrip, port: wsStripPort, change: "port 8503: wscale-mangle on the SYN-ACK, option stripped"},
}

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "window-scale-mangling",
		Summary: "a router rewrites or strips the SYN-ACK's window scale: the peers disagree on the scale and uploads crawl",
		Description: "When Linux 2.6.17 raised its default window scale, connections through some routers and firewalls crawled " +
			"or timed out: the devices rewrote the window scale option to a shift of 0 and left it in place. Here the device does that " +
			"to the server's SYN-ACK, or strips the option from it, so that the server scales its advertised windows while the client " +
			"reads them unscaled. Three paths run side by side, clean, rewritten and stripped; on each the client uploads 1 MiB " +
			"(given 3 s), then downloads 1 MiB on a second connection, and each end's view of the connections (tcp_info) is read " +
			"after the handshake, during the upload and after the download.",
		ProfileYAML: wsProfile,
		Budget:      15 * time.Second,
		Drive:       driveWS,
		Judge:       judgeWS,
	})
}

func driveWS(c *scenario.Context) error {
	flags := []string{"--keepalive-timeout", "10s"}
	for _, a := range wsArms {
		flags = append(flags, "--listen", scenario.Addr("server", a.port))
	}
	if _, err := c.Serve("server", "serve", flags...); err != nil {
		return err
	}
	log, err := c.KernelLog("client", wsLog)
	if err != nil {
		return err
	}
	for _, h := range []string{"client", "server"} {
		if err := c.SegmentsOnly(h); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for _, a := range wsArms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wsClient(c, log, a)
		}()
	}
	wg.Wait()
	return nil
}

// wsClient uploads wsSize bytes on one connection, then downloads as many
// on another, recording each as a client result of its own. Both ends'
// tcp_info is read after the upload's handshake, during the upload and at
// its end, and after the download. The upload's Bytes are the body bytes
// the server acknowledged.
func wsClient(c *scenario.Context, log *scenario.KernelLog, a arm) {
	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: server\r\nUser-Agent: faultbox-scenario\r\nContent-Length: %d\r\n\r\n", wsSize)
	wsConn(c, log, scenario.ClientResult{Name: fmt.Sprintf("upload :%d", a.port), Arm: a.name}, a.port, func(conn *net.TCPConn, r *scenario.ClientResult, snap func(string) sockView) {
		snap("handshake")
		c.Step("client", "[%s] uploads %s", a.name, scenario.ByteSize(wsSize))
		conn.SetDeadline(r.Start.Add(wsUploadFor))
		done := make(chan error, 1)
		go func() { done <- post(conn, bufio.NewReader(conn), head, wsSize) }()
		var err error
		select {
		case err = <-done:
			snap("upload") // finished before the peek: read it now
		case <-time.After(wsUploadPeek):
			snap("upload")
			err = <-done
		}
		r.SetErr(err)
		if body := int64(snap("upload end").BytesAcked) - int64(len(head)); body > 0 {
			r.Bytes = min(body, wsSize)
		}
	})
	wsConn(c, log, scenario.ClientResult{Name: fmt.Sprintf("download :%d", a.port), Arm: a.name}, a.port, func(conn *net.TCPConn, r *scenario.ClientResult, snap func(string) sockView) {
		c.Step("client", "[%s] downloads %s", a.name, scenario.ByteSize(wsSize))
		conn.SetDeadline(r.Start.Add(wsUploadFor))
		var err error
		r.Status, r.Bytes, err = scenario.Get(conn, bufio.NewReader(conn), fmt.Sprintf("/bytes/%d", wsSize), false, -1)
		r.SetErr(err)
		snap("download")
	})
}

// wsConn runs fn on a new connection to port and records r. snap reads
// both ends' tcp_info into the kernel log, labelled "ARM WHEN HOST", and
// returns the client's.
func wsConn(c *scenario.Context, log *scenario.KernelLog, r scenario.ClientResult, port int, fn func(*net.TCPConn, *scenario.ClientResult, func(string) sockView)) {
	c.RunClient(r, scenario.Addr("server", port), 2*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		snap := func(when string) (client sockView) {
			for _, host := range []string{"client", "server"} {
				local, remote := r.Local, r.Remote
				if host == "server" {
					local, remote = remote, local
				}
				v, err := logSocket(c, log, host, r.Arm+" "+when+" "+host, local, remote)
				if err != nil {
					c.Note("%s: %v", r.Arm, err)
				}
				if host == "client" {
					client = v
				}
			}
			return client
		}
		fn(conn, r, snap)
	})
}

// post sends head and an n-byte body and reads the response.
func post(conn net.Conn, br *bufio.Reader, head string, n int) error {
	if _, err := io.WriteString(conn, head); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	chunk := make([]byte, 64<<10)
	for left := n; left > 0; {
		w, err := conn.Write(chunk[:min(left, len(chunk))])
		left -= w
		if err != nil {
			return fmt.Errorf("upload: %d of %d bytes written: %w", n-left, n, err)
		}
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("upload response: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// wsResult is what the evidence shows of one arm.
type wsResult struct {
	arm
	ul, dl             scenario.ClientResult
	mangled            bool           // the device's note on the upload's SYN-ACK
	synack, probe      *report.Packet // the mangled SYN-ACK; the first segment the client sent after waiting on the window
	probeWait          time.Duration  // how long it waited
	client, server     sockView       // after the upload's handshake
	upClient, upServer sockView       // during the upload
	dlServer           sockView       // after the download
	throughput         float64        // of the upload, bytes/s
	stalled, failed    bool
}

func judgeWS(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	res := map[string]*wsResult{}
	for _, a := range wsArms {
		w := &wsResult{arm: a}
		var bad *scenario.Verdict
		if w.ul, bad = armResult(e, a.name, "upload"); bad != nil {
			return *bad
		}
		if w.dl, bad = armResult(e, a.name, "download"); bad != nil {
			return *bad
		}
		pkts := e.Packets(w.ul.Local, w.ul.Remote)
		var last time.Time
		for i := range pkts {
			p := &pkts[i]
			switch {
			case p.Flags&(packet.SYN|packet.ACK) == packet.SYN|packet.ACK && strings.Contains(p.Note, "wscale-mangle"):
				w.mangled, w.synack = true, p
			case report.SameEnd(p.Src, w.ul.Local):
				// A data segment after a silence of 150 ms or more: the
				// client waited for a window it believed was full.
				if p.Len > 0 && w.probe == nil && !last.IsZero() && p.When().Sub(last) >= 150*time.Millisecond {
					w.probe, w.probeWait = p, p.When().Sub(last)
				}
				last = p.When()
			}
		}
		at := func(when, host string) sockView { return socketAt(e, wsLog, a.name+" "+when+" "+host) }
		w.client, w.server = at("handshake", "client"), at("handshake", "server")
		w.dlServer = at("download", "server")
		w.upClient, w.upServer = at("upload", "client"), at("upload", "server")
		if d := w.ul.End.Sub(w.ul.Start); d > 0 {
			w.throughput = float64(w.ul.Bytes) / d.Seconds()
		}
		w.stalled = w.ul.Err != "" || w.ul.Bytes < wsSize
		res[a.name] = w
		if a.name != armWSClean { // a clean upload is a thousand segments: the table has it
			v.Ladder = append(v.Ladder, report.Conn{A: w.ul.Local, B: w.ul.Remote})
		}
	}
	clean, rw, strip := res[armWSClean], res[armWSRewrite], res[armWSStrip]
	for _, w := range []*wsResult{rw, strip} {
		v.Marks = mark(v.Marks, w.synack, "window scale mangled: the client reads the server's windows unscaled")
		if w.probe != nil {
			v.Marks = mark(v.Marks, w.probe, fmt.Sprintf("%d bytes after %s: all the window the client believes it has", w.probe.Len, scenario.Millis(w.probeWait)))
		}
	}
	for _, w := range []*wsResult{clean, rw, strip} {
		// The failure: the device mangled the SYN-ACK, the client's upload
		// stalled at a tenth of the clean path's rate or less, and the
		// client believed a window many times smaller than the server had.
		w.failed = w.mangled && w.stalled && clean.throughput > 0 && w.throughput < clean.throughput/10 &&
			w.upClient.Seen && w.upServer.Seen && uint64(w.upClient.SndWnd)*16 < uint64(w.upServer.RcvWnd)
		v.Runs = append(v.Runs, report.Run{Name: w.name, Change: w.change, Outcome: scenario.OutcomeIf(w.failed), Reason: w.describe()})
		v.Timeline = append(v.Timeline, e.Entry(w.ul.End, "client", "[%s] upload: %s of %s acknowledged in %s%s", w.name,
			scenario.ByteSize(uint32(w.ul.Bytes)), scenario.ByteSize(wsSize), scenario.Secs(w.ul.End.Sub(w.ul.Start)), errSuffix(w.ul)))
	}
	v.Results = wsTable(clean, rw, strip)
	if rw.failed {
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("with the SYN-ACK's window scale rewritten to 0 the upload crawled at %s against %s on the clean path (%s of %s acknowledged in %s): "+
			"the server advertised a %s window (%s), the client read it as %s (%s)",
			rate(rw.throughput), rate(clean.throughput), scenario.ByteSize(uint32(rw.ul.Bytes)), scenario.ByteSize(wsSize), scenario.Secs(rw.ul.End.Sub(rw.ul.Start)),
			scenario.ByteSize(rw.upServer.RcvWnd), rw.upServer.scales(), scenario.ByteSize(rw.upClient.SndWnd), rw.upClient.scales())
		if strip.failed {
			v.Reason += fmt.Sprintf("; with the option stripped the upload crawled too (%s), the client turned scaling off and the server read its unscaled window as %s",
				rate(strip.throughput), scenario.ByteSize(strip.dlServer.SndWnd))
		}
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("the peers agreed on the window — %s: %s; %s: %s", rw.name, rw.describe(), strip.name, strip.describe())
	}
	return v
}

// describe is one arm's line.
func (w *wsResult) describe() string {
	var b strings.Builder
	if w.mangled {
		b.WriteString("SYN-ACK mangled by the device; ")
	}
	fmt.Fprintf(&b, "client: %s, server: %s; ", w.client.scales(), w.server.scales())
	fmt.Fprintf(&b, "upload %s of %s in %s (%s)%s; during it the server advertised %s, the client believed %s",
		scenario.ByteSize(uint32(w.ul.Bytes)), scenario.ByteSize(wsSize), scenario.Secs(w.ul.End.Sub(w.ul.Start)), rate(w.throughput), errSuffix(w.ul),
		scenario.ByteSize(w.upServer.RcvWnd), scenario.ByteSize(w.upClient.SndWnd))
	fmt.Fprintf(&b, "; download %s in %s%s (the server read the client's window as %s, retransmitted %s)",
		scenario.ByteSize(uint32(w.dl.Bytes)), scenario.Secs(w.dl.End.Sub(w.dl.Start)), errSuffix(w.dl), scenario.ByteSize(w.dlServer.SndWnd),
		scenario.ByteSize(uint32(w.dlServer.BytesRetrans)))
	return b.String()
}

func errSuffix(r scenario.ClientResult) string {
	if r.Err == "" {
		return ""
	}
	return " (" + r.Kind + ")"
}

// wsTable is the report's table: one row per arm.
func wsTable(ws ...*wsResult) *report.Table {
	t := &report.Table{Columns: []string{"path", "SYN-ACK", "client's scaling", "server's scaling", "upload acknowledged", "upload rate",
		"server advertised", "client believed", "client held by the window", "download", "client's window as the server read it"}}
	for _, w := range ws {
		synack := "as sent"
		if w.mangled {
			synack = "mangled"
		}
		t.Rows = append(t.Rows, []string{w.name, synack, w.client.scales(), w.server.scales(),
			fmt.Sprintf("%s in %s", scenario.ByteSize(uint32(w.ul.Bytes)), scenario.Secs(w.ul.End.Sub(w.ul.Start))), rate(w.throughput),
			scenario.ByteSize(w.upServer.RcvWnd), scenario.ByteSize(w.upClient.SndWnd),
			scenario.Millis(time.Duration(w.upClient.RwndLimited) * time.Microsecond),
			fmt.Sprintf("%s in %s", scenario.ByteSize(uint32(w.dl.Bytes)), scenario.Secs(w.dl.End.Sub(w.dl.Start))),
			scenario.ByteSize(w.dlServer.SndWnd)})
	}
	return t
}

// rate renders a throughput in bytes per second.
func rate(bps float64) string {
	switch {
	case bps >= 1<<20:
		return fmt.Sprintf("%.1f MiB/s", bps/(1<<20))
	case bps >= 1<<10:
		return fmt.Sprintf("%.1f KiB/s", bps/(1<<10))
	}
	return fmt.Sprintf("%.0f bytes/s", bps)
}

// armResult is the client result of the arm named name whose own name
// starts with prefix, or an error verdict when it is missing or never
// connected.
func armResult(e *scenario.Evidence, name, prefix string) (scenario.ClientResult, *scenario.Verdict) {
	for _, r := range e.Client(name) {
		if !strings.HasPrefix(r.Name, prefix) {
			continue
		}
		if !r.Local.IsValid() {
			return r, &scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("%s: the %s client never connected (%s)", name, prefix, r.Err)}
		}
		return r, nil
	}
	return scenario.ClientResult{}, &scenario.Verdict{Outcome: report.Error, Reason: fmt.Sprintf("%s: no %s client result", name, prefix)}
}
