package serve

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// conn is one served connection. Its steps run in order on one goroutine,
// so the log shows exactly when the server read, wrote, half-closed and
// closed.
type conn struct {
	s    *Server
	cfg  *Config
	id   uint64
	nc   net.Conn
	peer string
	br   *bufio.Reader
	in   int64 // bytes read from the socket so far
}

// logReader is the socket as the parser sees it: every read that returns
// bytes is logged.
type logReader struct{ c *conn }

func (r logReader) Read(p []byte) (int, error) {
	n, err := r.c.nc.Read(p)
	if n > 0 {
		r.c.in += int64(n)
		r.c.log(Event{Event: EvRead, Bytes: int64(n)})
	}
	return n, err
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, cfg: &s.cfg, id: s.nextID.Add(1), nc: nc}
	if a := nc.RemoteAddr(); a != nil {
		c.peer = a.String()
	}
	// 16 KiB: more than a request head needs, little enough that an early
	// response leaves most of a large body unread in the kernel.
	c.br = bufio.NewReaderSize(logReader{c}, 16<<10)
	return c
}

func (c *conn) log(e Event) {
	e.Conn, e.Peer = c.id, c.peer
	c.s.log.Log(e)
}

// consumed is how many bytes the parser has taken so far.
func (c *conn) consumed() int64 { return c.in - int64(c.br.Buffered()) }

func (c *conn) serve() {
	ev := Event{Event: EvAccept}
	_, isTCP := c.nc.(*net.TCPConn)
	if wait, rtt, ok := acceptTimes(c.nc); ok {
		ev.Wait, ev.RTT = &wait, &rtt
	}
	c.log(ev)
	if isTCP && c.cfg.SndTimeo > 0 {
		if err := setSndTimeo(c.nc, c.cfg.SndTimeo); err != nil {
			c.log(Event{Event: EvError, Err: err.Error()})
		}
	}
	if isTCP && c.cfg.UserTimeout > 0 {
		if err := setUserTimeout(c.nc, c.cfg.UserTimeout); err != nil {
			c.log(Event{Event: EvError, Err: err.Error()})
		}
	}
	for first := true; c.serveOne(first); first = false {
	}
}

// serveOne reads one request and answers it. It returns false once the
// connection is closed.
func (c *conn) serveOne(first bool) bool {
	start := time.Now()
	var deadline time.Time // for the whole request, head and body
	if c.cfg.ReadTimeout > 0 {
		deadline = start.Add(c.cfg.ReadTimeout)
	}
	if !first && c.br.Buffered() == 0 {
		// Between requests: the next one must start within the keep-alive timeout.
		idle := start.Add(c.cfg.KeepAliveTimeout)
		if !deadline.IsZero() && deadline.Before(idle) {
			idle = deadline
		}
		c.nc.SetReadDeadline(idle)
		if _, err := c.br.Peek(1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.log(Event{Event: EvTimeout, Reason: "idle"})
				c.idleClose()
				return false
			}
			return c.readFailed(err, false)
		}
	}
	c.nc.SetReadDeadline(deadline)
	before := c.consumed()
	req, err := ReadRequest(c.br)
	if err != nil {
		return c.readFailed(err, c.consumed() > before || c.br.Buffered() > 0)
	}
	ev := Event{Event: EvRequest, Method: req.Method, Path: req.Target}
	if !req.Chunked {
		ev.Bytes = req.ContentLength
	}
	c.log(ev)

	if c.cfg.EarlyResponse && (req.Method == "POST" || req.Method == "PUT") && req.HasBody() {
		// Answer without reading the body, then close: the body stays
		// unread, so only a lingering close gets the answer to the client.
		hdr := "WWW-Authenticate: Basic realm=\"faultbox\"\r\n"
		if !c.cfg.EarlyCloseNoHeader {
			hdr += "Connection: close\r\n"
		}
		if c.respond(req, 401, hdr, []byte("unauthorized\n"), 0) {
			c.errorClose("early response")
		}
		return false
	}
	if req.HasBody() {
		if strings.EqualFold(req.Get("Expect"), "100-continue") && req.Minor >= 1 {
			if err := c.write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
				c.writeFailed(err)
				return false
			}
		}
		if _, err := ReadBody(c.br, req); err != nil {
			return c.readFailed(err, true)
		}
	}

	status, size, wait, msg := route(req.Path(), int64(c.cfg.ResponseSize))
	if wait > 0 {
		time.Sleep(wait) // not reading meanwhile, on purpose
	}
	keep := c.cfg.KeepAliveTimeout > 0 && req.KeepAlive()
	var hdr string
	switch {
	case !keep:
		hdr = "Connection: close\r\n"
	case req.Minor == 0:
		hdr = "Connection: keep-alive\r\n"
	}
	var body []byte
	if status != 200 {
		body, size = []byte(msg), 0
	}
	if !c.respond(req, status, hdr, body, size) {
		return false
	}
	if keep {
		return true
	}
	if status >= 400 {
		c.errorClose("error response")
	} else {
		c.close("no keep-alive")
	}
	return false
}

// readFailed handles a failed request read; started says whether any of
// the request had arrived. It always ends the connection.
func (c *conn) readFailed(err error, started bool) bool {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log(Event{Event: EvTimeout, Reason: "read"})
		if !started {
			c.close("read timeout")
		} else if c.respond(nil, 408, "Connection: close\r\n", []byte("request timeout\n"), 0) {
			c.errorClose("read timeout")
		}
	case errors.Is(err, errMalformed):
		c.log(Event{Event: EvError, Err: err.Error()})
		if c.respond(nil, 400, "Connection: close\r\n", []byte("bad request\n"), 0) {
			c.errorClose("bad request")
		}
	case err == io.EOF && !started:
		c.close("peer closed")
	case errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF:
		c.close("peer closed mid-request")
	default:
		c.log(Event{Event: EvError, Err: "read: " + err.Error()})
		c.close("read error")
	}
	return false
}

// idleClose ends a connection whose keep-alive timeout ran out: close(),
// or with FinWaitShutdown, shutdown(SHUT_WR) and keep the descriptor until
// the peer closes, so the socket waits in FIN_WAIT_2 with no orphan timer.
func (c *conn) idleClose() {
	if !c.cfg.FinWaitShutdown || !c.shutdownWrite("keep-alive timeout") {
		c.close("keep-alive timeout")
		return
	}
	c.nc.SetReadDeadline(time.Time{})
	_, err := io.Copy(io.Discard, c.br) // reads are logged; a request now gets no answer
	if err != nil {
		c.log(Event{Event: EvError, Err: "read: " + err.Error()})
	}
	c.close("peer closed after shutdown")
}

// errorClose ends a connection after an error response. Without Linger it
// closes at once: if unread input remains, the kernel sends a RST that can
// destroy the response at the client. With Linger it does what Apache's
// lingering close does: shutdown(SHUT_WR), read and discard input until the
// peer closes or LingerTime passes, then close.
func (c *conn) errorClose(reason string) {
	if !c.cfg.Linger || !c.shutdownWrite(reason) {
		c.close(reason)
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(c.cfg.LingerTime))
	n, _ := c.br.Discard(c.br.Buffered())
	drained := int64(n)
	buf := make([]byte, 64<<10)
	end := "peer closed"
	for {
		n, err := c.nc.Read(buf) // not logged one by one: the linger event has the total
		drained += int64(n)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			end = "linger time"
			c.log(Event{Event: EvTimeout, Reason: "linger"})
		} else if err != io.EOF {
			end = "read: " + err.Error()
		}
		break
	}
	c.log(Event{Event: EvLinger, Bytes: drained, Reason: end})
	c.close("lingering close: " + reason)
}

// shutdownWrite half-closes the connection (our FIN). It reports whether
// that worked.
func (c *conn) shutdownWrite(reason string) bool {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok {
		c.log(Event{Event: EvError, Err: fmt.Sprintf("shutdown: %T cannot half-close", c.nc)})
		return false
	}
	if err := cw.CloseWrite(); err != nil {
		c.log(Event{Event: EvError, Err: "shutdown: " + err.Error()})
		return false
	}
	c.log(Event{Event: EvShutdown, Reason: reason})
	return true
}

func (c *conn) close(reason string) {
	err := c.nc.Close()
	c.log(Event{Event: EvClose, Reason: reason, Err: errString(err)})
}

func (c *conn) writeFailed(err error) {
	c.log(Event{Event: EvError, Err: "write: " + err.Error()})
	c.close("write error")
}

// write sends p, logging each write call. With SO_SNDTIMEO it behaves like
// a blocking send() loop: each call may take up to the timeout; a call that
// moves some bytes returns them and the loop sends the rest; a call that
// moves none fails with EAGAIN, and the connection is given up.
func (c *conn) write(p []byte) error {
	for len(p) > 0 {
		if c.cfg.SndTimeo > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.cfg.SndTimeo))
		}
		n, err := c.nc.Write(p)
		if n > 0 {
			c.log(Event{Event: EvWrite, Bytes: int64(n)})
		}
		p = p[n:]
		switch {
		case err == nil:
		case c.cfg.SndTimeo > 0 && errors.Is(err, os.ErrDeadlineExceeded) && n > 0:
			// a partial send; the next call gets a fresh timeout
		case c.cfg.SndTimeo > 0 && errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("nothing sent within SO_SNDTIMEO %v: %w", c.cfg.SndTimeo, unix.EAGAIN)
		default:
			return err
		}
	}
	return nil
}

// respond writes a response: status line, the standard headers, extra
// (complete header lines), and either body or size bytes of the pattern.
// It logs the response and reports success; on failure the connection is
// closed.
func (c *conn) respond(req *Request, status int, extra string, body []byte, size int64) bool {
	if body != nil {
		size = int64(len(body))
	}
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nServer: faultbox\r\nDate: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n",
		status, statusText(status), time.Now().UTC().Format(httpDate), size, extra)
	if req != nil && req.Method == "HEAD" {
		size = 0
	}
	// The head goes out with the first chunk of the body so that a small
	// response is one write, and so one segment.
	out := []byte(head)
	var sent int64
	for first := true; first || sent < size; first = false {
		n := min(size-sent, writeChunk)
		if body != nil {
			out = append(out, body[sent:sent+n]...)
		} else {
			out = append(out, patternAt(sent, n)...)
		}
		if err := c.write(out); err != nil {
			c.writeFailed(err)
			return false
		}
		sent += n
		out = out[:0]
	}
	c.log(Event{Event: EvResponse, Status: status, Bytes: sent})
	return true
}
