package main

// TCP goodput probes for the rate accuracy section: tcp-source writes as
// fast as the connection takes it; tcp-sink reads for a fixed time and
// reports the goodput of the steady state, from the first read after -skip
// to the last read, so slow start and the initial burst of a token bucket
// stay out of the figure.

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	probes["tcp-source"] = tcpSource
	probes["tcp-sink"] = tcpSink
}

// GoodputResult is what tcp-sink prints.
type GoodputResult struct {
	Bytes   int64   `json:"bytes"`   // in the measured window
	Seconds float64 `json:"seconds"` // the window
	BPS     float64 `json:"bytes_per_second"`
}

// tcpSource connects and writes until the peer goes away or max passes.
func tcpSource(args []string) error {
	fs := flag.NewFlagSet("tcp-source", flag.ContinueOnError)
	server := fs.String("server", "", "address:port")
	max := fs.Duration("max", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", *server, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(*max))
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			// The sink closing (reset, broken pipe) is the normal end.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return err
			}
			return nil
		}
	}
}

// tcpSink accepts one connection, reads for -t after the first byte, and
// prints the goodput between the first read at least -skip after the first
// byte and the last read, timed by the kernel's receive stamps (rxClock) so
// that the sink's own wake-ups do not move the window.
func tcpSink(args []string) error {
	fs := flag.NewFlagSet("tcp-sink", flag.ContinueOnError)
	listen := fs.String("listen", "", "address:port")
	dur := fs.Duration("t", 5*time.Second, "how long to read after the first byte")
	skip := fs.Duration("skip", time.Second, "left out at the start")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	ln, sa, err := inetSocket(addr, unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(ln, sa); err != nil {
		return err
	}
	// Timestamps asked for before any data arrives: the accepted socket
	// inherits the option, and segments queued before it was set would
	// carry no stamp.
	if _, err := newRxClock(ln); err != nil {
		return err
	}
	if err := unix.Listen(ln, 1); err != nil {
		return err
	}
	tv := unix.NsecToTimeval(int64(*wait))
	unix.SetsockoptTimeval(ln, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) // bounds accept
	fd, _, err := unix.Accept(ln)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer unix.Close(fd)
	tv = unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	rx, err := newRxClock(fd)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var first, userFirst, from, to int64
	var bytes int64
	start := monoNow()
	for userFirst == 0 || monoNow() < userFirst+int64(*dur) {
		n, kernel, user, err := rx.recv(buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			if userFirst == 0 && monoNow() > start+int64(*wait) {
				return errors.New("no data")
			}
			continue
		}
		if err != nil || n == 0 {
			break // the source went away
		}
		if kernel == 0 {
			kernel = user // not seen once the listener asked for stamps; kept for safety
		}
		switch {
		case first == 0:
			first, userFirst = kernel, user
		case from == 0 && kernel-first >= int64(*skip):
			from = kernel // the window starts after this read
		case from != 0:
			bytes += int64(n)
			to = kernel
		}
	}
	r := GoodputResult{Bytes: bytes}
	if d := float64(to-from) / 1e9; from != 0 && d > 0 {
		r.Seconds, r.BPS = d, float64(bytes)/d
	}
	return printJSON(r)
}
