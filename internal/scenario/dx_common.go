package scenario

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// Helpers shared by the TCP_DEFER_ACCEPT scenarios (dx-defer-accept,
// dx-defer-accept-nginx, gprs-defer-accept): kernel counters and socket
// options read inside the server's namespace as evidence, and what the
// capture shows of each connection's handshake.

// kernelLog is a JSON-lines file the scenario writes itself: kernel counters
// read in a host's namespace (/proc/net/netstat) and listener options read
// back from the server processes. It becomes evidence (Evidence.Logs[name])
// by being registered as the log of a no-op process, the only way the
// framework reads a file back for Judge.
type kernelLog struct {
	mu   sync.Mutex
	path string
}

func newKernelLog(c *Context, host, name string) (*kernelLog, error) {
	path := filepath.Join(c.Dir, name+".jsonl")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return nil, err
	}
	if _, err := c.StartLogged(host, name, path, "true"); err != nil {
		return nil, err
	}
	return &kernelLog{path: path}, nil
}

// write appends one line {"time":..., "event":event, fields...}.
func (l *kernelLog) write(event string, fields map[string]any) error {
	m := map[string]any{"time": time.Now().UTC().Format(time.RFC3339Nano), "event": event}
	for k, v := range fields {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	return err
}

// The TcpExt counters the defer-accept scenarios show.
var deferCounters = []string{"TCPDeferAcceptDrop", "TSEcrRejected", "TCPTimeouts", "TCPSynRetrans", "TCPACKSkippedSynRecv"}

// snapshotNetstat reads host's /proc/net/netstat and logs the TcpExt
// counters as event "netstat" with label (e.g. "start", "end").
func snapshotNetstat(c *Context, l *kernelLog, host, label string) error {
	r, err := c.Exec(host, 3*time.Second, "cat", "/proc/net/netstat")
	if err != nil {
		return fmt.Errorf("reading /proc/net/netstat in %s: %w", host, err)
	}
	all := parseNetstat(r.Stdout)
	fields := map[string]any{"label": label, "host": host}
	for _, k := range deferCounters {
		if v, ok := all["TcpExt."+k]; ok {
			fields[k] = v
		}
	}
	return l.write("netstat", fields)
}

// parseNetstat reads /proc/net/netstat: pairs of "Group: names" and
// "Group: values" lines, into "Group.Name" → value.
func parseNetstat(s string) map[string]int64 {
	out := map[string]int64{}
	lines := strings.Split(s, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(vals) || len(names) < 2 || names[0] != vals[0] {
			continue
		}
		group := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseInt(vals[j], 10, 64); err == nil {
				out[group+"."+names[j]] = v
			}
		}
	}
	return out
}

// netstatCounter returns counter name from the netstat snapshot labelled label in
// log, and whether there was one.
func netstatCounter(e *Evidence, log, label, name string) (int64, bool) {
	for _, ev := range e.Logs[log] {
		if ev.Event.Event != "netstat" || ev.Raw["label"] != label {
			continue
		}
		if v, ok := ev.Raw[name].(float64); ok {
			return int64(v), true
		}
	}
	return 0, false
}

// counterDelta is counter name's growth from the "start" to the "end"
// snapshot.
func counterDelta(e *Evidence, log, name string) (int64, bool) {
	end, ok1 := netstatCounter(e, log, "end", name)
	start, ok2 := netstatCounter(e, log, "start", name)
	return end - start, ok1 && ok2
}

// listenerDefer reads TCP_DEFER_ACCEPT back from the listening socket on
// port that process pid holds: a duplicate of its descriptor is taken with
// pidfd_getfd(2), asked, and closed. The kernel answers in seconds rounded
// up to its SYN-ACK retransmit schedule (Apache's 30 reads back as 31).
func listenerDefer(pid int, port uint16) (int, error) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	for _, ent := range ents {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, ent.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		tfd, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pfd, tfd, 0)
		if err != nil {
			return 0, fmt.Errorf("pidfd_getfd %d/%d: %w", pid, tfd, err)
		}
		v, ok := deferOf(fd, port)
		unix.Close(fd)
		if ok {
			return v, nil
		}
	}
	return 0, fmt.Errorf("process %d has no listening TCP socket on port %d", pid, port)
}

func deferOf(fd int, port uint16) (int, bool) {
	if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc == 0 {
		return 0, false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, false
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		if a.Port != int(port) {
			return 0, false
		}
	case *unix.SockaddrInet6:
		if a.Port != int(port) {
			return 0, false
		}
	default:
		return 0, false
	}
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
	return v, err == nil
}

// logListener records the TCP_DEFER_ACCEPT of the listener on port of
// process pid (arm names the variant) in the kernel log.
func logListener(c *Context, l *kernelLog, arm string, pid int, port uint16) {
	var v int
	var err error
	c.WaitFor(fmt.Sprintf("the listener on :%d", port), 3*time.Second, func() bool {
		v, err = listenerDefer(pid, port)
		return err == nil
	})
	f := map[string]any{"arm": arm, "port": port, "pid": pid}
	if err != nil {
		f["err"] = err.Error()
		c.Note("reading TCP_DEFER_ACCEPT back from the server of %s: %v", arm, err)
	} else {
		f["defer_accept"] = v
		c.Step("server", "%s: listener :%d has TCP_DEFER_ACCEPT %d s (read back with pidfd_getfd)", arm, port, v)
	}
	l.write("listener", f)
}

// listenerDeferOf returns the TCP_DEFER_ACCEPT logged for arm's listener.
func listenerDeferOf(e *Evidence, log, arm string) (int, bool) {
	for _, ev := range e.Logs[log] {
		if ev.Event.Event == "listener" && ev.Raw["arm"] == arm {
			if v, ok := ev.Raw["defer_accept"].(float64); ok {
				return int(v), true
			}
		}
	}
	return 0, false
}

// waitListening waits until host has a listening socket on every port;
// p, if not nil, is the process that should open them (its exit ends the
// wait, its stderr explains).
func waitListening(c *Context, host, what string, p *Proc, ports ...int) error {
	ok, err := c.WaitFor(what+" to listen", 10*time.Second, func() bool {
		if p != nil && p.Exited() {
			return true
		}
		socks, err := c.Sockets(host, sockdiag.Filter{States: sockdiag.StateMask(sockdiag.Listen)})
		if err != nil {
			return false
		}
		for _, port := range ports {
			if !slices.ContainsFunc(socks, func(s sockdiag.Socket) bool { return int(s.Src.Port()) == port }) {
				return false
			}
		}
		return true
	})
	exited := p != nil && p.Exited()
	if err != nil || ok && !exited {
		return err
	}
	why := "(see the *.err files in the report)"
	if p != nil {
		why = tailFile(p.Stderr, 5)
	}
	if exited {
		return fmt.Errorf("%s exited at once: %s", what, why)
	}
	return fmt.Errorf("%s did not listen on %v within 10s: %s", what, ports, why)
}

// hsConn is what the capture shows of one TCP connection from a client
// (here: the DX, or a GPRS client) to a server, as the device handled it.
type hsConn struct {
	Cli, Srv netip.AddrPort
	ISN      uint32    // the client's
	SrvISN   uint32    // the server's, from its first SYN-ACK
	SYN      time.Time // the client's first SYN
	SYNs     int       // the client's SYNs (retransmissions included)
	SYNACKs  []time.Time
	// Bare ACKs of the handshake the client sent before any data: those
	// that reached the server, and those the device dropped.
	ACKs        []time.Time
	ACKsDropped []time.Time
	Probes      []time.Time // keep-alive probes (seq ISN, no data) before data
	Data        time.Time   // the client's first data segment as the device got it
	DataSends   int         // data segments with that sequence number (1 + retransmissions)
	DataFirstOK time.Time   // first data segment that reached the server
	SrvData     time.Time   // the server's first data (the response)
	SrvFIN      time.Time
	SrvRST      time.Time
	CliFIN      time.Time
	CliRST      time.Time
	// SrvAcksNoData counts the server's bare ACKs that did not acknowledge
	// the client's data while the client was retransmitting it.
	SrvAcksNoData int
}

// Handshake timeline helpers.
func (h *hsConn) synackRetransmits() int { return max(0, len(h.SYNACKs)-1) }

// idleClose reports whether the server closed the connection (FIN) on its
// own, before the client sent data or closed.
func (h *hsConn) idleClose() bool {
	return !h.SrvFIN.IsZero() && (h.Data.IsZero() || h.SrvFIN.Before(h.Data)) &&
		(h.CliFIN.IsZero() || h.SrvFIN.Before(h.CliFIN)) && (h.CliRST.IsZero() || h.SrvFIN.Before(h.CliRST))
}

// lastSYNACK is the server's last SYN-ACK (zero if none).
func (h *hsConn) lastSYNACK() time.Time {
	if len(h.SYNACKs) == 0 {
		return time.Time{}
	}
	return h.SYNACKs[len(h.SYNACKs)-1]
}

// traceConns returns every connection to srv in the capture, keyed by the
// client's end. Only packets the device saw are counted; "delivered" means
// not dropped by it.
func traceConns(e *Evidence, srv netip.AddrPort) map[netip.AddrPort]*hsConn {
	out := map[netip.AddrPort]*hsConn{}
	if e.Capture == nil {
		return out
	}
	for i := range e.Capture.Packets {
		p := &e.Capture.Packets[i]
		if p.Proto != packet.ProtoTCP {
			continue
		}
		var h *hsConn
		fromCli := report.SameEnd(p.Dst, srv)
		switch {
		case fromCli:
			h = out[unmapAP(p.Src)]
			if h == nil {
				if p.Flags&(packet.SYN|packet.ACK) != packet.SYN {
					continue // a connection that began before the capture
				}
				h = &hsConn{Cli: unmapAP(p.Src), Srv: srv, ISN: p.Seq, SYN: p.When()}
				out[h.Cli] = h
			}
		case report.SameEnd(p.Src, srv):
			h = out[unmapAP(p.Dst)]
			if h == nil {
				continue
			}
		default:
			continue
		}
		h.add(p, fromCli)
	}
	return out
}

func (h *hsConn) add(p *report.Packet, fromCli bool) {
	t := p.When()
	syn, ack, fin, rst := p.Flags&packet.SYN != 0, p.Flags&packet.ACK != 0, p.Flags&packet.FIN != 0, p.Flags&packet.RST != 0
	if !fromCli {
		switch {
		case syn && ack:
			if len(h.SYNACKs) == 0 {
				h.SrvISN = p.Seq
			}
			h.SYNACKs = append(h.SYNACKs, t)
		case rst:
			if h.SrvRST.IsZero() {
				h.SrvRST = t
			}
		}
		if fin && h.SrvFIN.IsZero() {
			h.SrvFIN = t
		}
		if p.Len > 0 && h.SrvData.IsZero() {
			h.SrvData = t
		}
		if !h.Data.IsZero() && h.SrvData.IsZero() && !syn && !fin && !rst && p.Len == 0 && p.Ack == h.ISN+1 {
			h.SrvAcksNoData++
		}
		return
	}
	switch {
	case syn:
		h.SYNs++
	case rst:
		if h.CliRST.IsZero() {
			h.CliRST = t
		}
	case p.Len > 0:
		if h.Data.IsZero() {
			h.Data = t
		}
		if p.Seq == h.ISN+1 {
			h.DataSends++
			if !p.Dropped && h.DataFirstOK.IsZero() {
				h.DataFirstOK = t
			}
		}
	case ack && !fin && h.Data.IsZero() && len(h.SYNACKs) > 0 && p.Ack == h.SrvISN+1:
		switch {
		case p.Seq == h.ISN: // seq one below SND.NXT: a keep-alive probe
			h.Probes = append(h.Probes, t)
		case p.Dropped:
			h.ACKsDropped = append(h.ACKsDropped, t)
		default:
			h.ACKs = append(h.ACKs, t)
		}
	}
	if fin && h.CliFIN.IsZero() {
		h.CliFIN = t
	}
}

// secs1 renders a duration in seconds with one decimal ("31.6 s").
func secs1(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
