package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when told; After's channels fire on Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	asked  []time.Duration // every After duration, in order
}

type fakeTimer struct {
	at      time.Time
	ch      chan time.Time
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.asked = append(c.asked, d)
	if d <= 0 {
		t.ch <- c.now
		return t.ch, func() {}
	}
	c.timers = append(c.timers, t)
	return t.ch, func() {
		c.mu.Lock()
		t.stopped = true
		c.mu.Unlock()
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.ch <- c.now
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
}

// waitAsked waits (real time, bounded) until some After(d) was called.
func (c *fakeClock) waitAsked(t *testing.T, d time.Duration) {
	t.Helper()
	eventually(t, "a timer of "+d.String(), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, a := range c.asked {
			if a == d {
				return true
			}
		}
		return false
	})
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// pipeDialer "connects" with net.Pipe and hands the backend's end to the
// test through accepted.
type pipeDialer struct {
	mu       sync.Mutex
	dials    int
	refuse   bool
	accepted chan net.Conn
}

func newPipeDialer() *pipeDialer { return &pipeDialer{accepted: make(chan net.Conn, 64)} }

func (d *pipeDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials++
	if d.refuse {
		return nil, errors.New("connection refused")
	}
	a, b := net.Pipe()
	d.accepted <- b
	return a, nil
}

func (d *pipeDialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

// next returns the backend end of the next connection the proxy opens.
func (d *pipeDialer) next(t *testing.T) *backendEnd {
	t.Helper()
	select {
	case c := <-d.accepted:
		t.Cleanup(func() { c.Close() })
		return &backendEnd{c: c, br: bufio.NewReader(c)}
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy opened no backend connection")
		return nil
	}
}

// backendEnd is the server side of one proxy-to-backend connection.
type backendEnd struct {
	c  net.Conn
	br *bufio.Reader
}

// request reads one request head (the body is left unread).
func (b *backendEnd) request(t *testing.T) *message {
	t.Helper()
	b.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := readRequest(b.br, 64<<10)
	if err != nil {
		t.Fatalf("backend: reading the request: %v", err)
	}
	return m
}

// silent checks that nothing arrives for d.
func (b *backendEnd) silent(t *testing.T, d time.Duration) {
	t.Helper()
	b.c.SetReadDeadline(time.Now().Add(d))
	if n, err := b.br.Peek(1); err == nil || !isTimeout(err) {
		t.Fatalf("backend received %q (err %v); want nothing", n, err)
	}
}

func (b *backendEnd) send(t *testing.T, s string) {
	t.Helper()
	b.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(b.c, s); err != nil {
		t.Fatalf("backend: writing: %v", err)
	}
}

const ok200 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// serveOne answers one request with ok200.
func (b *backendEnd) serveOne(t *testing.T) *message {
	t.Helper()
	m := b.request(t)
	b.send(t, ok200)
	return m
}

// syncBuffer is a log the proxy writes and the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// entries returns the request lines logged so far.
func (s *syncBuffer) entries(t *testing.T) []Entry { return logLines[Entry](t, s, false) }

// events returns the pool event lines logged so far.
func (s *syncBuffer) events(t *testing.T) []PoolEvent { return logLines[PoolEvent](t, s, true) }

// logLines decodes the pool event lines logged so far (events), or the
// request lines (!events).
func logLines[T any](t *testing.T, s *syncBuffer, events bool) []T {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []T
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" || strings.Contains(l, `"event":`) != events {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, v)
	}
	return out
}

// waitEntries waits until n request lines are logged and returns them.
func (s *syncBuffer) waitEntries(t *testing.T, n int) []Entry {
	t.Helper()
	var es []Entry
	eventually(t, "log entries", func() bool { es = s.entries(t); return len(es) >= n })
	return es
}

type testProxy struct {
	*Proxy
	d   *pipeDialer
	log *syncBuffer
}

// newTestProxy starts a proxy on a pipe dialer with one backend.
func newTestProxy(t *testing.T, cfg Config, clock Clock) *testProxy {
	t.Helper()
	tp := &testProxy{d: newPipeDialer(), log: &syncBuffer{}}
	p, err := New(&cfg, Options{Backends: []string{"198.18.0.2:80"}, Log: tp.log, Dial: tp.d.Dial, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	tp.Proxy = p
	t.Cleanup(func() { p.Close() })
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return tp
}

// pooled has a new client make one request on a new backend connection,
// and waits until that connection is idle in the pool; it returns both ends.
func (tp *testProxy) pooled(t *testing.T) (*clientEnd, *backendEnd) {
	t.Helper()
	cl := tp.client(t)
	done := cl.getAsync()
	be := tp.d.next(t)
	be.serveOne(t)
	status(t, done)
	tp.waitIdle(t)
	return cl, be
}

// waitIdle waits until one connection is idle in the pool.
func (tp *testProxy) waitIdle(t *testing.T) {
	t.Helper()
	eventually(t, "the connection back in the pool", func() bool { return tp.pools[0].idleCount() == 1 })
}

// forward has a new client send req and returns both ends once the
// request has reached a backend connection.
func (tp *testProxy) forward(t *testing.T, req string) (*clientEnd, *backendEnd) {
	t.Helper()
	cl := tp.client(t)
	cl.send(t, req)
	be := tp.d.next(t)
	be.request(t)
	return cl, be
}

// heldUntil checks that the request behind done, held on clock by a timer
// of d, reaches be only when d has passed, and gets 200.
func heldUntil(t *testing.T, clock *fakeClock, be *backendEnd, done <-chan int, d time.Duration) {
	t.Helper()
	clock.waitAsked(t, d)
	clock.Advance(d - time.Millisecond)
	be.silent(t, 50*time.Millisecond)
	clock.Advance(time.Millisecond)
	be.serveOne(t)
	if st := status(t, done); st != 200 {
		t.Fatalf("status %d", st)
	}
}

// client connects a new client over a pipe.
func (tp *testProxy) client(t *testing.T) *clientEnd {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close() })
	if !tp.track(b) {
		t.Fatal("proxy closed")
	}
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		defer tp.untrack(b)
		tp.serveClient(b)
	}()
	return &clientEnd{c: a, br: bufio.NewReader(a)}
}

type clientEnd struct {
	c  net.Conn
	br *bufio.Reader
}

func (c *clientEnd) send(t *testing.T, s string) {
	t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		t.Fatalf("client: writing: %v", err)
	}
}

// response reads a response and its body; nil and the error if none came.
func (c *clientEnd) response(t *testing.T, method string) (*message, string, error) {
	t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, _, err := readResponse(c.br, 64<<10, method)
	if err != nil {
		return nil, "", err
	}
	var body bytes.Buffer
	if err := copyBody(&body, c.br, m, true); err != nil {
		return m, body.String(), err
	}
	return m, body.String(), nil
}

// get sends a GET and returns the status (0 when the proxy closed without
// a response).
func (c *clientEnd) get(t *testing.T) int {
	t.Helper()
	st, err := c.tryGet()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// tryGet is get for other goroutines than the test's.
func (c *clientEnd) tryGet() (int, error) {
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.c, "GET /x HTTP/1.1\r\nHost: lb\r\n\r\n"); err != nil {
		return 0, fmt.Errorf("client: writing: %w", err)
	}
	m, _, err := readResponse(c.br, 64<<10, "GET")
	if err == nil {
		err = copyBody(io.Discard, c.br, m, true)
	}
	switch {
	case err != nil && isTimeout(err):
		return 0, fmt.Errorf("client: no response and no close: %w", err)
	case m == nil:
		return 0, nil // closed with no response
	case err != nil:
		return 0, fmt.Errorf("client: response body: %w", err)
	}
	return m.status, nil
}

// getAsync runs tryGet in a goroutine.
func (c *clientEnd) getAsync() <-chan int {
	ch := make(chan int, 1)
	go func() {
		st, err := c.tryGet()
		if err != nil {
			st = -1
		}
		ch <- st
	}()
	return ch
}

// status waits for a getAsync result.
func status(t *testing.T, ch <-chan int) int {
	t.Helper()
	select {
	case st := <-ch:
		if st < 0 {
			t.Fatal("client request failed (see proxy log)")
		}
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("client got nothing")
		return 0
	}
}
