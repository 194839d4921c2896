// Package serve is faultbox's reference HTTP/1.1 server: the server side of
// the field-failure scenarios. It speaks HTTP/1.1 itself on raw TCP
// connections, not through net/http, because the scenarios need exact control
// over when it reads, writes, half-closes and closes, and it logs each of
// those steps as a JSON line so a scenario can build a timeline.
package serve

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/faultbox/faultbox/internal/units"
)

// Config is everything `faultbox serve` takes on its command line.
type Config struct {
	// Listen holds the addresses to listen on (host:port). An IPv6 wildcard
	// ("[::]:80", or ":80") is dual stack unless another address is also
	// given, then it is IPv6 only so both can be bound.
	Listen []string
	// DeferAccept is TCP_DEFER_ACCEPT in seconds on the listeners (0: off).
	DeferAccept int
	// KeepAliveTimeout is the idle time allowed between requests before the
	// server closes the connection; 0 disables keep-alive (close after each
	// response).
	KeepAliveTimeout time.Duration
	// ReadTimeout bounds reading one full request (headers and body),
	// counted from accept or from the end of the previous response. 0: none.
	ReadTimeout time.Duration
	// Linger makes the server close after an error response the way Apache
	// does: shutdown(SHUT_WR), drain the input for up to LingerTime, close.
	Linger     bool
	LingerTime time.Duration
	// EarlyResponse answers 401 to a POST or PUT with a body before reading
	// the body, then closes (per Linger). EarlyCloseNoHeader leaves out
	// "Connection: close" from that response although the server closes.
	EarlyResponse      bool
	EarlyCloseNoHeader bool
	// SndTimeo is SO_SNDTIMEO on accepted sockets, UserTimeout is
	// TCP_USER_TIMEOUT (0: leave the kernel's default).
	SndTimeo    time.Duration
	UserTimeout time.Duration
	// ResponseSize is the body size for GET / and other plain paths.
	ResponseSize units.Size
	// FinWaitShutdown makes the keep-alive timeout call shutdown(SHUT_WR) and
	// keep the descriptor until the peer closes, instead of close(): the
	// socket then waits in FIN_WAIT_2 without the kernel's orphan timer.
	FinWaitShutdown bool
}

// DefaultConfig returns the defaults of `faultbox serve`.
func DefaultConfig() Config {
	return Config{
		Listen:           []string{":80"},
		KeepAliveTimeout: 5 * time.Second,
		ReadTimeout:      20 * time.Second,
		LingerTime:       2 * time.Second,
		ResponseSize:     1000,
	}
}

// Validate reports the first setting that cannot work, naming its flag.
func (c *Config) Validate() error {
	for _, a := range c.Listen {
		if !validListen(a) {
			return fmt.Errorf("--listen %s: want [IP]:port, e.g. 198.18.0.2:80, [2001:db8::2]:80 or :80", a)
		}
	}
	switch {
	case len(c.Listen) == 0:
		return errors.New("--listen: at least one address is needed")
	case c.DeferAccept < 0:
		return fmt.Errorf("--defer-accept: %d is negative", c.DeferAccept)
	case c.KeepAliveTimeout < 0:
		return fmt.Errorf("--keepalive-timeout: %v is negative", c.KeepAliveTimeout)
	case c.ReadTimeout < 0:
		return fmt.Errorf("--read-timeout: %v is negative", c.ReadTimeout)
	case c.LingerTime < 0:
		return fmt.Errorf("--linger-time: %v is negative", c.LingerTime)
	case c.SndTimeo < 0:
		return fmt.Errorf("--sndtimeo: %v is negative", c.SndTimeo)
	case c.SndTimeo > 0 && c.SndTimeo < time.Microsecond:
		return fmt.Errorf("--sndtimeo: %v is below the kernel's 1µs resolution", c.SndTimeo)
	case c.UserTimeout < 0 || c.UserTimeout > time.Duration(1<<31-1)*time.Millisecond:
		return fmt.Errorf("--user-timeout: %v is out of range", c.UserTimeout)
	case c.UserTimeout > 0 && c.UserTimeout < time.Millisecond:
		return fmt.Errorf("--user-timeout: %v is below the kernel's 1ms resolution", c.UserTimeout)
	case c.EarlyCloseNoHeader && !c.EarlyResponse:
		return errors.New("--early-close-no-header needs --early-response")
	}
	return nil
}

// validListen reports whether a is an IP (or nothing) and a port (0: any).
func validListen(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return false
	}
	_, err = netip.ParseAddr(host)
	return host == "" || err == nil
}
