package serve

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"time"
)

// Logic tests of the connection state machine on socketpairs: real kernel
// buffers, half-close and deadlines, no network.

func TestServe_KeepAliveReuseThenCloseAfterIdleTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.KeepAliveTimeout = 300 * time.Millisecond
	c, lb, done := serveConnPair(t, cfg)
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		r := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: s\r\n\r\n")
		if r.Status != 200 || r.Header["connection"] != "" {
			t.Fatalf("request %d: status %d, Connection %q", i, r.Status, r.Header["connection"])
		}
	}
	idleFrom := time.Now()
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the idle timeout: read %d, %v; want EOF", n, err)
	}
	idle := time.Since(idleFrom)
	if idle < 250*time.Millisecond || idle > 700*time.Millisecond {
		t.Errorf("EOF after %v idle, want about the 300ms keep-alive timeout", idle)
	}
	waitDone(t, done, 2*time.Second)
	var requests, accepts int
	var closed Event
	for _, e := range lb.Events(t) {
		switch e.Event {
		case EvAccept:
			accepts++
		case EvRequest:
			requests++
		case EvClose:
			closed = e
		}
		if e.Conn != 1 {
			t.Errorf("event %s on conn %d, want everything on conn 1", e.Event, e.Conn)
		}
	}
	if accepts != 1 || requests != 2 || closed.Reason != "keep-alive timeout" {
		t.Errorf("%d accepts, %d requests, close %q; want 1, 2, keep-alive timeout", accepts, requests, closed.Reason)
	}
	to := lb.WaitFor(t, time.Second, named(EvTimeout))
	if to.Reason != "idle" {
		t.Errorf("timeout reason %q, want idle", to.Reason)
	}
}

func TestServe_NoKeepAliveClosesAfterEachResponse(t *testing.T) {
	cfg := DefaultConfig()
	cfg.KeepAliveTimeout = 0
	c, lb, done := serveConnPair(t, cfg)
	br := bufio.NewReader(c)
	r := roundTrip(t, c, br, "GET / HTTP/1.1\r\n\r\n")
	if r.Header["connection"] != "close" {
		t.Errorf("Connection %q, want close", r.Header["connection"])
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the response: %v, want EOF", err)
	}
	waitDone(t, done, 2*time.Second)
	if e := lb.WaitFor(t, time.Second, named(EvClose)); e.Reason != "no keep-alive" {
		t.Errorf("close reason %q", e.Reason)
	}
}

func TestServe_ResponseSizes(t *testing.T) {
	cfg := DefaultConfig() // 1kb for GET /
	c, lb, _ := serveConnPair(t, cfg)
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		req    string
		status int
		size   int
	}{
		{"GET / HTTP/1.1\r\n\r\n", 200, 1000},
		{"GET /bytes/12345 HTTP/1.1\r\n\r\n", 200, 12345},
		{"GET /bytes/0 HTTP/1.1\r\n\r\n", 200, 0},
		{"GET /bytes/3mib HTTP/1.1\r\n\r\n", 200, 3 << 20},
		{"GET /some/other/path?q=1 HTTP/1.1\r\n\r\n", 200, 1000},
		{"GET /bytes/many HTTP/1.1\r\n\r\n", 400, -1},
	} {
		r := roundTrip(t, c, br, tc.req)
		if r.Status != tc.status || (tc.size >= 0 && len(r.Body) != tc.size) {
			t.Errorf("%q: %d with %d bytes, want %d with %d", tc.req, r.Status, len(r.Body), tc.status, tc.size)
		}
		if tc.status == 200 && len(r.Body) >= 64 && string(r.Body[:8]) != "faultbox" {
			t.Errorf("%q: body starts %q", tc.req, r.Body[:8])
		}
	}
	r := roundTrip(t, c, br, "HEAD /bytes/500 HTTP/1.1\r\n\r\n")
	if r.Status != 200 || r.Header["content-length"] != "500" {
		t.Errorf("HEAD: %d, Content-Length %q", r.Status, r.Header["content-length"])
	}
	start := time.Now()
	r = roundTrip(t, c, br, "GET /sleep/200ms HTTP/1.1\r\n\r\n")
	if el := time.Since(start); r.Status != 200 || el < 200*time.Millisecond || el > 2*time.Second {
		t.Errorf("/sleep/200ms: %d after %v", r.Status, el)
	}
	// The response event counts body bytes; write events count the wire.
	// The last one is logged just after the client has read it: wait.
	lb.WaitCount(t, time.Second, EvResponse, 8)
	var body, wire int64
	for _, e := range lb.Events(t) {
		if e.Event == EvResponse && e.Status == 200 {
			body += e.Bytes
		}
		if e.Event == EvWrite {
			wire += e.Bytes
		}
	}
	if want := int64(1000 + 12345 + 3<<20 + 1000 + 1000); body != want || wire <= body {
		t.Errorf("logged %d body bytes (want %d), %d on the wire", body, want, wire)
	}
}

func TestServe_ChunkedPostAndPipelining(t *testing.T) {
	c, lb, _ := serveConnPair(t, DefaultConfig())
	br := bufio.NewReader(c)
	// Two requests in one write: the second must be served from the buffer.
	_, err := io.WriteString(c, "POST /bytes/10 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"4\r\nabcd\r\n0\r\n\r\nGET /bytes/20 HTTP/1.1\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{10, 20} {
		r, err := readResponse(br, false)
		if err != nil || r.Status != 200 || len(r.Body) != want {
			t.Fatalf("pipelined response: %v %+v, want %d bytes", err, r, want)
		}
	}
	lb.WaitFor(t, time.Second, func(e Event) bool { return e.Event == EvRequest && e.Path == "/bytes/20" })
}

func TestServe_Expect100Continue(t *testing.T) {
	c, _, _ := serveConnPair(t, DefaultConfig())
	br := bufio.NewReader(c)
	io.WriteString(c, "POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("interim response %q, %v", line, err)
	}
	br.ReadString('\n') // the empty line after 100 Continue
	io.WriteString(c, "abc")
	if r, err := readResponse(br, false); err != nil || r.Status != 200 {
		t.Fatalf("final response %+v, %v", r, err)
	}
}

func TestServe_EarlyResponse_ConnectionCloseHeaderOrNot(t *testing.T) {
	for _, noHeader := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.EarlyResponse, cfg.EarlyCloseNoHeader = true, noHeader
		c, lb, done := serveConnPair(t, cfg)
		br := bufio.NewReader(c)
		// Only the head and a bit of the declared 1 MB body are sent.
		io.WriteString(c, "POST /api HTTP/1.1\r\nHost: s\r\nContent-Length: 1000000\r\n\r\npartial")
		r, err := readResponse(br, false)
		if err != nil || r.Status != 401 {
			t.Fatalf("noHeader=%v: %+v, %v; want an early 401", noHeader, r, err)
		}
		if got, want := r.Header["connection"], map[bool]string{false: "close", true: ""}[noHeader]; got != want {
			t.Errorf("noHeader=%v: Connection %q, want %q", noHeader, got, want)
		}
		// Either way the server closes: the client sees EOF next.
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("noHeader=%v: after the 401: %v, want EOF", noHeader, err)
		}
		waitDone(t, done, 2*time.Second)
		if e := lb.WaitFor(t, time.Second, named(EvClose)); e.Reason != "early response" {
			t.Errorf("noHeader=%v: close reason %q", noHeader, e.Reason)
		}
		for _, e := range lb.Events(t) {
			if e.Event == EvLinger || e.Event == EvShutdown {
				t.Errorf("noHeader=%v: %s without --linger", noHeader, e.Event)
			}
		}
	}
}

func TestServe_EarlyResponseGETIsServedNormally(t *testing.T) {
	cfg := DefaultConfig()
	cfg.EarlyResponse = true
	c, _, _ := serveConnPair(t, cfg)
	br := bufio.NewReader(c)
	if r := roundTrip(t, c, br, "GET / HTTP/1.1\r\n\r\n"); r.Status != 200 {
		t.Errorf("GET: %d", r.Status)
	}
	if r := roundTrip(t, c, br, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"); r.Status != 200 {
		t.Errorf("POST without a body: %d", r.Status)
	}
}

func TestServe_LingeringCloseDrainsThenCloses(t *testing.T) {
	cfg := DefaultConfig()
	cfg.EarlyResponse, cfg.Linger, cfg.LingerTime = true, true, 3*time.Second
	c, lb, done := serveConnPair(t, cfg)
	br := bufio.NewReader(c)
	io.WriteString(c, "PUT / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")
	r, err := readResponse(br, false)
	if err != nil || r.Status != 401 {
		t.Fatalf("%+v, %v; want an early 401", r, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the 401: %v, want EOF from shutdown(SHUT_WR)", err)
	}
	lb.WaitFor(t, time.Second, named(EvShutdown))
	// Half-closed, the server still reads: the rest of the body goes through.
	if _, err := c.Write(make([]byte, 100000)); err != nil {
		t.Fatalf("sending the body after the 401: %v", err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	waitDone(t, done, 2*time.Second)
	l := lb.WaitFor(t, time.Second, named(EvLinger))
	if l.Bytes != 100000 || l.Reason != "peer closed" {
		t.Errorf("linger drained %d bytes (%s), want 100000 (peer closed)", l.Bytes, l.Reason)
	}
}

func TestServe_LingerTimeBoundsTheDrain(t *testing.T) {
	cfg := DefaultConfig()
	cfg.EarlyResponse, cfg.Linger, cfg.LingerTime = true, true, 300*time.Millisecond
	c, lb, done := serveConnPair(t, cfg)
	start := time.Now()
	io.WriteString(c, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
	waitDone(t, done, 3*time.Second) // the client never closes
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("closed after %v, before the 300ms linger time", el)
	}
	if l := lb.WaitFor(t, time.Second, named(EvLinger)); l.Reason != "linger time" {
		t.Errorf("linger reason %q, want linger time", l.Reason)
	}
}

func TestServe_ReadTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadTimeout = 200 * time.Millisecond
	// Nothing sent: closed without an answer (as after a deferred accept).
	c, lb, done := serveConnPair(t, cfg)
	start := time.Now()
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle new connection: read %d, %v; want EOF", n, err)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Errorf("closed after %v, want about 200ms", el)
	}
	waitDone(t, done, time.Second)
	if e := lb.WaitFor(t, time.Second, named(EvClose)); e.Reason != "read timeout" {
		t.Errorf("close reason %q", e.Reason)
	}
	// Half a request: 408, then close.
	c, _, _ = serveConnPair(t, cfg)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost:")
	if r, err := readResponse(bufio.NewReader(c), false); err != nil || r.Status != 408 {
		t.Errorf("half a request: %+v, %v; want 408", r, err)
	}
}

func TestServe_MalformedRequestGets400(t *testing.T) {
	c, lb, done := serveConnPair(t, DefaultConfig())
	io.WriteString(c, "HELLO\r\n\r\n")
	if r, err := readResponse(bufio.NewReader(c), false); err != nil || r.Status != 400 || r.Header["connection"] != "close" {
		t.Errorf("%+v, %v; want 400 with Connection: close", r, err)
	}
	waitDone(t, done, time.Second)
	lb.WaitFor(t, time.Second, func(e Event) bool { return e.Event == EvError && strings.Contains(e.Err, "malformed") })
}

func TestServe_SndTimeoGivesUpOnAStalledPeer(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SndTimeo = 300 * time.Millisecond
	c, lb, done := serveConnPair(t, cfg)
	io.WriteString(c, "GET /bytes/64mib HTTP/1.1\r\n\r\n") // and never read
	waitDone(t, done, 5*time.Second)
	var lastWrite, errAt, closeAt float64
	for _, e := range lb.Events(t) {
		switch e.Event {
		case EvWrite:
			lastWrite = e.T
		case EvError:
			if !strings.Contains(e.Err, "SO_SNDTIMEO") || !strings.Contains(e.Err, "temporarily unavailable") {
				t.Errorf("error %q, want EAGAIN after SO_SNDTIMEO", e.Err)
			}
			errAt = e.T
		case EvClose:
			closeAt = e.T
		case EvResponse:
			t.Errorf("a 64 MiB response completed to a peer that reads nothing")
		}
	}
	if stall := errAt - lastWrite; errAt == 0 || closeAt < errAt || stall < 0.29 || stall > 2 {
		t.Errorf("last write at %.3f, error at %.3f, close at %.3f: want the error 300ms after the last progress", lastWrite, errAt, closeAt)
	}
}

func TestServe_FinWaitShutdownKeepsTheDescriptor(t *testing.T) {
	cfg := DefaultConfig()
	cfg.KeepAliveTimeout, cfg.FinWaitShutdown = 200*time.Millisecond, true
	c, lb, done := serveConnPair(t, cfg)
	br := bufio.NewReader(c)
	roundTrip(t, c, br, "GET / HTTP/1.1\r\n\r\n")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the idle timeout: %v, want EOF (the server's FIN)", err)
	}
	lb.WaitFor(t, time.Second, named(EvShutdown))
	time.Sleep(200 * time.Millisecond)
	for _, e := range lb.Events(t) {
		if e.Event == EvClose {
			t.Fatalf("closed (%s) although the peer has not closed", e.Reason)
		}
	}
	c.Close()
	waitDone(t, done, time.Second)
	if e := lb.WaitFor(t, time.Second, named(EvClose)); e.Reason != "peer closed after shutdown" {
		t.Errorf("close reason %q", e.Reason)
	}
}

func TestServe_LogHasTheTimelineEvents(t *testing.T) {
	cfg := DefaultConfig()
	cfg.KeepAliveTimeout = 100 * time.Millisecond
	c, lb, done := serveConnPair(t, cfg)
	roundTrip(t, c, bufio.NewReader(c), "GET /bytes/10 HTTP/1.1\r\n\r\n")
	waitDone(t, done, 2*time.Second)
	seen := map[string]bool{}
	var lastT float64
	for _, e := range lb.Events(t) {
		seen[e.Event] = true
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Errorf("%s: time %q: %v", e.Event, e.Time, err)
		}
		if e.T < lastT {
			t.Errorf("%s: t %.6f goes back from %.6f", e.Event, e.T, lastT)
		}
		lastT = e.T
		if e.Conn != 1 {
			t.Errorf("%s: conn %d", e.Event, e.Conn)
		}
		switch e.Event {
		case EvRead, EvWrite:
			if e.Bytes <= 0 {
				t.Errorf("%s without bytes", e.Event)
			}
		case EvRequest:
			if e.Method != "GET" || e.Path != "/bytes/10" {
				t.Errorf("request %s %s", e.Method, e.Path)
			}
		case EvResponse:
			if e.Status != 200 || e.Bytes != 10 {
				t.Errorf("response %d with %d bytes", e.Status, e.Bytes)
			}
		}
	}
	for _, ev := range []string{EvAccept, EvRead, EvRequest, EvWrite, EvResponse, EvTimeout, EvClose} {
		if !seen[ev] {
			t.Errorf("no %s event in:\n%s", ev, lb)
		}
	}
}
