package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// Network tests: each runs the server and its clients on the loopback of a
// throwaway namespace (127.0.0.1 and ::1 there, never the host's).

func labNetns(t *testing.T) string { return testenv.LoopbackNetns(t, "serve") }

// startIn listens inside ns and serves until the test ends.
func startIn(t *testing.T, ns string, cfg Config) (*Server, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	s, err := New(cfg, lb)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := testenv.InNetns(ns, func() error { return s.Listen(ctx) }); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return s, lb
}

func dialIn(t *testing.T, ns string, addr net.Addr) net.Conn {
	t.Helper()
	var c net.Conn
	err := testenv.InNetns(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr.String(), 2*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second)) // bounds every test
	return c
}

func TestServe_DeferAcceptReadBack_RoundsUpToSynAckSchedule_Linux(t *testing.T) {
	ns := labNetns(t)
	// Linux stores TCP_DEFER_ACCEPT as a count of SYN-ACK retransmits
	// (timeouts 1, 2, 4, 8, 16 s ...) and reads back their sum: a value is
	// rounded up to 1, 3, 7, 15, 31 s. Measured on this lab's kernel (6.18).
	for _, tc := range []struct{ set, want int }{{0, 0}, {1, 1}, {5, 7}, {30, 31}} {
		cfg := DefaultConfig()
		cfg.Listen, cfg.DeferAccept = []string{"127.0.0.1:0", "[::1]:0"}, tc.set
		s, lb := startIn(t, ns, cfg)
		for i := range 2 {
			got, err := s.DeferAcceptEffective(i)
			if err != nil || got != tc.want {
				t.Errorf("defer-accept %d on %s: kernel reads back %d (%v), want %d", tc.set, s.Addrs()[i], got, err, tc.want)
			}
		}
		for _, e := range lb.Events(t) {
			if e.Event != EvListen {
				continue
			}
			if e.Defer == nil || *e.Defer != tc.set || e.DeferEffective == nil || *e.DeferEffective != tc.want {
				t.Errorf("listen event %+v, want defer %d, defer_effective %d", e, tc.set, tc.want)
			}
		}
	}
}

func TestServe_DeferAccept_IdleClientAcceptedOnlyAfterThePeriod_Linux(t *testing.T) {
	ns := labNetns(t)
	cfg := DefaultConfig()
	cfg.Listen, cfg.DeferAccept, cfg.ReadTimeout = []string{"127.0.0.1:0"}, 1, 500*time.Millisecond
	s, lb := startIn(t, ns, cfg)

	// A pooled connection with no request (the Juniper DX pattern): the
	// kernel holds it until the defer period ends, then the server's read
	// timeout closes it, and the client reads EOF: an empty reply.
	start := time.Now()
	idle := dialIn(t, ns, s.Addrs()[0])
	// A client that sends at once is accepted at once.
	busy := dialIn(t, ns, s.Addrs()[0])
	io.WriteString(busy, "GET / HTTP/1.1\r\n\r\n")
	if r, err := readResponse(bufio.NewReader(busy), false); err != nil || r.Status != 200 {
		t.Fatalf("client with data: %+v, %v", r, err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("client with data answered after %v, want at once", el)
	}
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle client: %v, want EOF after defer + read timeout", err)
	}
	eof := time.Since(start)
	var accepts []Event
	for _, e := range lb.Events(t) {
		if e.Event == EvAccept {
			accepts = append(accepts, e)
		}
	}
	if len(accepts) != 2 {
		t.Fatalf("%d accepts, want 2:\n%s", len(accepts), lb)
	}
	// The idle one is the second accept, about 1 s after connecting.
	idleAt := accepts[1].T - accepts[0].T
	t.Logf("busy accepted, idle accepted %.3fs later (wait %v s, rtt %v s); idle client EOF after %v",
		idleAt, deref(accepts[1].Wait), deref(accepts[1].RTT), eof)
	if idleAt < 0.8 || idleAt > 3 {
		t.Errorf("idle connection accepted %.3fs after the busy one, want about the 1s defer period", idleAt)
	}
	if eof < 1300*time.Millisecond || eof > 4*time.Second {
		t.Errorf("idle client EOF after %v, want about defer 1s + read timeout 0.5s", eof)
	}
}

func deref(p *float64) string {
	if p == nil {
		return "?"
	}
	return fmt.Sprintf("%.3f", *p)
}

func TestServe_KeepAliveOverTCP_IPv4AndIPv6(t *testing.T) {
	ns := labNetns(t)
	cfg := DefaultConfig()
	cfg.Listen, cfg.KeepAliveTimeout = []string{"127.0.0.1:0", "[::1]:0"}, 400*time.Millisecond
	s, lb := startIn(t, ns, cfg)
	for _, addr := range s.Addrs() {
		c := dialIn(t, ns, addr)
		br := bufio.NewReader(c)
		for i := 0; i < 2; i++ {
			if r := roundTrip(t, c, br, "GET /bytes/100000 HTTP/1.1\r\n\r\n"); r.Status != 200 || len(r.Body) != 100000 {
				t.Fatalf("%s request %d: %d, %d bytes", addr, i, r.Status, len(r.Body))
			}
		}
		from := time.Now()
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("%s: %v, want EOF after the keep-alive timeout", addr, err)
		}
		if idle := time.Since(from); idle < 350*time.Millisecond || idle > 800*time.Millisecond {
			t.Errorf("%s: EOF after %v idle, want about 400ms", addr, idle)
		}
		// Both requests were on one accepted connection.
		local := c.LocalAddr().String()
		var conn uint64
		var requests int
		for _, e := range lb.Events(t) {
			if e.Peer != local {
				continue
			}
			if conn == 0 {
				conn = e.Conn
			}
			if e.Conn != conn {
				t.Errorf("%s: events on conns %d and %d", addr, conn, e.Conn)
			}
			if e.Event == EvRequest {
				requests++
			}
		}
		if requests != 2 {
			t.Errorf("%s: %d requests logged for %s, want 2", addr, requests, local)
		}
	}
}

func TestServe_DualStackWildcard(t *testing.T) {
	ns := labNetns(t)
	cfg := DefaultConfig()
	cfg.Listen = []string{"[::]:0"}
	s, _ := startIn(t, ns, cfg)
	_, port, _ := net.SplitHostPort(s.Addrs()[0].String())
	for _, host := range []string{"127.0.0.1", "::1"} {
		addr, _ := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port))
		c := dialIn(t, ns, addr)
		if r := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\n\r\n"); r.Status != 200 {
			t.Errorf("%s: %d", addr, r.Status)
		}
	}
}

// postLargeBody is a client like curl without "Expect: 100-continue": it
// sends the whole body of a large POST, then reads the response. It reports
// how much was sent, the send error, and what reading gave afterwards.
func postLargeBody(t *testing.T, c net.Conn, size int) (sent int, sendErr error, resp string, readErr error) {
	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: server\r\nContent-Length: %d\r\n\r\n", size)
	// Head and the first MiB in one write: when the server answers, its
	// receive buffer holds body it has not read.
	chunk := make([]byte, 1<<20)
	first := append([]byte(head), chunk...)
	n, err := c.Write(first)
	sent = max(n-len(head), 0)
	for err == nil && sent < size {
		n, err = c.Write(chunk[:min(len(chunk), size-sent)])
		sent += n
	}
	if err != nil {
		sendErr = err
	}
	b, readErr := io.ReadAll(c)
	return sent, sendErr, string(b), readErr
}

func TestServe_LingeringClose_401LostToRSTWithoutIt_DeliveredWithIt_Linux(t *testing.T) {
	const body = 64 << 20 // far more than the socket buffers hold
	ns := labNetns(t)
	for _, linger := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.Listen, cfg.EarlyResponse, cfg.Linger = []string{"127.0.0.1:0"}, true, linger
		cfg.LingerTime = 10 * time.Second // drains until the client closes, even on a loaded machine
		s, lb := startIn(t, ns, cfg)
		c := dialIn(t, ns, s.Addrs()[0])
		sent, sendErr, resp, readErr := postLargeBody(t, c, body)
		c.Close()
		t.Logf("linger=%v: sent %d of %d body bytes, send error %v; then read %d bytes (%.20q), error %v",
			linger, sent, body, sendErr, len(resp), resp, readErr)
		if !linger {
			// The server closed with unread body in its receive buffer: the
			// kernel answered with RST, and the client's send fails with
			// ECONNRESET before it gets to read the 401.
			if !errors.Is(sendErr, syscall.ECONNRESET) || sent >= body {
				t.Errorf("abrupt close: send error %v after %d bytes, want ECONNRESET before the body was out", sendErr, sent)
			}
			lb.WaitFor(t, 2*time.Second, func(e Event) bool { return e.Event == EvClose && e.Reason == "early response" })
			continue
		}
		// Lingering close: shutdown(SHUT_WR), drain, close. The body goes
		// out in full, and the client then reads the 401 and a clean EOF.
		if sendErr != nil || sent != body || readErr != nil || !strings.HasPrefix(resp, "HTTP/1.1 401 ") {
			t.Errorf("lingering close: sent %d/%d (%v), read %.30q (%v); want the whole body sent and the 401 read",
				sent, body, sendErr, resp, readErr)
		}
		l := lb.WaitFor(t, 10*time.Second, named(EvLinger))
		if l.Bytes < body-(1<<20) || l.Reason != "peer closed" {
			t.Errorf("linger drained %d bytes (%s), want nearly the whole %d-byte body until the peer closed", l.Bytes, l.Reason, body)
		}
	}
}

func TestServe_AcceptedSocketGetsOptionsAndLogsItsQueueWait_Linux(t *testing.T) {
	ns := labNetns(t)
	cfg := DefaultConfig()
	cfg.SndTimeo, cfg.UserTimeout = 1500*time.Millisecond, 2500*time.Millisecond
	lb := &logBuf{}
	s, err := New(cfg, lb)
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	if err := testenv.InNetns(ns, func() (err error) { l, err = net.Listen("tcp", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dialIn(t, ns, l.Addr())
	time.Sleep(300 * time.Millisecond) // the connection waits in the accept queue
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeConn(sc)
	// Data resets TCP_INFO's last_data_recv: send only once accept is logged.
	a := lb.WaitFor(t, time.Second, named(EvAccept))
	if r := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\n\r\n"); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	var sndtimeo time.Duration
	var userTimeout int
	err = withFD(sc, func(fd int) error {
		tv, err := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO)
		if err != nil {
			return err
		}
		sndtimeo = time.Duration(tv.Nano())
		userTimeout, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		return err
	})
	if err != nil || sndtimeo != cfg.SndTimeo || userTimeout != 2500 {
		t.Errorf("accepted socket: SO_SNDTIMEO %v, TCP_USER_TIMEOUT %d ms (%v); want %v, 2500", sndtimeo, userTimeout, err, cfg.SndTimeo)
	}
	if a.Wait == nil || *a.Wait < 0.25 || *a.Wait > 2 || a.RTT == nil {
		t.Errorf("accept wait %s s (rtt %s s), want about the 0.3 s the connection sat in the queue", deref(a.Wait), deref(a.RTT))
	}
}

func TestServe_CancelClosesListenersAndLogsShutdown(t *testing.T) {
	ns := labNetns(t)
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	lb := &logBuf{}
	s, err := New(cfg, lb)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := testenv.InNetns(ns, func() error { return s.Listen(ctx) }); err != nil {
		t.Fatal(err)
	}
	addrs := s.Addrs()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	c := dialIn(t, ns, addrs[0]) // a connection open at shutdown is left alone
	lb.WaitFor(t, time.Second, named(EvAccept))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	lb.WaitFor(t, time.Second, func(e Event) bool { return e.Event == EvShutdown && e.Conn == 0 })
	for _, a := range addrs {
		err := testenv.InNetns(ns, func() error {
			c, err := net.DialTimeout("tcp", a.String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %s after shutdown: %v, want connection refused", a, err)
		}
	}
	if r := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\n\r\n"); r.Status != 200 {
		t.Errorf("connection open at shutdown: %d", r.Status)
	}
}
