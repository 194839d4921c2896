package proxy

import (
	"testing"
	"time"
)

func dxConfig(poolSize int) Config {
	c := Defaults(ModeJuniperDX)
	c.PoolSize = poolSize
	return c
}

func TestJuniperDX_PoolOpensWithoutSendingARequest(t *testing.T) {
	tp := newTestProxy(t, dxConfig(3), nil)
	if n := tp.d.count(); n != 3 {
		t.Fatalf("Start dialed %d connections; want the pool of 3", n)
	}
	for i := 0; i < 3; i++ {
		tp.d.next(t).silent(t, 100*time.Millisecond)
	}
	opens := 0
	for _, ev := range tp.log.events(t) {
		if ev.Event == "open" {
			opens++
		}
	}
	if opens != 3 {
		t.Errorf("%d open events logged; want 3", opens)
	}
}

func TestJuniperDX_ClosedPooledConnectionGivesEmptyReply(t *testing.T) {
	tp := newTestProxy(t, dxConfig(1), nil)
	tp.d.next(t).c.Close() // the server gave up on the idle connection

	if st := tp.client(t).get(t); st != 0 {
		t.Fatalf("client got status %d; want the connection closed with no response", st)
	}
	e := tp.log.waitEntries(t, 1)[0]
	if e.Outcome != OutcomeEmptyReply || e.Status != 0 || e.BackendConn != 1 {
		t.Errorf("logged %+v; want outcome empty_reply on backend_conn 1", e)
	}
	// The pool replaces the connection, again without a request.
	tp.d.next(t).silent(t, 100*time.Millisecond)
}

func TestJuniperDX_EmptyReplyOff_Gives502(t *testing.T) {
	cfg := dxConfig(1)
	cfg.EmptyReply = false
	tp := newTestProxy(t, cfg, nil)
	tp.d.next(t).c.Close()
	if st := tp.client(t).get(t); st != 502 {
		t.Fatalf("status %d; want 502", st)
	}
	if e := tp.log.waitEntries(t, 1)[0]; e.Outcome != Outcome502 {
		t.Errorf("outcome %q; want 502", e.Outcome)
	}
}

func TestJuniperDX_CheckBeforeReuseReconnects(t *testing.T) {
	cfg := dxConfig(1)
	cfg.CheckBeforeReuse = true
	tp := newTestProxy(t, cfg, nil)
	tp.d.next(t).c.Close()

	done := tp.client(t).getAsync()
	fresh := tp.d.next(t) // the replacement, opened after the check failed
	fresh.serveOne(t)
	if st := status(t, done); st != 200 {
		t.Fatalf("status %d; want 200 through the replacement connection", st)
	}
	if e := tp.log.waitEntries(t, 1)[0]; e.Outcome != OutcomeOK || e.BackendConn != 2 || e.ReuseCount != 0 {
		t.Errorf("logged %+v; want ok on backend_conn 2, first use", e)
	}
}

func TestJuniperDX_MultiplexesClientsOntoThePool(t *testing.T) {
	tp := newTestProxy(t, dxConfig(1), nil)
	be := tp.d.next(t)
	for i := 0; i < 3; i++ { // three clients, one pooled connection
		done := tp.client(t).getAsync()
		be.serveOne(t)
		if st := status(t, done); st != 200 {
			t.Fatalf("client %d: status %d", i, st)
		}
		// The line is written after the response has gone out: wait for
		// it, so the next request's line comes after it.
		tp.log.waitEntries(t, i+1)
	}
	es := tp.log.waitEntries(t, 3)
	for i, e := range es {
		if e.BackendConn != 1 || e.ReuseCount != i {
			t.Errorf("request %d: backend_conn %d reuse_count %d; want 1 and %d", i, e.BackendConn, e.ReuseCount, i)
		}
	}
	if n := tp.d.count(); n != 1 {
		t.Errorf("%d dials; want the one pooled connection", n)
	}
}

func TestJuniperDX_MinIdleHoldsRequestsOnFreshConnections(t *testing.T) {
	clock := newFakeClock()
	cfg := dxConfig(1)
	cfg.MinIdle = 10 * time.Second
	cfg.WarmInterval = 0 // keep the fake clock's timers to the one under test
	tp := newTestProxy(t, cfg, clock)
	be := tp.d.next(t)

	heldUntil(t, clock, be, tp.client(t).getAsync(), 10*time.Second)
	if e := tp.log.waitEntries(t, 1)[0]; e.ConnIdle != 10000 || e.ConnAge != 10000 {
		t.Errorf("conn_idle %v conn_age %v; want 10000 ms each", e.ConnIdle, e.ConnAge)
	}
}

func TestJuniperDX_StartFailsWhenThePoolCannotOpen(t *testing.T) {
	d := newPipeDialer()
	d.refuse = true
	cfg := dxConfig(2)
	p, err := New(&cfg, Options{Backends: []string{"198.18.0.2:80"}, Dial: d.Dial})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start()
	want := "backend 198.18.0.2:80: connection refused (the juniper-dx pool of 2 connections could not open)"
	if err == nil || err.Error() != want {
		t.Fatalf("Start: %v; want %q", err, want)
	}
}
