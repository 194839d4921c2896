package deferaccept

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/scenario"
)

// What the server's kernel says about TCP_DEFER_ACCEPT, as evidence: the
// option read back from each listener, and the TcpExt counters of the
// deferral, both in the kernel log kernelLog.

// kernelLog is the name of the server's kernel log (scenario.KernelLog).
const kernelLog = "kernel-server"

// The TcpExt counters the defer-accept scenarios show.
var deferCounters = []string{"TCPDeferAcceptDrop", "TSEcrRejected", "TCPTimeouts", "TCPSynRetrans", "TCPACKSkippedSynRecv"}

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
func logListener(c *scenario.Context, l *scenario.KernelLog, arm string, pid int, port uint16) {
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
	l.Write("listener", f)
}

// listenerDeferOf returns the TCP_DEFER_ACCEPT logged for arm's listener.
func listenerDeferOf(e *scenario.Evidence, log, arm string) (int, bool) {
	for _, ev := range e.Logs[log] {
		if ev.Event.Event == "listener" && ev.Raw["arm"] == arm {
			if v, ok := ev.Raw["defer_accept"].(float64); ok {
				return int(v), true
			}
		}
	}
	return 0, false
}
