package scenario

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/serve"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// Evidence is everything a run collected, read back after teardown. Judge
// decides from it alone.
type Evidence struct {
	Start time.Time // offset 0 of the run's timeline
	// Capture holds every TCP and UDP packet of every port, as the device
	// handled it (nil when there is none; CaptureErr says why).
	Capture    *report.Capture
	CaptureErr error
	Sockets    map[string]*sockdiag.Series // by lab host, from Context.Sample
	Clients    []ClientResult
	Logs       map[string][]LogEvent // serve/proxy JSON logs by process name
	Events     []client.Event        // the device's event log
	Kernel     string
}

// LogEvent is one line of a serve (or proxy) JSON log with its time
// parsed. Fields a proxy log has beyond serve's are in Raw.
type LogEvent struct {
	serve.Event
	At  time.Time
	Raw map[string]any
}

// At is the offset of t in the run's timeline.
func (e *Evidence) At(t time.Time) time.Duration { return t.Sub(e.Start) }

// Entry makes a timeline entry at t.
func (e *Evidence) Entry(t time.Time, actor, format string, args ...any) report.Entry {
	return report.Entry{At: t.Sub(e.Start), Actor: actor, Text: fmt.Sprintf(format, args...)}
}

// Client returns the results of the clients of arm ("" for all).
func (e *Evidence) Client(arm string) []ClientResult {
	var out []ClientResult
	for _, r := range e.Clients {
		if arm == "" || r.Arm == arm {
			out = append(out, r)
		}
	}
	return out
}

// ArmClient returns the result of arm's client (its first), or an error
// verdict "<who> never connected (<why>)" when it never connected.
func (e *Evidence) ArmClient(arm, who string) (ClientResult, *Verdict) {
	rs := e.Client(arm)
	if len(rs) > 0 && rs[0].Local.IsValid() {
		return rs[0], nil
	}
	why := "no result"
	for _, r := range rs {
		if r.Err != "" {
			why = r.Err
			break
		}
	}
	return ClientResult{}, &Verdict{Outcome: report.Error, Reason: who + " never connected (" + why + ")"}
}

// Packets returns the captured packets of the connection between a and b
// (either direction), in the order the device saw them.
func (e *Evidence) Packets(a, b netip.AddrPort) []report.Packet {
	if e.Capture == nil {
		return nil
	}
	var out []report.Packet
	for i := range e.Capture.Packets {
		if p := &e.Capture.Packets[i]; p.Between(a, b) {
			out = append(out, *p)
		}
	}
	return out
}

// ICMPErrors returns the captured ICMP errors (ICMP "fragmentation
// needed", ICMPv6 "packet too big" ...) that quote a packet of the
// connection between a and b, in the order the device saw them.
func (e *Evidence) ICMPErrors(a, b netip.AddrPort) []report.Packet {
	if e.Capture == nil {
		return nil
	}
	var out []report.Packet
	for i := range e.Capture.Packets {
		p := &e.Capture.Packets[i]
		if q := p.ICMP; q != nil && ((report.SameEnd(q.Src, a) && report.SameEnd(q.Dst, b)) || (report.SameEnd(q.Src, b) && report.SameEnd(q.Dst, a))) {
			out = append(out, *p)
		}
	}
	return out
}

// ConnLog returns the log events of process name for the connection whose
// peer is peer (serve logs "peer" as the client's address).
func (e *Evidence) ConnLog(name string, peer netip.AddrPort) []LogEvent {
	var out []LogEvent
	for _, ev := range e.Logs[name] {
		if ap, err := netip.ParseAddrPort(ev.Peer); err == nil && report.SameEnd(ap, peer) {
			out = append(out, ev)
		}
	}
	return out
}

// Span is a stretch of samples in which a socket kept one state.
type Span struct {
	State      sockdiag.State
	From, To   time.Time // first and last sample in the state
	MaxUnacked uint32    // segments in flight, not acknowledged
	MaxSendQ   uint32    // bytes written and not acknowledged
	MaxRetrans uint8
	Timers     []sockdiag.Timer // timers seen pending, in order of appearance
}

// Life is one socket's history in the samples.
type Life struct {
	Seen        bool
	First, Last time.Time // first and last sample showing it
	// Gone is the first sampling instant after Last without the socket;
	// zero when it was still there at the last sample.
	Gone  time.Time
	End   time.Time // the last sampling instant of the series
	Spans []Span
}

// StateAt returns the socket's state at the last sample at or before t
// (ok false before it was first seen or after it was gone).
func (l Life) StateAt(t time.Time) (sockdiag.State, bool) {
	var st sockdiag.State
	ok := false
	for _, s := range l.Spans {
		if s.From.After(t) {
			break
		}
		st, ok = s.State, true
	}
	if ok && !l.Gone.IsZero() && !t.Before(l.Gone) {
		return 0, false
	}
	return st, ok
}

// Socket returns the life of host's socket with local end local and remote
// end remote, from that host's samples.
func (e *Evidence) Socket(host string, local, remote netip.AddrPort) Life {
	var l Life
	sr := e.Sockets[host]
	if sr == nil || len(sr.Ticks) == 0 {
		return l
	}
	l.End = sr.Start.Add(sr.Ticks[len(sr.Ticks)-1])
	var lastT time.Duration
	for _, s := range sr.Samples {
		if !report.SameEnd(s.Key.Src, local) || !report.SameEnd(s.Key.Dst, remote) {
			continue
		}
		at := sr.Start.Add(s.T)
		if !l.Seen {
			l.Seen, l.First = true, at
		}
		l.Last, lastT = at, s.T
		if n := len(l.Spans); n == 0 || l.Spans[n-1].State != s.State {
			l.Spans = append(l.Spans, Span{State: s.State, From: at})
		}
		sp := &l.Spans[len(l.Spans)-1]
		sp.To = at
		sp.MaxUnacked = max(sp.MaxUnacked, s.Unacked)
		sp.MaxSendQ = max(sp.MaxSendQ, s.SendQ)
		sp.MaxRetrans = max(sp.MaxRetrans, s.Retrans)
		if s.Timer != sockdiag.TimerOff && !slices.Contains(sp.Timers, s.Timer) {
			sp.Timers = append(sp.Timers, s.Timer)
		}
	}
	if l.Seen {
		for _, t := range sr.Ticks {
			if t > lastT {
				l.Gone = sr.Start.Add(t)
				break
			}
		}
	}
	return l
}

// LastState names the state the socket was last sampled in ("never" when
// it was not).
func (l Life) LastState() string {
	if len(l.Spans) == 0 {
		return "never"
	}
	return l.Spans[len(l.Spans)-1].State.String()
}

// Count is the number of sockets in a state at one sampling instant.
type Count struct {
	At time.Time
	N  int
}

// CountState returns, for every sampling instant of host, how many of its
// sockets with local port port (0: any) were in state st.
func (e *Evidence) CountState(host string, port uint16, st sockdiag.State) []Count {
	sr := e.Sockets[host]
	if sr == nil {
		return nil
	}
	n := map[time.Duration]int{}
	for _, s := range sr.Samples {
		if s.State == st && (port == 0 || s.Key.Src.Port() == port) {
			n[s.T]++
		}
	}
	out := make([]Count, len(sr.Ticks))
	for i, t := range sr.Ticks {
		out[i] = Count{At: sr.Start.Add(t), N: n[t]}
	}
	return out
}

// Peak returns the largest count and when it was first reached.
func Peak(cs []Count) Count {
	var p Count
	for _, c := range cs {
		if c.N > p.N {
			p = c
		}
	}
	return p
}

// ProxyLog is one `faultbox proxy` log (an LB or a DX): its request
// lines, and the local address of each backend connection it opened (to
// find it in the capture).
type ProxyLog struct {
	Requests []proxy.Entry
	Local    map[uint64]netip.AddrPort // by backend connection id
	Closes   []proxy.PoolEvent         // the proxy closing backend connections, with the reason
}

// ProxyLog reads the log of the proxy process name.
func (e *Evidence) ProxyLog(name string) ProxyLog {
	l := ProxyLog{Local: map[uint64]netip.AddrPort{}}
	for _, ev := range e.Logs[name] {
		b, err := json.Marshal(ev.Raw)
		if err != nil {
			continue
		}
		if _, isEvent := ev.Raw["event"]; isEvent {
			var pe proxy.PoolEvent
			if json.Unmarshal(b, &pe) != nil {
				continue
			}
			switch pe.Event {
			case "open":
				if ap, err := netip.ParseAddrPort(pe.Local); err == nil {
					l.Local[pe.BackendConn] = Unmap(ap)
				}
			case "close":
				l.Closes = append(l.Closes, pe)
			}
			continue
		}
		var en proxy.Entry
		if json.Unmarshal(b, &en) == nil {
			l.Requests = append(l.Requests, en)
		}
	}
	return l
}

// readLog reads a JSON-lines log; lines that do not parse are skipped.
func readLog(path string) ([]LogEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []LogEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev LogEvent
		if json.Unmarshal(sc.Bytes(), &ev.Event) != nil {
			continue
		}
		json.Unmarshal(sc.Bytes(), &ev.Raw)
		ev.At, _ = time.Parse(time.RFC3339Nano, ev.Time)
		out = append(out, ev)
	}
	return out, sc.Err()
}
