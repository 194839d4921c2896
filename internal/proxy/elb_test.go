package proxy

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// newELB starts an elb proxy and consumes its startup check connection.
func newELB(t *testing.T, cfg Config, clock Clock) *testProxy {
	t.Helper()
	tp := newTestProxy(t, cfg, clock)
	check := tp.d.next(t)
	check.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := check.br.Peek(1); err != io.EOF {
		t.Fatalf("startup check connection: read %q, %v; want it closed unused", n, err)
	}
	return tp
}

func TestELB_PoolReusesMostRecentlyUsedFirst(t *testing.T) {
	for _, tc := range []struct{ order, want string }{{"mru", "second"}, {"lru", "first"}} {
		t.Run(tc.order, func(t *testing.T) {
			clock := newFakeClock()
			cfg := Defaults(ModeELB)
			cfg.Order = tc.order
			tp := newELB(t, cfg, clock)
			pl := tp.pools[0]
			first, err := pl.get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			second, _ := pl.get(context.Background())
			pl.put(first)
			clock.Advance(time.Second)
			pl.put(second)
			got, _ := pl.get(context.Background())
			want := map[string]*bconn{"first": first, "second": second}[tc.want]
			if got != want {
				t.Fatalf("got connection %d; want the %s one (%d)", got.id, tc.want, want.id)
			}
		})
	}
}

func TestELB_IdleTimeoutExpiresPooledConnections(t *testing.T) {
	clock := newFakeClock()
	cfg := Defaults(ModeELB)
	cfg.IdleTimeout = 5 * time.Second
	tp := newELB(t, cfg, clock)
	pl := tp.pools[0]
	c, _ := pl.get(context.Background())
	be := tp.d.next(t)
	pl.put(c)

	clock.Advance(4900 * time.Millisecond)
	if got, _ := pl.get(context.Background()); got != c {
		t.Fatal("a connection idle 4.9 s of 5 s was not reused")
	}
	pl.put(c)
	clock.Advance(5 * time.Second)
	got, _ := pl.get(context.Background())
	if got == c {
		t.Fatal("a connection idle past idle_timeout was reused")
	}
	be.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := be.br.Peek(1); err != io.EOF {
		t.Errorf("expired connection: %v; want it closed by the proxy", err)
	}
}

func TestELB_ClosedPooledConnectionGives504(t *testing.T) {
	tp := newELB(t, Defaults(ModeELB), nil)
	cl, be := tp.pooled(t)
	be.c.Close() // the backend's idle timeout

	if st := cl.get(t); st != 504 {
		t.Fatalf("status %d; want 504", st)
	}
	es := tp.log.waitEntries(t, 2)
	if e := es[1]; e.Outcome != Outcome504 || e.ReuseCount != 1 || e.Retries != 0 {
		t.Errorf("logged %+v; want 504 on the reused connection, no retry", e)
	}
	// The client connection survives a 504 (no body was pending).
	done := cl.getAsync()
	tp.d.next(t).serveOne(t)
	if st := status(t, done); st != 200 {
		t.Fatalf("next request: %d", st)
	}
}

func TestELB_RetryIdempotentRetriesGETButNotPOST(t *testing.T) {
	cfg := Defaults(ModeELB)
	cfg.RetryIdempotent = true
	tp := newELB(t, cfg, nil)
	cl, be := tp.pooled(t)
	be.c.Close()

	done := cl.getAsync()
	be = tp.d.next(t) // the retry's new connection
	be.serveOne(t)
	if st := status(t, done); st != 200 {
		t.Fatalf("GET: %d; want 200 after one retry", st)
	}
	if e := tp.log.waitEntries(t, 2)[1]; e.Retries != 1 || e.Outcome != OutcomeOK {
		t.Errorf("logged %+v; want ok after 1 retry", e)
	}

	tp.waitIdle(t)
	be.c.Close()
	cl.send(t, "POST /x HTTP/1.1\r\nHost: lb\r\nContent-Length: 0\r\n\r\n")
	if m, _, err := cl.response(t, "POST"); err != nil || m.status != 504 {
		t.Fatalf("POST: %v %v; want 504 without retry", m, err)
	}
	if e := tp.log.waitEntries(t, 3)[2]; e.Retries != 0 {
		t.Errorf("POST retried: %+v", e)
	}
}

func TestELB_MalformedResponseGives502(t *testing.T) {
	tp := newELB(t, Defaults(ModeELB), nil)
	done := tp.client(t).getAsync()
	be := tp.d.next(t)
	be.request(t)
	be.send(t, "HTTP/1.1 2xx whatever\r\n\r\n")
	if st := status(t, done); st != 502 {
		t.Fatalf("status %d; want 502", st)
	}
	if e := tp.log.waitEntries(t, 1)[0]; e.Outcome != Outcome502 || !strings.Contains(e.Error, "malformed") {
		t.Errorf("logged %+v", e)
	}
}

func TestELB_HopByHop(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: lb\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 2\r\n\r\n"
	for _, mode := range []string{"correct", "buggy"} {
		t.Run(mode, func(t *testing.T) {
			cfg := Defaults(ModeELB)
			cfg.HopByHop = mode
			tp := newELB(t, cfg, nil)
			cl := tp.client(t)
			cl.send(t, req)
			be := tp.d.next(t)
			m := be.serveOne(t)
			if _, _, err := cl.response(t, "GET"); err != nil {
				t.Fatal(err)
			}
			_, conn := m.hdr.get("Connection")
			_, hop := m.hdr.get("X-Hop")
			_, ka := m.hdr.get("Keep-Alive")
			_, end := m.hdr.get("X-End")
			if !end {
				t.Error("end-to-end field X-End not forwarded")
			}
			forwarded := mode == "buggy"
			if conn != forwarded || hop != forwarded || ka != forwarded {
				t.Errorf("Connection %v, X-Hop %v, Keep-Alive %v forwarded; want %v each", conn, hop, ka, forwarded)
			}
			if forwarded && !m.hdr.hasToken("Connection", "keep-alive") {
				t.Error("Connection: keep-alive not forwarded as sent")
			}
		})
	}
}

// An early response (before the chunked body is read) without
// Connection: close, and a backend that closes: the buggy LB reuses the
// connection and answers the next request 504; the correct one does not.
func TestELB_EarlyResponseWithoutConnectionClose(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want int
	}{{"correct", 200}, {"buggy", 504}} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := Defaults(ModeELB)
			cfg.HopByHop = tc.mode
			tp := newELB(t, cfg, nil)
			cl := tp.client(t)
			cl.send(t, "POST /up HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n")
			be := tp.d.next(t)
			be.request(t)
			be.send(t, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n") // akka: no Connection: close
			if m, _, err := cl.response(t, "POST"); err != nil || m.status != 401 {
				t.Fatalf("early response: %v %v", m, err)
			}
			be.c.Close()
			cl.send(t, "5\r\nhello\r\n0\r\n\r\n") // the rest of the body
			e := tp.log.waitEntries(t, 1)[0]
			if !e.Early {
				t.Fatalf("logged %+v; want early_response", e)
			}

			done := cl.getAsync()
			if tc.want == 200 {
				tp.d.next(t).serveOne(t)
			}
			if st := status(t, done); st != tc.want {
				t.Fatalf("next request: %d; want %d", st, tc.want)
			}
		})
	}
}

func TestELB_AimHoldsTheRequestUntilTheBackendIdleTimeout(t *testing.T) {
	clock := newFakeClock()
	cfg := Defaults(ModeELB)
	cfg.Aim = &Aim{BackendIdle: time.Second, Offset: 5 * time.Millisecond}
	tp := newELB(t, cfg, clock)
	cl, be := tp.pooled(t) // a new connection is not aimed
	heldUntil(t, clock, be, cl.getAsync(), 1005*time.Millisecond)
	es := tp.log.waitEntries(t, 2)
	if es[0].Aimed {
		t.Error("the first request (new connection) was aimed")
	}
	if e := es[1]; !e.Aimed || e.Held != 1005 || e.ConnIdle != 1005 || e.ReuseCount != 1 {
		t.Errorf("logged %+v; want aimed, held 1005 ms, conn_idle 1005 ms", e)
	}
}

// With check_before_reuse, an aimed request is checked at the aim point,
// when it would go out, not before the hold: a connection the backend
// closed during the hold is dropped and the request takes a new one.
func TestELB_AimChecksBeforeReuseAtTheAimPoint(t *testing.T) {
	clock := newFakeClock()
	cfg := Defaults(ModeELB)
	cfg.CheckBeforeReuse = true
	cfg.Aim = &Aim{BackendIdle: time.Second, Offset: 5 * time.Millisecond}
	tp := newELB(t, cfg, clock)
	cl, be := tp.pooled(t)

	done := cl.getAsync()
	clock.waitAsked(t, 1005*time.Millisecond) // held, after get's check passed
	be.c.Close()                              // the backend's idle timeout, during the hold
	clock.Advance(1005 * time.Millisecond)
	tp.d.next(t).serveOne(t) // the request goes out on a new connection
	if st := status(t, done); st != 200 {
		t.Fatalf("status %d; want 200 on a new connection", st)
	}
	e := tp.log.waitEntries(t, 2)[1]
	if e.Outcome != OutcomeOK || e.ReuseCount != 0 || e.Retries != 0 || !e.Aimed {
		t.Errorf("logged %+v; want ok on a new connection after the hold, no retry", e)
	}
	var dropped bool
	for _, ev := range tp.log.events(t) {
		dropped = dropped || ev.Event == "close" && strings.HasPrefix(ev.Reason, "check_before_reuse")
	}
	if !dropped {
		t.Errorf("no close event by check_before_reuse: %+v", tp.log.events(t))
	}
}

func TestELB_StartFailsWhenABackendIsUnreachable(t *testing.T) {
	d := newPipeDialer()
	d.refuse = true
	cfg := Defaults(ModeELB)
	p, err := New(&cfg, Options{Backends: []string{"198.18.0.2:80"}, Dial: d.Dial})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err == nil || err.Error() != "backend 198.18.0.2:80 is unreachable: connection refused" {
		t.Fatalf("Start: %v", err)
	}
}
