package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// client is one client connection.
type client struct {
	raw  net.Conn
	conn *timedConn
	br   *bufio.Reader
	addr string
}

// maxRequestsPerClient bounds one client connection's loop.
const maxRequestsPerClient = 1 << 20

// serveClient reads the client's requests one after another (HTTP/1.1
// keep-alive) and relays each to a backend.
func (p *Proxy) serveClient(c net.Conn) {
	tc := &timedConn{Conn: c, rd: p.cfg.ClientIdleTimeout, wd: p.cfg.ClientIdleTimeout}
	cc := &client{raw: c, conn: tc, br: bufio.NewReaderSize(tc, 32<<10), addr: c.RemoteAddr().String()}
	for i := 0; i < maxRequestsPerClient; i++ {
		req, err := readRequest(cc.br, p.cfg.MaxHeaderBytes)
		if err != nil {
			if isMalformed(err) {
				cc.conn.Write(errorResponse(400, false))
				p.log.write(&Entry{Time: stamp(p.clock.Now()), Client: cc.addr, Outcome: Outcome400, Status: 400, Error: err.Error()})
			}
			return
		}
		if !p.handle(cc, req) {
			return
		}
	}
}

// failure is how an exchange went wrong before the response reached the
// client; kinds map to the outcome each mode reports.
type failure int

const (
	failNone       failure = iota
	failConnect            // no backend connection
	failNoResponse         // closed or reset before any response byte
	failTimeout            // no response within response_timeout
	failMalformed          // the response is not HTTP
	failMidBody            // the response head went out, then something broke
)

// handle relays one request and logs it; false closes the client.
func (p *Proxy) handle(cc *client, req *message) bool {
	e := &Entry{Time: stamp(p.clock.Now()), Client: cc.addr, Method: req.method, Path: req.target}
	defer p.log.write(e)
	pl := p.pick()
	e.Backend = pl.addr
	for {
		c, err := pl.get(p.ctx)
		if err != nil {
			e.Error = err.Error()
			kind := failConnect
			if isTimeout(err) {
				kind = failTimeout
			}
			return p.fail(cc, e, kind, nil)
		}
		held := c.uses > 0 && p.cfg.Aim != nil
		if !p.aim(c, e) {
			pl.discard(c, "shutdown")
			e.Outcome, e.Error = OutcomeReset, errPoolClosed.Error()
			return false
		}
		if held && p.cfg.CheckBeforeReuse {
			// get checked the connection before the hold; the request goes
			// out now, so check it again: the backend may have closed it
			// meanwhile (its FIN arrived). Not a retry: nothing was sent.
			if ok, why := alive(c); !ok {
				pl.discard(c, "check_before_reuse: "+why)
				continue
			}
		}
		kind, body, keep, err := p.exchange(cc, c, req, e)
		if kind == failNone {
			e.Outcome = OutcomeOK
			if err != nil {
				e.Error = err.Error()
			}
			return keep
		}
		e.Error = err.Error()
		if kind == failNoResponse && e.Retries == 0 && p.cfg.RetryIdempotent && body == nil &&
			(req.method == "GET" || req.method == "HEAD") {
			e.Retries++
			continue
		}
		return p.fail(cc, e, kind, body)
	}
}

// aim holds a request on a reused connection until the aim point.
func (p *Proxy) aim(c *bconn, e *Entry) bool {
	a := p.cfg.Aim
	if a == nil || c.uses == 0 {
		return true
	}
	wait := c.lastUse.Add(a.BackendIdle + a.Offset).Sub(p.clock.Now())
	if wait <= 0 {
		return true // already past it: sent now
	}
	e.Aimed, e.Held = true, ms(wait)
	return sleep(p.ctx, p.clock, wait)
}

// fail answers the client after a failed exchange, per mode. body is the
// request-body relay still running, if any.
func (p *Proxy) fail(cc *client, e *Entry, kind failure, body *bodyRelay) bool {
	inSync := body.finished()
	status := 502
	switch {
	case kind == failMidBody:
		// Part of a response is out: only an abort tells the client.
		if tc, ok := cc.raw.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		cc.raw.Close()
		body.wait()
		e.Outcome = OutcomeReset
		return false
	case p.cfg.Mode == ModeJuniperDX && p.cfg.EmptyReply:
		cc.raw.Close() // the blank page: no response at all
		body.wait()
		e.Outcome = OutcomeEmptyReply
		return false
	case p.cfg.Mode == ModeELB && (kind == failNoResponse || kind == failTimeout):
		status = 504
	}
	e.Status = status
	e.Outcome = fmt.Sprint(status)
	cc.conn.Write(errorResponse(status, inSync))
	if !inSync {
		cc.raw.Close() // the client is mid-body: the connection cannot go on
		body.wait()
	}
	return inSync
}

// exchange sends req on c and relays the response to the client. On
// failNone, keep says whether the client connection can go on, and err
// reports a client-side failure after the response.
func (p *Proxy) exchange(cc *client, c *bconn, req *message, e *Entry) (kind failure, body *bodyRelay, keep bool, err error) {
	pl := c.pool
	start := p.clock.Now()
	e.BackendConn, e.ReuseCount = c.id, c.uses
	e.ConnAge, e.ConnIdle = ms(start.Sub(c.opened)), ms(start.Sub(c.lastUse))
	took := func() { e.BackendTime = ms(p.clock.Now().Sub(start)) }

	if _, err := c.conn.Write(p.requestHead(req, cc.addr)); err != nil {
		took()
		pl.discard(c, "request failed")
		return classify(err, 0), nil, false, fmt.Errorf("sending the request: %w", explain(err))
	}
	if req.body != bodyNone {
		body = p.relayBody(cc, c, req)
	}
	var resp *message
	for i := 0; ; i++ {
		var n int
		var err error
		resp, n, err = readResponse(c.br, p.cfg.MaxHeaderBytes, req.method)
		if err == nil && resp.status == 101 {
			err = badf("101 Switching Protocols is not supported")
		}
		if err == nil && resp.status < 200 && i >= 8 {
			err = badf("more than 8 interim responses")
		}
		if err != nil {
			took()
			pl.discard(c, "no response")
			if n == 0 {
				err = explain(err)
			}
			return classify(err, n), body, false, fmt.Errorf("reading the response: %w", err)
		}
		if resp.status >= 200 {
			break
		}
		if req.minor >= 1 { // interim (100 Continue): 1.0 clients do not get them
			cc.conn.Write(p.responseHead(resp, req, true))
		}
	}
	took()
	e.Status = resp.status
	e.Early = body != nil && !body.finished()

	keep = req.keepAlive()
	dechunk := resp.body == bodyChunked && req.minor == 0
	if resp.body == bodyUntilClose || dechunk {
		keep = false // the end of the body is the end of the connection
	}
	// Unbuffered: every piece of the response goes on as soon as it
	// arrives, so the client sees the backend's pace (and what came before
	// a failure).
	cw := &errWriter{w: cc.conn}
	head := p.responseHead(resp, req, keep)
	if resp.body == bodyLength && resp.length <= int64(c.br.Buffered()) {
		// All here already: one write, as the backend sent it.
		b, _ := c.br.Peek(int(resp.length))
		head = append(head, b...)
		c.br.Discard(len(b))
		resp.body = bodyNone
	}
	cw.Write(head)
	err = copyBody(cw, c.br, resp, dechunk)
	if cw.err != nil || err != nil {
		pl.discard(c, "response failed")
		if cw.err != nil {
			return failMidBody, body, false, fmt.Errorf("client: %w", cw.err)
		}
		return failMidBody, body, false, fmt.Errorf("reading the response body: %w", err)
	}

	reuse := resp.keepAlive() && resp.body != bodyUntilClose
	bodyErr := body.wait()
	switch {
	case e.Early && p.cfg.HopByHop == "buggy":
		// The bug: no Connection: close, so the connection looks reusable,
		// whatever happened to the rest of the request body.
	case e.Early:
		reuse = false // the server may have stopped reading: never reuse
	case bodyErr != nil:
		reuse = false
	}
	if reuse {
		pl.put(c)
	} else {
		pl.discard(c, "not reusable")
	}
	if body != nil && body.clientErr != nil {
		return failNone, nil, false, body.clientErr
	}
	return failNone, nil, keep, nil
}

// classify maps a failure before the response head to its kind.
func classify(err error, read int) failure {
	switch {
	case isTimeout(err):
		return failTimeout
	case isMalformed(err) || read > 0:
		return failMalformed
	}
	return failNoResponse
}

// explain says in words what a closed or reset backend connection did.
func explain(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("the backend had closed the connection (EOF before any response byte): %w", err)
	case errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("the backend reset the connection (RST): %w", err)
	case errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("the backend had closed the connection (EPIPE): %w", err)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// requestHead builds the request line and fields sent to the backend.
func (p *Proxy) requestHead(req *message, clientAddr string) []byte {
	b := make([]byte, 0, 512)
	b = fmt.Appendf(b, "%s %s HTTP/1.1\r\n", req.method, req.target)
	if p.cfg.HopByHop == "buggy" {
		b = appendFields(b, req.hdr) // as the client sent it, Connection: keep-alive too
	} else {
		b = appendFields(b, endToEnd(req.hdr))
		b = appendFraming(b, req)
	}
	if host, _, err := net.SplitHostPort(clientAddr); err == nil {
		b = fmt.Appendf(b, "X-Forwarded-For: %s\r\n", host)
	}
	return append(b, "\r\n"...)
}

// responseHead builds the head sent to the client: the backend's status
// and end-to-end fields, with the proxy's own framing and Connection.
func (p *Proxy) responseHead(resp *message, req *message, keep bool) []byte {
	b := make([]byte, 0, 512)
	b = fmt.Appendf(b, "HTTP/1.1 %d %s\r\n", resp.status, resp.reason)
	b = appendFields(b, endToEnd(resp.hdr))
	switch {
	case resp.body == bodyLength:
		b = appendFraming(b, resp)
	case resp.body == bodyChunked && req.minor >= 1:
		b = appendFraming(b, resp)
	case resp.body == bodyNone && resp.status >= 200 && resp.status != 204:
		if cl, ok := resp.hdr.get("Content-Length"); ok { // HEAD, 304
			b = fmt.Appendf(b, "Content-Length: %s\r\n", cl)
		}
	}
	if resp.status >= 200 {
		switch {
		case !keep:
			b = append(b, "Connection: close\r\n"...)
		case req.minor == 0:
			b = append(b, "Connection: keep-alive\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// bodyRelay copies a request body from the client to the backend while
// the response is awaited (a server may answer early).
type bodyRelay struct {
	done       chan struct{}
	backendErr error // the first write error; the rest of the body is drained
	clientErr  error // the client's body was cut short: the client cannot go on
}

func (p *Proxy) relayBody(cc *client, c *bconn, req *message) *bodyRelay {
	r := &bodyRelay{done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(r.done)
		w := &errWriter{w: c.conn, drain: true}
		if err := copyBody(w, cc.br, req, false); err != nil {
			r.clientErr = fmt.Errorf("client request body: %w", err)
		}
		r.backendErr = w.err
	}()
	return r
}

// finished reports whether the whole body was read from the client (true
// when there is none).
func (r *bodyRelay) finished() bool {
	if r == nil {
		return true
	}
	select {
	case <-r.done:
		return r.clientErr == nil
	default:
		return false
	}
}

// wait waits for the relay to end and returns the backend's write error.
// It ends when the body does, or when the client connection is closed.
func (r *bodyRelay) wait() error {
	if r == nil {
		return nil
	}
	<-r.done
	if r.clientErr != nil {
		return r.clientErr
	}
	return r.backendErr
}

// errWriter keeps the first write error; with drain it then swallows the
// rest, so the reader side can go on to the end of the message.
type errWriter struct {
	w     io.Writer
	err   error
	drain bool
}

func (w *errWriter) Write(b []byte) (int, error) {
	if w.err != nil {
		if w.drain {
			return len(b), nil
		}
		return 0, w.err
	}
	n, err := w.w.Write(b)
	if err != nil {
		w.err = err
		if w.drain {
			return len(b), nil
		}
	}
	return n, err
}
