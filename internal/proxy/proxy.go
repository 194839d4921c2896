// Package proxy is faultbox's load-balancer emulation: an HTTP/1.1 proxy
// that opens, pools and reuses backend connections the way two devices of
// the field reports did, so their failures happen between real TCP stacks.
//
// Mode juniper-dx (Launchpad bug 134274): PoolSize connections per backend
// are opened at start, and re-opened when one is closed, without sending
// any request on them; client requests are multiplexed onto them, one at a
// time per connection. A connection the backend has closed or reset is
// used anyway (the DX does not notice) unless CheckBeforeReuse; there is
// no retry; a failed exchange closes the client's connection with no
// response (the "blank page"), or answers 502 when EmptyReply is false.
//
// Mode elb (the Classic ELB of the akka-http report): a keep-alive pool per
// backend, filled on demand, reused most-recently-used first, expired after
// IdleTimeout. A backend that closes or resets before responding gives 504,
// a malformed response 502; only GET/HEAD are retried, and only when
// RetryIdempotent. HopByHop "buggy" forwards the client's Connection
// header (keep-alive) to the backend and keeps reusing a connection after
// an early response (one that arrived before the request body was sent)
// that lacked Connection: close. Aim sends every request on a reused
// connection at last use + BackendIdle + Offset, holding it until then, to
// hit the backend's idle-timeout race on purpose; it takes precedence over
// the LB's own IdleTimeout for the connection it holds.
//
// Each request is logged as one JSON line (see Entry), and pool events
// (opens, closes) as lines with an "event" key (see PoolEvent).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options are the run's settings that are not in the profile.
type Options struct {
	Backends []string  // HOST:PORT each
	Log      io.Writer // access log (JSON lines); nil for none
	Seed     uint64    // for balance: random
	// Dial opens a backend connection; nil dials TCP. Tests pass fakes.
	Dial  func(ctx context.Context, addr string) (net.Conn, error)
	Clock Clock // nil: real time
}

// Proxy is one running load balancer.
type Proxy struct {
	cfg   Config
	dial  func(ctx context.Context, addr string) (net.Conn, error)
	clock Clock
	log   *logger
	pools []*pool
	ids   atomic.Uint64 // backend connection ids
	rr    atomic.Uint64
	rndMu sync.Mutex
	rnd   *rand.Rand

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	lns     []net.Listener
	clients map[net.Conn]struct{}
}

// New checks the backends and makes a proxy; Start opens its pools.
func New(cfg *Config, opt Options) (*Proxy, error) {
	if len(opt.Backends) == 0 {
		return nil, errors.New("no backend: give at least one HOST:PORT")
	}
	for _, b := range opt.Backends {
		if err := checkAddr("backend", b); err != nil {
			return nil, err
		}
	}
	p := &Proxy{cfg: *cfg, clock: opt.Clock, dial: opt.Dial, clients: map[net.Conn]struct{}{}}
	if p.clock == nil {
		p.clock = realClock{}
	}
	if p.dial == nil {
		var d net.Dialer
		p.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if opt.Log != nil {
		p.log = &logger{w: opt.Log}
	}
	p.rnd = rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15))
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for _, b := range opt.Backends {
		p.pools = append(p.pools, newPool(b, p))
	}
	return p, nil
}

// Start opens the juniper-dx pools (every connection must open), or checks
// each elb backend with one connection, then starts the pool keepers.
func (p *Proxy) Start() error {
	for _, pl := range p.pools {
		switch p.cfg.Mode {
		case ModeJuniperDX:
			if err := pl.fill(p.ctx); err != nil {
				p.Close()
				return fmt.Errorf("backend %s: %v (the juniper-dx pool of %d connections could not open)", pl.addr, unwrapOp(err), p.cfg.PoolSize)
			}
		default:
			c, err := pl.dial(p.ctx)
			if err != nil {
				p.Close()
				return fmt.Errorf("backend %s is unreachable: %v", pl.addr, unwrapOp(err))
			}
			pl.mu.Lock()
			pl.total++
			pl.mu.Unlock()
			pl.discard(c, "startup check")
		}
	}
	for _, pl := range p.pools {
		keeper := pl.reap
		if p.cfg.Mode == ModeJuniperDX {
			keeper = pl.warm
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			keeper(p.ctx)
		}()
	}
	return nil
}

// Serve accepts clients on ln until Close.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return errPoolClosed
	}
	p.lns = append(p.lns, ln)
	p.mu.Unlock()
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return nil
			}
			if isTimeout(err) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				sleep(p.ctx, realClock{}, backoff) // out of descriptors: wait, as net/http does
				backoff = min(2*backoff, time.Second)
				continue
			}
			return err
		}
		backoff = 5 * time.Millisecond
		if !p.track(c) {
			c.Close()
			return nil
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.serveClient(c)
		}()
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.clients[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.clients, c)
	p.mu.Unlock()
	c.Close()
}

// Close stops listening, closes every client and backend connection and
// waits for the proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	for _, ln := range p.lns {
		ln.Close()
	}
	for c := range p.clients {
		c.Close()
	}
	p.mu.Unlock()
	for _, pl := range p.pools {
		pl.close()
	}
	p.wg.Wait()
	return nil
}

// pick chooses the backend for one request.
func (p *Proxy) pick() *pool {
	if p.cfg.Balance == "random" {
		p.rndMu.Lock()
		defer p.rndMu.Unlock()
		return p.pools[p.rnd.IntN(len(p.pools))]
	}
	return p.pools[(p.rr.Add(1)-1)%uint64(len(p.pools))]
}

// Listen opens the proxy's listening socket, with errors that say what is
// wrong: a malformed address, a port in use, an address not on this host.
func Listen(addr string) (net.Listener, error) {
	if err := checkAddr("listen address", addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("listen %s: the port is already in use", addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("listen %s: that address is not on this host (or this network namespace)", addr)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("listen %s: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)", addr)
	}
	return nil, fmt.Errorf("listen %s: %v", addr, unwrapOp(err))
}

// checkAddr accepts HOST:PORT with a numeric port.
func checkAddr(what, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want HOST:PORT, e.g. 198.18.0.2:80 or [2001:db8::2]:80", what, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s %q: port %q is not a number from 0 to 65535", what, addr, port)
	}
	return nil
}

// unwrapOp drops net.OpError's "dial tcp 1.2.3.4:80:" prefix, which the
// messages above already say.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
