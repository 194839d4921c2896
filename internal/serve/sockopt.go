package serve

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Socket options net does not expose, set through raw file descriptors.

// withFD runs fn on c's descriptor. c is a listener or connection that
// implements syscall.Conn.
func withFD(c any, fn func(fd int) error) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// deferAcceptControl returns a net.ListenConfig.Control that sets
// TCP_DEFER_ACCEPT to secs before listen(): the kernel then keeps a
// completed handshake out of the accept queue until data arrives or the
// period ends.
func deferAcceptControl(secs int) func(network, address string, rc syscall.RawConn) error {
	return func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, secs)
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("TCP_DEFER_ACCEPT %d on %s: %w", secs, address, err)
		}
		return nil
	}
}

// deferAcceptValue reads TCP_DEFER_ACCEPT back. Linux stores the value as
// a number of SYN-ACK retransmits and converts it back to seconds, so the
// result is rounded up to that schedule (1, 3, 7, 15, 31, ... s).
func deferAcceptValue(l any) (int, error) {
	var v int
	err := withFD(l, func(fd int) (err error) {
		v, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
		return err
	})
	return v, err
}

// setSndTimeo sets SO_SNDTIMEO. Go's sockets are non-blocking, so the
// kernel never applies it itself; the value is set so getsockopt shows it,
// and the connection's writes enforce it (see conn.write).
func setSndTimeo(c any, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	return withFD(c, func(fd int) error {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			return fmt.Errorf("SO_SNDTIMEO %v: %w", d, err)
		}
		return nil
	})
}

// setUserTimeout sets TCP_USER_TIMEOUT: how long sent data may stay
// unacknowledged before the kernel drops the connection (ETIMEDOUT).
func setUserTimeout(c any, d time.Duration) error {
	return withFD(c, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds())); err != nil {
			return fmt.Errorf("TCP_USER_TIMEOUT %v: %w", d, err)
		}
		return nil
	})
}

// acceptTimes returns what TCP_INFO knows about a just-accepted
// connection's wait: the time since the kernel created it or last
// received data on it, and its smoothed RTT. ok is false for non-TCP
// connections (socketpairs in tests).
func acceptTimes(c any) (wait, rtt float64, ok bool) {
	err := withFD(c, func(fd int) error {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		wait = float64(ti.Last_data_recv) / 1e3
		rtt = float64(ti.Rtt) / 1e6
		return nil
	})
	return wait, rtt, err == nil
}
