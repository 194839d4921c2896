package scenario

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// Helpers shared by the scenarios of a client that cancels a download
// behind a Cisco ASA (asa-off-by-one, asa-stuck-send).

// cancelDownload is the client of the ASA report: it asks for a response
// far larger than it will take, reads keep bytes of it and 2 ms more, then
// cancels as a browser does: shutdown(SHUT_WR) sends its FIN while the
// server still has data in flight, and close() follows 20 ms later (with
// unread data, so the kernel adds a RST). It records its result.
func cancelDownload(c *Context, name, arm string, port int, keep int64) {
	c.runClient(ClientResult{Name: name, Arm: arm}, Addr("server", port), 2*time.Second, func(conn *net.TCPConn, r *ClientResult) {
		// A fixed 64 KiB receive buffer (no autotuning) keeps the window,
		// and so what is in flight when the client vanishes, browser-sized.
		conn.SetReadBuffer(64 << 10)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		status, n, err := Get(conn, br, "/bytes/4gib", false, keep)
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
		c.Step(name, "cancels the download after %s of the body: shutdown(SHUT_WR) sends its FIN", bytesText(uint32(n)))
		if err := conn.CloseWrite(); err != nil {
			r.SetErr(err)
		}
		time.Sleep(20 * time.Millisecond)
		r.Detail = fmt.Sprintf("cancelled after %s: FIN, then close() with unread data", bytesText(uint32(n)))
	})
}

// teardown is what the evidence shows of one cancelled download.
type teardown struct {
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
	life          Life
	stateAtGone   sockdiag.State
	stuckState    sockdiag.State // state 1 s after gone, if still there
	stuckUnacked  uint32         // bytes unacknowledged (send queue) then
	stuckTimers   []sockdiag.Timer
	stuck         bool          // still there with unacked data 1 s after gone
	lived         time.Duration // from gone until the socket was gone (or sampling ended)
	stillThere    bool          // present at the last sample
	unsampled     bool          // opened and closed between two samples
	logErr        *LogEvent     // serve's first error or close on the connection after gone
	logErrAfter   time.Duration // ... after gone
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

func analyzeTeardown(e *Evidence, r ClientResult, serveName string) teardown {
	t := teardown{client: r.Local, server: r.Remote}
	for _, p := range e.Packets(r.Local, r.Remote) {
		fromClient := report.SameEnd(p.Src, r.Local)
		switch {
		case fromClient && p.Flags&(packet.SYN|packet.ACK) == packet.SYN && !t.hasISN:
			t.isn, t.hasISN = p.Seq, true
		case p.Injected && p.Flags&packet.RST != 0 && report.SameEnd(p.Dst, r.Remote) && t.rst == nil:
			t.rst = &p
		case fromClient && !p.Injected && t.fin == nil && (p.Flags&packet.FIN != 0 || strings.Contains(p.Note, "FIN")):
			t.fin = &p
			t.finDelivered = !p.Dropped && p.Flags&packet.FIN != 0
		}
		if fromClient && !p.Injected && !p.Dropped && p.Flags&packet.RST != 0 {
			t.clientRST = true
		}
		if fromClient && !p.Injected && !p.Dropped && (t.rst == nil || !p.When().After(t.rst.Out)) {
			end := p.Seq + uint32(p.Len)
			if p.Flags&(packet.SYN|packet.FIN) != 0 {
				end++
			}
			if t.rcvNxt == 0 || flow.SeqAfter(end, t.rcvNxt) {
				t.rcvNxt = end
			}
		}
		if !fromClient && !p.Injected {
			if realDrop(&p) && t.rst != nil {
				if t.droppedServer == 0 {
					t.firstDrop = p.When()
				}
				t.droppedServer++
				if strings.Contains(p.Note, "challenge") {
					t.challengeACKs++
				}
			}
		}
	}
	for _, p := range e.Packets(r.Local, r.Remote) {
		if report.SameEnd(p.Src, r.Remote) && !p.Injected && p.Flags&packet.ACK != 0 && p.Ack == t.rcvNxt {
			t.ackSeen = true
		}
	}
	switch {
	case t.rst != nil:
		t.gone = t.rst.Out
		t.offset = int32(t.rst.Seq - t.rcvNxt)
	case t.fin != nil:
		t.gone = t.fin.When()
	default:
		t.gone = r.End
	}
	t.life = e.Socket("server", r.Remote, r.Local)
	t.stateAtGone, _ = t.life.StateAt(t.gone)
	if sr := e.Sockets["server"]; !t.life.Seen && sr != nil {
		// Too quick for the sampler: the first tick after the client was
		// gone bounds when it went.
		for _, tick := range sr.Ticks {
			if at := sr.Start.Add(tick); at.After(t.gone) {
				t.unsampled, t.lived = true, at.Sub(t.gone)
				break
			}
		}
	}
	if t.life.Seen {
		end := t.life.Gone
		if end.IsZero() {
			end, t.stillThere = t.life.End, true
		}
		t.lived = end.Sub(t.gone)
		if st, ok := t.life.StateAt(t.gone.Add(stuckAfter)); ok {
			t.stuckState = st
			for _, sp := range t.life.Spans {
				if sp.State == st && !sp.To.Before(t.gone.Add(stuckAfter)) {
					t.stuckUnacked = max(t.stuckUnacked, sp.MaxSendQ)
					t.stuckTimers = sp.Timers
				}
			}
			t.stuck = t.stuckUnacked > 0
		}
	}
	for _, ev := range e.ConnLog(serveName, r.Local) {
		if (ev.Event.Event == "error" || ev.Event.Event == "close") && !ev.At.Before(t.gone.Add(-5*time.Millisecond)) {
			t.logErr = &ev
			t.logErrAfter = ev.At.Sub(t.gone)
			break
		}
	}
	return t
}

// rel renders a client sequence number relative to its ISN, as the 2015
// report did (276, 277).
func (t *teardown) rel(seq uint32) string {
	if !t.hasISN {
		return fmt.Sprint(seq)
	}
	return fmt.Sprint(seq - t.isn)
}

// logText is serve's error or close on the connection, briefly.
func (t *teardown) logText() string {
	if t.logErr == nil {
		return ""
	}
	ev := t.logErr.Event
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
func (t *teardown) fate() string {
	switch {
	case t.unsampled:
		return fmt.Sprintf("server socket opened and gone between two samples: gone by the first sample after the client was gone (%s)", ms(t.lived))
	case !t.life.Seen:
		return "the server socket was never sampled"
	case t.stuck && t.stillThere:
		return fmt.Sprintf("server socket stuck in %s with %s unacknowledged%s, still there %s after the client was gone",
			t.stuckState, bytesText(t.stuckUnacked), t.timerText(), secs(t.lived))
	case t.stuck:
		return fmt.Sprintf("server socket stuck in %s with %s unacknowledged%s for %s",
			t.stuckState, bytesText(t.stuckUnacked), t.timerText(), secs(t.lived))
	case t.stillThere:
		return fmt.Sprintf("server socket still there (%s, nothing unacknowledged) when sampling ended", t.stuckState)
	}
	if t.lived < 100*time.Millisecond {
		return fmt.Sprintf("server socket gone by the next sample, %s after the client was gone", ms(max(0, t.lived)))
	}
	return fmt.Sprintf("server socket gone %s after the client was gone", secs(t.lived))
}

// ladderConn is the connection for the ladder diagram.
func (t *teardown) ladderConn() report.Conn { return report.Conn{A: t.client, B: t.server} }

// timeline adds what the evidence shows of the teardown, labelled.
func (t *teardown) timeline(e *Evidence, label string) []report.Entry {
	var out []report.Entry
	if t.fin != nil {
		what := "forwarded to the server"
		if !t.finDelivered {
			what = "swallowed by the device (" + strings.TrimPrefix(t.fin.Note, "asa-teardown: ") + ")"
		}
		out = append(out, e.Entry(t.fin.When(), "client", "%s FIN seq %s %s", label, t.rel(t.fin.Seq), what))
	}
	if t.rst != nil {
		ack := ""
		if t.ackSeen {
			ack = ", as the server's own ACK shows"
		}
		out = append(out, e.Entry(t.rst.Out, "device", "%s RST to the server, seq %s where the server's RCV.NXT was %s%s: off by %+d",
			label, t.rel(t.rst.Seq), t.rel(t.rcvNxt), ack, t.offset))
	}
	if t.droppedServer > 0 {
		out = append(out, e.Entry(t.firstDrop, "device", "%s drops the server's segments from here on: %d dropped, %d of them challenge ACKs",
			label, t.droppedServer, t.challengeACKs))
	}
	if t.stuck {
		out = append(out, e.Entry(t.gone.Add(stuckAfter), "server", "%s socket still %s with %s unacknowledged%s",
			label, t.stuckState, bytesText(t.stuckUnacked), t.timerText()))
	}
	if t.logErr != nil {
		out = append(out, e.Entry(t.logErr.At, "server", "%s serve: %s (%s after the client was gone)", label, t.logText(), secs(t.logErrAfter)))
	}
	if t.life.Seen && !t.stillThere {
		out = append(out, e.Entry(t.life.Gone, "server", "%s socket gone (last seen %s)", label, lastState(t.life)))
	}
	return out
}

// timerText names the pending timers of the stuck socket.
func (t *teardown) timerText() string {
	var names []string
	for _, tm := range t.stuckTimers {
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

func bytesText(n uint32) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func lastState(l Life) string {
	if len(l.Spans) == 0 {
		return "never"
	}
	return l.Spans[len(l.Spans)-1].State.String()
}

// secs and ms format durations for reasons and timelines: seconds, or
// milliseconds below one second.
func secs(d time.Duration) string {
	if d < time.Second && d > -time.Second {
		return ms(d)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}
