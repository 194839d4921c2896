package asa

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// The client of the ASA scenarios cancels a download; what the evidence
// shows of each cancelled download is read here for both judges.

// cancelDownloads is the drive of both ASA scenarios: one capture record
// per segment on both hosts, the server's sockets sampled, and one
// cancelled download per arm (names[i] on ports[i]), all at once.
func cancelDownloads(c *scenario.Context, names []string, ports []int) error {
	for _, h := range []string{"client", "server"} {
		if err := c.SegmentsOnly(h); err != nil {
			return err
		}
	}
	if err := c.Sample("server", sockdiag.Filter{}, 0); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cancelDownload(c, fmt.Sprintf("client :%d", ports[i]), names[i], ports[i], 16<<10)
		}()
	}
	wg.Wait()
	return nil
}

// cancelDownload is the client of the ASA report: it asks for a response
// far larger than it will take, reads keep bytes of it and 2 ms more, then
// cancels as a browser does: shutdown(SHUT_WR) sends its FIN while the
// server still has data in flight, and close() follows 20 ms later (with
// unread data, so the kernel adds a RST). It records its result.
func cancelDownload(c *scenario.Context, name, arm string, port int, keep int64) {
	c.RunClient(scenario.ClientResult{Name: name, Arm: arm}, scenario.Addr("server", port), 2*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		// A fixed 64 KiB receive buffer (no autotuning) keeps the window,
		// and so what is in flight when the client vanishes, browser-sized.
		conn.SetReadBuffer(64 << 10)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		status, n, err := scenario.Get(conn, br, "/bytes/4gib", false, keep)
		r.Status, r.Bytes = status, n
		if err != nil {
			r.SetErr(err)
			return
		}
		// Read on at full speed for 2 ms so that the window is
		// open and the server has data on the wire when the FIN leaves, as
		// with a browser cancelling a download that is flowing.
		conn.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		more, _ := io.Copy(io.Discard, br)
		n += more
		r.Bytes = n
		c.Step(name, "cancels the download after %s of the body: shutdown(SHUT_WR) sends its FIN", scenario.ByteSize(uint32(n)))
		if err := conn.CloseWrite(); err != nil {
			r.SetErr(err)
		}
		time.Sleep(20 * time.Millisecond)
		r.Detail = fmt.Sprintf("cancelled after %s: FIN, then close() with unread data", scenario.ByteSize(uint32(n)))
	})
}

// waitServerSocketsGone waits until the server has no connected socket
// (TIME-WAIT aside) on ports, or timeout; then samples a little longer so
// the evidence shows them gone.
func waitServerSocketsGone(c *scenario.Context, ports []int, timeout time.Duration, what string) error {
	live := sockdiag.StateMask(sockdiag.Established, sockdiag.SynRecv, sockdiag.FinWait1, sockdiag.FinWait2,
		sockdiag.CloseWait, sockdiag.LastAck, sockdiag.Closing)
	_, err := c.WaitFor(what, timeout, func() bool {
		socks, err := c.Sockets("server", sockdiag.Filter{States: live})
		if err != nil {
			return false
		}
		return !slices.ContainsFunc(socks, func(s sockdiag.Socket) bool { return slices.Contains(ports, int(s.Src.Port())) })
	})
	if err != nil {
		return err
	}
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

// download is what the evidence shows of one cancelled download.
type download struct {
	client, server netip.AddrPort
	isn            uint32 // the client's ISN, for relative sequence numbers
	hasISN         bool

	fin          *report.Packet // the client's FIN as the device got it
	finDelivered bool           // ... and it reached the server
	rst          *report.Packet // the device's RST to the server
	rcvNxt       uint32         // the server's RCV.NXT when the RST arrived
	ackSeen      bool           // the server acknowledged up to rcvNxt
	offset       int32          // rst.Seq - rcvNxt
	clientRST    bool           // the client's own RST reached the server

	droppedServer int // server segments dropped by the device after the teardown
	challengeACKs int
	firstDrop     time.Time
	gone          time.Time // client gone: the RST, else its FIN, else its end
	life          scenario.Life
	stateAtGone   sockdiag.State
	stuckState    sockdiag.State // state 1 s after gone, if still there
	stuckUnacked  uint32         // bytes unacknowledged (send queue) then
	stuckTimers   []sockdiag.Timer
	stuck         bool               // still there with unacked data 1 s after gone
	lived         time.Duration      // from gone until the socket was gone (or sampling ended)
	stillThere    bool               // present at the last sample
	unsampled     bool               // opened and closed between two samples
	logErr        *scenario.LogEvent // serve's first error or close on the connection after gone
	logErrAfter   time.Duration      // ... after gone
}

// realDrop reports whether the device dropped p (the capture says why),
// as opposed to an arrival the capture reader could not pair with its
// departure (GSO super-packets split on the way).
func realDrop(p *report.Packet) bool {
	return p.Dropped && !strings.HasPrefix(p.Note, "not seen leaving")
}

// stuckAfter is how long a server socket must outlive the client with
// data unacknowledged to count as stuck.
const stuckAfter = time.Second

// readDownload reads the cancelled download of client r, whose server
// logs as serveName, from the evidence: the packets, then the server
// socket's life, then the server's log.
func readDownload(e *scenario.Evidence, r scenario.ClientResult, serveName string) download {
	d := download{client: r.Local, server: r.Remote}
	pkts := e.Packets(r.Local, r.Remote)
	for i := range pkts {
		d.addPacket(pkts[i])
	}
	for _, p := range pkts {
		if report.SameEnd(p.Src, r.Remote) && !p.Injected && p.Flags&packet.ACK != 0 && p.Ack == d.rcvNxt {
			d.ackSeen = true
		}
	}
	switch {
	case d.rst != nil:
		d.gone = d.rst.Out
		d.offset = int32(d.rst.Seq - d.rcvNxt)
	case d.fin != nil:
		d.gone = d.fin.When()
	default:
		d.gone = r.End
	}
	d.readSocket(e)
	d.readLog(e, serveName)
	return d
}

// addPacket takes in one packet of the connection, in capture order: the
// client's ISN, FIN and RST, the device's RST, the server's RCV.NXT up to
// that RST, and the server's segments the device dropped after it.
func (d *download) addPacket(p report.Packet) {
	fromClient := report.SameEnd(p.Src, d.client)
	switch {
	case fromClient && p.Flags&(packet.SYN|packet.ACK) == packet.SYN && !d.hasISN:
		d.isn, d.hasISN = p.Seq, true
	case p.Injected && p.Flags&packet.RST != 0 && report.SameEnd(p.Dst, d.server) && d.rst == nil:
		d.rst = &p
	case fromClient && !p.Injected && d.fin == nil && (p.Flags&packet.FIN != 0 || strings.Contains(p.Note, "FIN")):
		d.fin = &p
		d.finDelivered = !p.Dropped && p.Flags&packet.FIN != 0
	}
	if fromClient && !p.Injected && !p.Dropped && p.Flags&packet.RST != 0 {
		d.clientRST = true
	}
	if fromClient && !p.Injected && !p.Dropped && (d.rst == nil || !p.When().After(d.rst.Out)) {
		end := p.Seq + uint32(p.Len)
		if p.Flags&(packet.SYN|packet.FIN) != 0 {
			end++
		}
		if d.rcvNxt == 0 || flow.SeqAfter(end, d.rcvNxt) {
			d.rcvNxt = end
		}
	}
	if !fromClient && !p.Injected && realDrop(&p) && d.rst != nil {
		if d.droppedServer == 0 {
			d.firstDrop = p.When()
		}
		d.droppedServer++
		if strings.Contains(p.Note, "challenge") {
			d.challengeACKs++
		}
	}
}

// readSocket reads the server socket's life from the samples: how long it
// outlived the client, and whether it was stuck with data unacknowledged.
func (d *download) readSocket(e *scenario.Evidence) {
	d.life = e.Socket("server", d.server, d.client)
	d.stateAtGone, _ = d.life.StateAt(d.gone)
	if sr := e.Sockets["server"]; !d.life.Seen && sr != nil {
		// Too quick for the sampler: the first tick after the client was
		// gone bounds when it went.
		for _, tick := range sr.Ticks {
			if at := sr.Start.Add(tick); at.After(d.gone) {
				d.unsampled, d.lived = true, at.Sub(d.gone)
				break
			}
		}
	}
	if !d.life.Seen {
		return
	}
	end := d.life.Gone
	if end.IsZero() {
		end, d.stillThere = d.life.End, true
	}
	d.lived = end.Sub(d.gone)
	if st, ok := d.life.StateAt(d.gone.Add(stuckAfter)); ok {
		d.stuckState = st
		for _, sp := range d.life.Spans {
			if sp.State == st && !sp.To.Before(d.gone.Add(stuckAfter)) {
				d.stuckUnacked = max(d.stuckUnacked, sp.MaxSendQ)
				d.stuckTimers = sp.Timers
			}
		}
		d.stuck = d.stuckUnacked > 0
	}
}

// readLog finds serve's first error or close on the connection after the
// client was gone.
func (d *download) readLog(e *scenario.Evidence, serveName string) {
	for _, ev := range e.ConnLog(serveName, d.client) {
		if (ev.Event.Event == "error" || ev.Event.Event == "close") && !ev.At.Before(d.gone.Add(-5*time.Millisecond)) {
			d.logErr = &ev
			d.logErrAfter = ev.At.Sub(d.gone)
			break
		}
	}
}

// rel renders a client sequence number relative to its ISN, as the 2015
// report did (276, 277).
func (d *download) rel(seq uint32) string {
	if !d.hasISN {
		return fmt.Sprint(seq)
	}
	return fmt.Sprint(seq - d.isn)
}

// logText is serve's error or close on the connection, briefly.
func (d *download) logText() string {
	if d.logErr == nil {
		return ""
	}
	ev := d.logErr.Event
	s := ev.Err
	if s == "" {
		s = "close (" + ev.Reason + ")"
	}
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "write") {
		s = "write failed: " + s[i+2:]
	}
	return s
}

// fate says in a few words what became of the server socket.
func (d *download) fate() string {
	switch {
	case d.unsampled:
		return fmt.Sprintf("server socket opened and gone between two samples: gone by the first sample after the client was gone (%s)", scenario.Millis(d.lived))
	case !d.life.Seen:
		return "the server socket was never sampled"
	case d.stuck && d.stillThere:
		return fmt.Sprintf("server socket stuck in %s with %s unacknowledged%s, still there %s after the client was gone",
			d.stuckState, scenario.ByteSize(d.stuckUnacked), d.timerText(), scenario.Secs(d.lived))
	case d.stuck:
		return fmt.Sprintf("server socket stuck in %s with %s unacknowledged%s for %s",
			d.stuckState, scenario.ByteSize(d.stuckUnacked), d.timerText(), scenario.Secs(d.lived))
	case d.stillThere:
		return fmt.Sprintf("server socket still there (%s, nothing unacknowledged) when sampling ended", d.stuckState)
	}
	if d.lived < 100*time.Millisecond {
		return fmt.Sprintf("server socket gone by the next sample, %s after the client was gone", scenario.Millis(max(0, d.lived)))
	}
	return fmt.Sprintf("server socket gone %s after the client was gone", scenario.Secs(d.lived))
}

// ladderConn is the connection for the ladder diagram.
func (d *download) ladderConn() report.Conn { return report.Conn{A: d.client, B: d.server} }

// timeline adds what the evidence shows of the teardown, labelled.
func (d *download) timeline(e *scenario.Evidence, label string) []report.Entry {
	var out []report.Entry
	if d.fin != nil {
		what := "forwarded to the server"
		if !d.finDelivered {
			what = "swallowed by the device (" + strings.TrimPrefix(d.fin.Note, "asa-teardown: ") + ")"
		}
		out = append(out, e.Entry(d.fin.When(), "client", "%s FIN seq %s %s", label, d.rel(d.fin.Seq), what))
	}
	if d.rst != nil {
		ack := ""
		if d.ackSeen {
			ack = ", as the server's own ACK shows"
		}
		out = append(out, e.Entry(d.rst.Out, "device", "%s RST to the server, seq %s where the server's RCV.NXT was %s%s: off by %+d",
			label, d.rel(d.rst.Seq), d.rel(d.rcvNxt), ack, d.offset))
	}
	if d.droppedServer > 0 {
		out = append(out, e.Entry(d.firstDrop, "device", "%s drops the server's segments from here on: %d dropped, %d of them challenge ACKs",
			label, d.droppedServer, d.challengeACKs))
	}
	if d.stuck {
		out = append(out, e.Entry(d.gone.Add(stuckAfter), "server", "%s socket still %s with %s unacknowledged%s",
			label, d.stuckState, scenario.ByteSize(d.stuckUnacked), d.timerText()))
	}
	if d.logErr != nil {
		out = append(out, e.Entry(d.logErr.At, "server", "%s serve: %s (%s after the client was gone)", label, d.logText(), scenario.Secs(d.logErrAfter)))
	}
	if d.life.Seen && !d.stillThere {
		out = append(out, e.Entry(d.life.Gone, "server", "%s socket gone (last seen %s)", label, d.life.LastState()))
	}
	return out
}

// timerText names the pending timers of the stuck socket.
func (d *download) timerText() string {
	var names []string
	for _, tm := range d.stuckTimers {
		switch tm {
		case sockdiag.TimerOn:
			names = append(names, "retransmitting")
		case sockdiag.TimerPersist:
			names = append(names, "probing a zero window")
		default:
			names = append(names, tm.String()+" timer")
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (" + strings.Join(names, ", then ") + ")"
}
