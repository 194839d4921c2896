package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the reference server. Create it with New, open its listeners
// with Listen, and run it with Serve (or do all three with Run).
type Server struct {
	cfg    Config
	log    *Logger
	nextID atomic.Uint64

	mu        sync.Mutex
	listeners []net.Listener
}

// New checks cfg and returns a server logging to logw.
func New(cfg Config, logw io.Writer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: NewLogger(logw, time.Now())}, nil
}

// Run listens and serves until ctx is done, then closes the listeners and
// returns nil. Open connections are left to the process's exit.
func Run(ctx context.Context, cfg Config, logw io.Writer) error {
	s, err := New(cfg, logw)
	if err != nil {
		return err
	}
	if err := s.Listen(ctx); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// listenNetwork picks "tcp4", "tcp6" or "tcp" for addr among all the
// addresses configured. An IPv6 or empty wildcard is dual stack ("tcp")
// unless an IPv4 address with the same port is also configured: then it is
// IPv6 only, so that both can be bound.
func listenNetwork(addr string, all []string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp"
	}
	ip := net.ParseIP(host)
	switch {
	case ip != nil && ip.To4() != nil:
		return "tcp4"
	case ip != nil && !ip.IsUnspecified():
		return "tcp6"
	}
	for _, other := range all {
		h, p, err := net.SplitHostPort(other)
		if err != nil || p != port {
			continue
		}
		if oip := net.ParseIP(h); oip != nil && oip.To4() != nil {
			return "tcp6"
		}
	}
	return "tcp"
}

// Listen opens every configured listener, with TCP_DEFER_ACCEPT if asked,
// and logs a listen event with the defer value the kernel reads back. Call
// it inside the network namespace the server belongs to.
func (s *Server) Listen(ctx context.Context) error {
	lc := net.ListenConfig{KeepAlive: -1} // no TCP keep-alive probes: they would change the scenarios
	if s.cfg.DeferAccept > 0 {
		lc.Control = deferAcceptControl(s.cfg.DeferAccept)
	}
	for _, addr := range s.cfg.Listen {
		l, err := lc.Listen(ctx, listenNetwork(addr, s.cfg.Listen), addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("--listen %s: %w", addr, err)
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, l)
		s.mu.Unlock()
		ev := Event{Event: EvListen, Addr: l.Addr().String(), Defer: &s.cfg.DeferAccept}
		if v, err := deferAcceptValue(l); err == nil {
			ev.DeferEffective = &v
		} else {
			ev.Err = err.Error()
		}
		s.log.Log(ev)
	}
	return nil
}

// Addrs returns the bound addresses (useful with port 0).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a []net.Addr
	for _, l := range s.listeners {
		a = append(a, l.Addr())
	}
	return a
}

// DeferAcceptEffective returns the TCP_DEFER_ACCEPT seconds the kernel
// reports for listener i.
func (s *Server) DeferAcceptEffective(i int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.listeners) {
		return 0, fmt.Errorf("no listener %d", i)
	}
	return deferAcceptValue(s.listeners[i])
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		l.Close()
	}
	s.listeners = nil
}

// Serve accepts on every listener, one goroutine per connection, until
// ctx is done; then it closes the listeners, logs shutdown and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ls := append([]net.Listener(nil), s.listeners...)
	s.mu.Unlock()
	if len(ls) == 0 {
		return errors.New("serve: no listener (call Listen first)")
	}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.acceptLoop(ctx, l)
		}()
	}
	<-ctx.Done()
	s.closeListeners()
	wg.Wait()
	s.log.Log(Event{Event: EvShutdown, Reason: context.Cause(ctx).Error()})
	return nil
}

func (s *Server) acceptLoop(ctx context.Context, l net.Listener) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: say so and retry, slowing down up to 1 s.
			s.log.Log(Event{Event: EvError, Addr: l.Addr().String(), Err: "accept: " + err.Error()})
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		go s.ServeConn(c)
	}
}

// ServeConn serves one accepted connection until it is closed. Socket
// options (SO_SNDTIMEO, TCP_USER_TIMEOUT) are applied to TCP connections;
// other connections (socketpairs in tests) are served without them.
func (s *Server) ServeConn(nc net.Conn) {
	c := newConn(s, nc)
	c.serve()
}
