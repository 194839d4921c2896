package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/faultbox/faultbox/internal/netns"
)

// ClientResult is what one client saw: evidence for Judge and a row of the
// report's client table.
type ClientResult struct {
	Name   string         `json:"name"`          // "client 3", "python http.client"
	Arm    string         `json:"arm,omitempty"` // the variant or A/B arm it belongs to
	Local  netip.AddrPort `json:"local"`         // the client's end of its connection
	Remote netip.AddrPort `json:"remote"`
	Start  time.Time      `json:"start"`
	End    time.Time      `json:"end"`
	Status int            `json:"status,omitempty"` // HTTP status received; 0: none
	Bytes  int64          `json:"bytes"`            // response bytes received
	Err    string         `json:"error,omitempty"`  // "" when it succeeded
	Kind   string         `json:"kind,omitempty"`   // ErrKind of Err
	Detail string         `json:"detail,omitempty"` // anything else worth a column
}

// Error kinds, from ErrKind.
const (
	KindReset    = "reset"       // ECONNRESET
	KindPipe     = "broken pipe" // EPIPE
	KindEOF      = "eof"         // the peer closed: an empty or cut reply
	KindTimeout  = "timeout"     // the client's own deadline
	KindTimedOut = "timed out"   // ETIMEDOUT from the kernel
	KindRefused  = "refused"
	KindOther    = "other"
)

// ErrKind classifies a client error.
func ErrKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNRESET):
		return KindReset
	case errors.Is(err, syscall.EPIPE):
		return KindPipe
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	case errors.Is(err, syscall.ETIMEDOUT):
		return KindTimedOut
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return KindEOF
	}
	return KindOther
}

// SetErr fills Err and Kind from err.
func (r *ClientResult) SetErr(err error) {
	if err == nil {
		return
	}
	r.Err, r.Kind = err.Error(), ErrKind(err)
}

// Dial opens a TCP connection from inside host's namespace to addr
// ("198.18.0.2:80"). The socket is created on a thread that has entered
// the namespace and stays there; the connection is used from anywhere and
// closed by the runner at the end if Drive did not. TCP keep-alive probes
// are off: they would change what the scenarios show.
func (c *Context) Dial(host, addr string, timeout time.Duration) (*net.TCPConn, error) {
	return c.DialControl(host, addr, timeout, nil)
}

// DialControl is Dial with control run on the socket before it connects
// (net.Dialer.Control), to set options such as TCP_FASTOPEN_CONNECT.
func (c *Context) DialControl(host, addr string, timeout time.Duration, control func(network, address string, rc syscall.RawConn) error) (*net.TCPConn, error) {
	var conn net.Conn
	err := netns.Do(filepath.Join("/run/netns", c.Namespace(host)), func() error {
		d := net.Dialer{Timeout: timeout, KeepAlive: -1, Control: control}
		var err error
		conn, err = d.DialContext(c.ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, host, err)
	}
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	return conn.(*net.TCPConn), nil
}

// RunClient is one recorded client connection: it dials addr from the
// client host (dial timeout dialTimeout), fills r's ends, runs fn on the
// connection, closes it and records r with its start and end times, also
// when the dial fails (r.Err then says why).
func (c *Context) RunClient(r ClientResult, addr string, dialTimeout time.Duration, fn func(conn *net.TCPConn, r *ClientResult)) {
	r.Start = time.Now()
	defer func() {
		r.End = time.Now()
		c.Record(r)
	}()
	conn, err := c.Dial("client", addr, dialTimeout)
	if err != nil {
		r.SetErr(err)
		return
	}
	defer conn.Close()
	r.Local, r.Remote = Ends(conn)
	fn(conn, &r)
}

// Ends returns a connection's local and remote addresses.
func Ends(conn net.Conn) (local, remote netip.AddrPort) {
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		local = a.AddrPort()
	}
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		remote = a.AddrPort()
	}
	return Unmap(local), Unmap(remote)
}

// Unmap turns an IPv4-mapped IPv6 address back into IPv4, as the capture
// and the lab's hosts name it.
func Unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Get sends "GET path HTTP/1.1" on conn (keep-alive unless close) and reads
// the response head and up to max body bytes (max < 0: all of it). It
// returns the status and the body bytes read.
func Get(conn net.Conn, br *bufio.Reader, path string, close bool, max int64) (int, int64, error) {
	req := "GET " + path + " HTTP/1.1\r\nHost: server\r\nUser-Agent: faultbox-scenario\r\n"
	if close {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return 0, 0, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	var body io.Reader = resp.Body
	if max >= 0 {
		body = io.LimitReader(resp.Body, max)
	}
	n, err := io.Copy(io.Discard, body)
	if err != nil {
		return resp.StatusCode, n, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, n, nil
}

// Describe says in a few words what the client got: the answer, or its
// error.
func (r ClientResult) Describe() string {
	if r.Err == "" {
		return fmt.Sprintf("answered %d (%d bytes)", r.Status, r.Bytes)
	}
	return fmt.Sprintf("%s (%s)", r.Kind, r.Err)
}

// closeConns closes every connection Dial opened.
func (c *Context) closeConns() {
	c.mu.Lock()
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
	}
}
