package proxy

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestExchange_BackendFailingMidBodyResetsTheClient(t *testing.T) {
	tp := newELB(t, Defaults(ModeELB), nil)
	cl, be := tp.forward(t, "GET /big HTTP/1.1\r\nHost: lb\r\n\r\n")
	be.send(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
	be.c.Close()
	m, body, err := cl.response(t, "GET")
	if m == nil || m.status != 200 || err != io.ErrUnexpectedEOF || body != "abc" {
		t.Fatalf("client got %v %q %v; want the 200 head, 3 bytes, then the connection cut", m, body, err)
	}
	if e := tp.log.waitEntries(t, 1)[0]; e.Outcome != OutcomeReset || e.Status != 200 {
		t.Errorf("logged %+v; want outcome reset, status 200", e)
	}
}

func TestExchange_HTTP10ClientGetsAChunkedResponseDecoded(t *testing.T) {
	tp := newELB(t, Defaults(ModeELB), nil)
	cl, be := tp.forward(t, "GET / HTTP/1.0\r\n\r\n")
	be.send(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(cl.br)
	if err != nil {
		t.Fatal(err)
	}
	s := string(all)
	if !strings.HasSuffix(s, "\r\n\r\nabc") || strings.Contains(s, "chunked") || !strings.Contains(s, "Connection: close\r\n") {
		t.Errorf("HTTP/1.0 client got %q; want the data alone, then close", s)
	}
	// The backend connection itself stays reusable.
	tp.waitIdle(t)
}

func TestExchange_MalformedRequestGets400(t *testing.T) {
	tp := newELB(t, Defaults(ModeELB), nil)
	cl := tp.client(t)
	cl.send(t, "HELLO\r\n\r\n")
	m, _, err := cl.response(t, "GET")
	if err != nil || m.status != 400 || m.keepAlive() {
		t.Fatalf("got %v %v; want 400 and close", m, err)
	}
	if e := tp.log.waitEntries(t, 1)[0]; e.Outcome != Outcome400 {
		t.Errorf("logged %+v", e)
	}
	if n := tp.d.count(); n != 1 {
		t.Errorf("%d dials; want only the startup check", n)
	}
}

func TestBalance_RoundRobinAndSeededRandom(t *testing.T) {
	backends := []string{"198.18.0.2:80", "198.18.0.2:81", "198.18.0.2:82"}
	picks := func(balance string, seed uint64) string {
		cfg := Defaults(ModeELB)
		cfg.Balance = balance
		p, err := New(&cfg, Options{Backends: backends, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var out []string
		for i := 0; i < 12; i++ {
			out = append(out, p.pick().addr[len("198.18.0.2:"):])
		}
		return strings.Join(out, ",")
	}
	if got := picks("round-robin", 1); got != "80,81,82,80,81,82,80,81,82,80,81,82" {
		t.Errorf("round-robin: %s", got)
	}
	a, b, c := picks("random", 7), picks("random", 7), picks("random", 8)
	if a != b {
		t.Errorf("random with one seed differs: %s vs %s", a, b)
	}
	if a == c {
		t.Errorf("random ignores the seed: %s for seeds 7 and 8", a)
	}
}

func TestClose_EndsExchangesWaitingForABackend(t *testing.T) {
	tp := newELB(t, Defaults(ModeELB), nil) // response_timeout 60 s
	tp.forward(t, "GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
	// ... and the backend never answers.
	done := make(chan struct{})
	go func() {
		tp.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waited for the backend's response")
	}
}
