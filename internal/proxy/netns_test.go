package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/testenv"
)

// Real-socket tests in a namespace of their own: the backend listens on
// 198.18.0.2 and the proxy on 198.18.0.3, both on the namespace's lo.

const (
	backendAddr = "198.18.0.2:8081"
	proxyAddr   = "198.18.0.3:8080"
)

func labNetns(t *testing.T) string {
	t.Helper()
	ns := testenv.LoopbackNetns(t, "proxy")
	testenv.IP(t, ns, "addr", "add", "198.18.0.2/32", "dev", "lo")
	testenv.IP(t, ns, "addr", "add", "198.18.0.3/32", "dev", "lo")
	return ns
}

func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := testenv.InNetns(ns, func() (err error) {
		ln, err = Listen(addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func dialIn(ns string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (c net.Conn, err error) {
		var d net.Dialer
		err = testenv.InNetns(ns, func() error {
			c, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
}

// idleBackend is an HTTP server that closes a connection idle for idle,
// also a new one that sent nothing (as a server's read timeout does).
func idleBackend(t *testing.T, ns string, idle time.Duration) {
	t.Helper()
	ln := listenIn(t, ns, backendAddr)
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		IdleTimeout:       idle,
		ReadHeaderTimeout: idle,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// runProxy starts a proxy inside ns and returns its log.
func runProxy(t *testing.T, ns string, cfg Config) *syncBuffer {
	t.Helper()
	log := &syncBuffer{}
	p, err := New(&cfg, Options{Backends: []string{backendAddr}, Log: log, Dial: dialIn(ns)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ln := listenIn(t, ns, proxyAddr)
	go p.Serve(ln)
	t.Cleanup(func() { p.Close() })
	return log
}

// netClient is a keep-alive HTTP client connection to the proxy.
type netClient struct {
	ns string
	c  net.Conn
	br *bufio.Reader
}

// get sends a GET, reconnecting first if the proxy closed the last
// connection, and returns the status (0: closed with no response).
func (nc *netClient) get(t *testing.T) int {
	t.Helper()
	if nc.c == nil {
		c, err := dialIn(nc.ns)(context.Background(), proxyAddr)
		if err != nil {
			t.Fatal(err)
		}
		nc.c, nc.br = c, bufio.NewReader(c)
		t.Cleanup(func() { c.Close() })
	}
	nc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc.c, "GET / HTTP/1.1\r\nHost: lb\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	m, _, err := readResponse(nc.br, 64<<10, "GET")
	if err == nil {
		err = copyBody(io.Discard, nc.br, m, true)
	}
	if err != nil || !m.keepAlive() {
		nc.c.Close()
		nc.c = nil
	}
	switch {
	case err != nil && isTimeout(err):
		t.Fatalf("no response: %v", err)
	case m == nil:
		return 0
	case err != nil:
		t.Fatalf("response body: %v", err)
	}
	return m.status
}

// tally counts the outcomes of the logged requests selected by keep.
func tally(es []Entry, keep func(Entry) bool) (n int, outcomes map[string]int) {
	outcomes = map[string]int{}
	for _, e := range es {
		if keep(e) {
			n++
			outcomes[e.Outcome]++
		}
	}
	return n, outcomes
}

func TestELB_Netns_AimedAtTheBackendIdleTimeoutGives504(t *testing.T) {
	ns := labNetns(t)
	idleBackend(t, ns, 200*time.Millisecond)
	for _, tc := range []struct {
		offset time.Duration
		min504 float64 // share of aimed requests
		max504 float64
	}{
		{50 * time.Millisecond, 0.9, 1}, // just after the backend closed
		{-100 * time.Millisecond, 0, 0}, // well before: the connection is alive
	} {
		t.Run(fmt.Sprint("offset", tc.offset), func(t *testing.T) {
			cfg := Defaults(ModeELB)
			cfg.Aim = &Aim{BackendIdle: 200 * time.Millisecond, Offset: tc.offset}
			log := runProxy(t, ns, cfg)
			cl := &netClient{ns: ns}
			for i := 0; i < 20; i++ {
				cl.get(t)
			}
			n, out := tally(log.waitEntries(t, 20), func(e Entry) bool { return e.Aimed })
			share := float64(out[Outcome504]) / float64(max(n, 1))
			t.Logf("offset %v: %d aimed requests, outcomes %v, 504 share %.2f", tc.offset, n, out, share)
			if n < 8 {
				t.Fatalf("only %d of 20 requests were aimed", n)
			}
			if share < tc.min504 || share > tc.max504 {
				t.Errorf("504 share %.2f; want %.2f..%.2f", share, tc.min504, tc.max504)
			}
		})
	}
}

func TestELB_Netns_IdleTimeoutVersusTheBackends(t *testing.T) {
	ns := labNetns(t)
	idleBackend(t, ns, 200*time.Millisecond)
	for _, tc := range []struct {
		lbIdle, gap time.Duration
		assertZero  bool
	}{
		{100 * time.Millisecond, 150 * time.Millisecond, true}, // the LB closes first: no race
		{60 * time.Second, 250 * time.Millisecond, false},      // the backend closes first: reported
	} {
		t.Run(fmt.Sprint("lb", tc.lbIdle), func(t *testing.T) {
			cfg := Defaults(ModeELB)
			cfg.IdleTimeout = tc.lbIdle
			log := runProxy(t, ns, cfg)
			cl := &netClient{ns: ns}
			for i := 0; i < 10; i++ {
				if i > 0 {
					time.Sleep(tc.gap)
				}
				cl.get(t)
			}
			n, out := tally(log.waitEntries(t, 10), func(Entry) bool { return true })
			t.Logf("LB idle_timeout %v, backend 200ms, a request every %v: %d requests, outcomes %v", tc.lbIdle, tc.gap, n, out)
			if tc.assertZero && out[OutcomeOK] != n {
				t.Errorf("failures with the LB's idle timeout below the backend's: %v", out)
			}
		})
	}
}

func TestJuniperDX_Netns_IdlePoolClosedByTheServer(t *testing.T) {
	ns := labNetns(t)
	idleBackend(t, ns, 200*time.Millisecond)
	for _, tc := range []struct {
		check bool
		want  string
	}{{false, OutcomeEmptyReply}, {true, OutcomeOK}} {
		t.Run(fmt.Sprint("check_before_reuse=", tc.check), func(t *testing.T) {
			cfg := Defaults(ModeJuniperDX)
			cfg.PoolSize = 2
			cfg.CheckBeforeReuse = tc.check
			log := runProxy(t, ns, cfg)
			cl := &netClient{ns: ns}
			for i := 0; i < 4; i++ {
				time.Sleep(400 * time.Millisecond) // light traffic: the server's timeout passes
				st := cl.get(t)
				if (st == 0) != (tc.want == OutcomeEmptyReply) {
					t.Errorf("request %d: status %d", i, st)
				}
			}
			n, out := tally(log.waitEntries(t, 4), func(Entry) bool { return true })
			t.Logf("%d requests, outcomes %v", n, out)
			if out[tc.want] != n {
				t.Errorf("outcomes %v; want all %s", out, tc.want)
			}
		})
	}
}

func TestListen_Errors(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"8080", `listen address "8080": want HOST:PORT`},
		{"198.18.0.3:http80", `port "http80" is not a number`},
	} {
		if _, err := Listen(tc.addr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen(%q): %v; want %q", tc.addr, err, tc.want)
		}
	}
	ns := labNetns(t)
	ln := listenIn(t, ns, proxyAddr)
	defer ln.Close()
	for _, tc := range []struct{ addr, want string }{
		{proxyAddr, "listen 198.18.0.3:8080: the port is already in use"},
		{"198.18.0.9:8080", "listen 198.18.0.9:8080: that address is not on this host"},
	} {
		err := testenv.InNetns(ns, func() error {
			l, err := Listen(tc.addr)
			if err == nil {
				l.Close()
			}
			return err
		})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Listen(%s): %v; want %q", tc.addr, err, tc.want)
		}
	}
}

func TestStart_Netns_BackendUnreachable(t *testing.T) {
	ns := labNetns(t)
	for _, mode := range []string{ModeELB, ModeJuniperDX} {
		cfg := Defaults(mode)
		p, err := New(&cfg, Options{Backends: []string{backendAddr}, Dial: dialIn(ns)})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Start()
		if err == nil || !strings.HasPrefix(err.Error(), "backend 198.18.0.2:8081") || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s: Start: %v; want the backend named, connection refused", mode, err)
		}
	}
}
