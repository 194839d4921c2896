package elb

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// Helpers shared by the scenarios of the Classic ELB report
// (docs/field-failures.md#elb-keepalive-race):
// elb-keepalive-race and elb-early-response. Each arm is one `faultbox
// proxy` in the lb host, on its own port, in front of its own port of one
// `faultbox serve` in the server host; the proxy's access log is the LB's
// view of every request.

// nice runs the timing-critical processes (the server's idle timer,
// the LB's aimed sends) ahead of whatever else keeps the machine busy: on
// a loaded machine plain processes stall for far longer than the race
// window (niced ones for less, unless the whole VM stalls).
var nice = []string{"nice", "-n", "-10"}

// startProxy writes an elb proxy profile whose proxy: section is
// settings (YAML flow-mapping entries), starts `faultbox proxy` with it in
// the lb host on port, in front of the server's same port, with its access
// log read into Evidence.Logs[name]; prefix (nice or nothing) goes
// before the command.
func startProxy(c *scenario.Context, name string, port int, description, settings string, prefix ...string) error {
	profile := fmt.Sprintf("name: %s\ndescription: %q\nbehaviors: []\nproxy: {mode: elb, %s}\n", name, description, settings)
	path, err := c.WriteFile(name+".yaml", []byte(profile))
	if err != nil {
		return err
	}
	logPath := filepath.Join(c.Dir, name+".jsonl")
	argv := append(slices.Clone(prefix), c.Exe, "proxy", "--profile", path,
		"--listen", scenario.Addr("lb", port), "--backend", scenario.Addr("server", port), "--log", logPath)
	_, err = c.StartLogged("lb", name, logPath, argv...)
	return err
}

// lbsUp waits until the LBs listen on ports, then starts sampling the
// server's and the LBs' live sockets.
func lbsUp(c *scenario.Context, ports []int) error {
	if err := c.WaitListening("lb", "the LBs", nil, ports...); err != nil {
		return err
	}
	for _, h := range []string{"server", "lb"} {
		if err := c.Sample(h, sockdiag.Filter{States: liveStates}, 0); err != nil {
			return err
		}
	}
	return nil
}

// accessLog reads the log of LB process name, arm's; an LB that logged no
// request is an error.
func accessLog(e *scenario.Evidence, name, arm string) (scenario.ProxyLog, error) {
	l := e.ProxyLog(name)
	if len(l.Requests) == 0 {
		return l, fmt.Errorf("arm %q: the LB logged no request (see %s.err)", arm, name)
	}
	return l, nil
}

// liveStates are the socket states worth sampling: TIME-WAIT sockets pile up
// by the hundred in these runs and say nothing.
var liveStates = sockdiag.StateMask(sockdiag.Established, sockdiag.SynSent, sockdiag.SynRecv, sockdiag.FinWait1,
	sockdiag.FinWait2, sockdiag.CloseWait, sockdiag.LastAck, sockdiag.Closing)

// lbFailed reports whether the LB failed the request (anything but a
// response relayed from the backend).
func lbFailed(en proxy.Entry) bool { return en.Outcome != proxy.OutcomeOK }

// cause names what the LB met on the backend connection, from the
// error it logged.
func cause(en proxy.Entry) string {
	switch s := en.Error; {
	case strings.Contains(s, "RST"), strings.Contains(s, "reset"):
		return "RST"
	case strings.Contains(s, "EPIPE"), strings.Contains(s, "broken pipe"):
		return "EPIPE"
	case strings.Contains(s, "EOF"):
		return "EOF"
	case s == "":
		return "none"
	}
	return "other"
}

// causesText renders counts of causes as "12 RST, 1 EOF".
func causesText(m map[string]int) string {
	var parts []string
	for _, k := range []string{"RST", "EPIPE", "EOF", "other", "none"} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
		}
	}
	return strings.Join(parts, ", ")
}

// wireClose is what the capture shows of one backend connection's end: the
// server's FIN, the last request the LB sent on it, and the RSTs.
type wireClose struct {
	lb, server netip.AddrPort
	fin        *report.Packet // the server's FIN as the device got it
	req        *report.Packet // the LB's last data segment
	// crossed: req left the LB before the server's FIN reached it (the LB
	// could not know); beforeFIN: it even reached the device before the
	// FIN did (the server closed with it unread); reqAfter: it was sent
	// after the FIN had reached the LB.
	crossed, beforeFIN, reqAfter bool
	rst                          *report.Packet // the server's first RST after req
	ack                          *report.Packet // the server's first segment after req acknowledging all of it
	lbRST                        *report.Packet // the LB's first RST
	first, last                  time.Time      // the connection's first packet, and when its last one left the device
}

// finArrived is when the server's FIN reached the LB (zero if it did not).
func (w *wireClose) finArrived() time.Time {
	if w.fin == nil || w.fin.Dropped {
		return time.Time{}
	}
	if w.fin.Out.IsZero() {
		return w.fin.In
	}
	return w.fin.Out
}

// lingered reports what a lingering close shows: the server acknowledged
// the request, sent no RST, and its FIN reached the LB after the request.
func (w *wireClose) lingered() bool {
	t := w.finArrived()
	return w.req != nil && w.ack != nil && w.rst == nil && !t.IsZero() && t.After(w.req.When())
}

func readWireClose(e *scenario.Evidence, lb, server netip.AddrPort) wireClose {
	w := wireClose{lb: lb, server: server}
	pkts := e.Packets(lb, server)
	for i := range pkts {
		p := &pkts[i]
		fromServer := report.SameEnd(p.Src, server)
		switch {
		case fromServer && p.Flags&packet.FIN != 0 && w.fin == nil:
			w.fin = p
		case !fromServer && p.Len > 0 && p.Flags&packet.RST == 0:
			w.req = p
		}
	}
	for i := range pkts {
		p := &pkts[i]
		if w.first.IsZero() || p.When().Before(w.first) {
			w.first = p.When()
		}
		for _, t := range []time.Time{p.When(), p.Out} {
			if t.After(w.last) {
				w.last = t
			}
		}
		fromServer := report.SameEnd(p.Src, server)
		afterReq := w.req != nil && !p.When().Before(w.req.When())
		switch {
		case p.Flags&packet.RST == 0:
			if fromServer && afterReq && w.ack == nil && p.Flags&packet.ACK != 0 &&
				int32(p.Ack-(w.req.Seq+uint32(w.req.Len))) >= 0 {
				w.ack = p
			}
		case fromServer && w.rst == nil && afterReq:
			w.rst = p
		case report.SameEnd(p.Src, lb) && w.lbRST == nil:
			w.lbRST = p
		}
	}
	if w.fin != nil && w.req != nil {
		w.crossed = w.fin.Out.IsZero() || w.req.When().Before(w.fin.Out)
		w.beforeFIN = w.crossed && w.req.When().Before(w.fin.When())
		w.reqAfter = !w.crossed
	}
	return w
}

// logMS renders milliseconds as the access log gives them.
func logMS(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// share renders "n/d (p %)".
func share(n, d int) string {
	if d == 0 {
		return "0/0"
	}
	return fmt.Sprintf("%d/%d (%.0f %%)", n, d, 100*float64(n)/float64(d))
}

// sampledBetween returns the state a socket was last sampled in between
// a and b, if a sample fell in that stretch.
func sampledBetween(l scenario.Life, a, b time.Time) (sockdiag.State, bool) {
	var st sockdiag.State
	ok := false
	for _, sp := range l.Spans {
		for _, t := range []time.Time{sp.From, sp.To} {
			if !t.Before(a) && !t.After(b) {
				st, ok = sp.State, true
			}
		}
	}
	return st, ok
}

// median is the median of vs (0 for none).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}
