package device

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/faultbox/faultbox/internal/netns"
)

// Probe limits: a TCP connect per attempt, a few attempts per path.
const (
	probeTimeout  = time.Second
	probeAttempts = 4
)

// Probe proves with a TCP connect that path (words for the log and the
// error, e.g. "from client to server (198.18.0.2)") crosses the device
// both ways: it listens on dst in namespace toNS and connects from fromNS
// (names or paths, "" for this one), a few times if need be. It needs no
// tool in either namespace: the sockets are made there by this process.
// When it returns, every packet it caused has crossed (see probeTCP).
func Probe(lg *log.Logger, path, fromNS, toNS string, dst netip.Addr) error {
	var err error
	for attempt := 1; attempt <= probeAttempts; attempt++ {
		var rtt time.Duration
		if rtt, err = probeTCP(fromNS, toNS, dst); err == nil {
			lg.Printf("traffic flows %s: tcp connect %s", path, rtt.Round(time.Microsecond))
			return nil
		}
		lg.Printf("probe %s, attempt %d: %v", path, attempt, err)
	}
	return fmt.Errorf("no traffic %s through the device: %w", path, err)
}

// probeTCP listens on dst in namespace toNS and connects to it from
// fromNS. The connection ends with the client's RST (SO_LINGER 0), and
// probeTCP returns only once the server's socket saw it: the last packet
// of the probe has crossed the device, and no FIN, retransmission or
// TIME_WAIT is left to cross it later, after the profile is installed.
func probeTCP(fromNS, toNS string, dst netip.Addr) (time.Duration, error) {
	var ln *net.TCPListener
	err := netns.Do(toNS, func() error {
		var err error
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(dst, 0)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("listen in %s: %w", toNS, err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(probeTimeout))
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.SetReadDeadline(time.Now().Add(probeTimeout))
			_, err = c.Read(make([]byte, 1))
			if errors.Is(err, syscall.ECONNRESET) {
				err = nil // the RST arrived: the socket is gone, closing sends nothing
			} else if err == nil {
				err = errors.New("data instead of a reset")
			}
			c.Close()
		}
		accepted <- err
	}()
	target := ln.Addr().String()
	start := time.Now()
	err = netns.Do(fromNS, func() error {
		// The socket is created here, on the thread inside fromNS.
		c, err := net.DialTimeout("tcp", target, probeTimeout)
		if err != nil {
			return err
		}
		c.(*net.TCPConn).SetLinger(0)
		return c.Close()
	})
	rtt := time.Since(start)
	if err != nil {
		ln.Close()
		<-accepted
		return 0, err
	}
	if err := <-accepted; err != nil {
		return 0, fmt.Errorf("connected, but the server did not see the connection reset: %w", err)
	}
	return rtt, nil
}
