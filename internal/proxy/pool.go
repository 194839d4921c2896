package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bconn is one connection from the proxy to a backend.
type bconn struct {
	id      uint64
	pool    *pool      // the backend's pool it belongs to
	raw     net.Conn   // as dialed, for the non-blocking peek
	conn    *timedConn // raw with per-read/write deadlines during an exchange
	br      *bufio.Reader
	opened  time.Time
	lastUse time.Time // end of the last exchange, or when it was opened
	uses    int       // exchanges it carried
}

// pool holds the idle connections to one backend. A connection taken with
// get is the caller's alone (one request at a time) until put or discard.
type pool struct {
	addr string
	px   *Proxy

	mu      sync.Mutex
	idle    []*bconn            // oldest lastUse first: put appends
	busy    map[*bconn]struct{} // taken by get: closed by close() so no exchange outlives the proxy
	total   int                 // open connections, idle or taken
	changed chan struct{}       // closed (and replaced) whenever idle changes
	closed  bool
	wake    chan struct{} // one pending "top the pool up" for the warmer
}

func newPool(addr string, px *Proxy) *pool {
	return &pool{addr: addr, px: px, busy: map[*bconn]struct{}{}, changed: make(chan struct{}), wake: make(chan struct{}, 1)}
}

var errPoolClosed = errors.New("proxy is shutting down")

// dial opens a new connection to the backend. It sends nothing.
func (p *pool) dial(ctx context.Context) (*bconn, error) {
	cfg := &p.px.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	nc, err := p.px.dial(ctx, p.addr)
	if err != nil {
		return nil, err
	}
	now := p.px.clock.Now()
	tc := &timedConn{Conn: nc, rd: cfg.ResponseTimeout, wd: cfg.ResponseTimeout}
	c := &bconn{id: p.px.ids.Add(1), pool: p, raw: nc, conn: tc, br: bufio.NewReaderSize(tc, 32<<10), opened: now, lastUse: now}
	p.px.log.write(PoolEvent{Time: stamp(now), Event: "open", Backend: p.addr, BackendConn: c.id, Local: nc.LocalAddr().String()})
	return c, nil
}

// fill opens connections until the pool holds PoolSize (juniper-dx). The
// new connections are idle from the start: no request is sent on them.
func (p *pool) fill(ctx context.Context) error {
	for i := 0; i < p.px.cfg.PoolSize; i++ {
		p.mu.Lock()
		short := !p.closed && p.total < p.px.cfg.PoolSize
		if short {
			p.total++ // reserve the slot while dialing
		}
		p.mu.Unlock()
		if !short {
			return nil
		}
		c, err := p.dial(ctx)
		p.mu.Lock()
		if err != nil || p.closed {
			p.total--
		} else {
			p.idle = append(p.idle, c)
			p.signalLocked()
		}
		closed := p.closed
		p.mu.Unlock()
		if err != nil {
			p.px.log.write(PoolEvent{Time: stamp(p.px.clock.Now()), Event: "open_failed", Backend: p.addr, Reason: err.Error()})
			return err
		}
		if closed {
			c.raw.Close()
			return errPoolClosed
		}
	}
	return nil
}

// warm tops the pool up every WarmInterval and right after a connection
// is discarded, until ctx ends (juniper-dx).
func (p *pool) warm(ctx context.Context) {
	for {
		var tick <-chan time.Time
		stop := func() {}
		if d := p.px.cfg.WarmInterval; d > 0 {
			tick, stop = p.px.clock.After(d)
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-tick:
		case <-p.wake:
			stop()
		}
		p.fill(ctx) // a failure is logged; the next round retries
	}
}

// reap closes connections idle past IdleTimeout, checking every eighth of
// it (10 ms to 1 s), until ctx ends (elb). get also skips expired ones.
func (p *pool) reap(ctx context.Context) {
	period := min(max(p.px.cfg.IdleTimeout/8, 10*time.Millisecond), time.Second)
	for sleep(ctx, p.px.clock, period) {
		p.mu.Lock()
		expired := p.expireLocked(p.px.clock.Now())
		p.mu.Unlock()
		p.closeAll(expired, "idle_timeout")
	}
}

// expireLocked removes the connections idle for IdleTimeout or longer.
func (p *pool) expireLocked(now time.Time) []*bconn {
	if p.px.cfg.IdleTimeout <= 0 {
		return nil
	}
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].lastUse) >= p.px.cfg.IdleTimeout {
		n++
	}
	expired := append([]*bconn(nil), p.idle[:n]...)
	p.idle = append(p.idle[:0], p.idle[n:]...)
	p.total -= n
	return expired
}

// get returns a connection for one exchange: an idle one chosen by Order
// (juniper-dx: only one idle for MinIdle; it waits up to QueueTimeout for
// one), or a new one (elb, when none is idle).
func (p *pool) get(ctx context.Context) (*bconn, error) {
	cfg := &p.px.cfg
	clock := p.px.clock
	deadline := clock.Now().Add(cfg.QueueTimeout)
	for i := 0; i < 1<<20; i++ { // each round takes a connection or waits
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		now := clock.Now()
		expired := p.expireLocked(now)
		c, next := p.pickLocked(now)
		changed := p.changed
		p.mu.Unlock()
		p.closeAll(expired, "idle_timeout")
		if c != nil {
			if cfg.CheckBeforeReuse {
				if ok, why := alive(c); !ok {
					p.discard(c, "check_before_reuse: "+why)
					continue
				}
			}
			return c, nil
		}
		if cfg.Mode == ModeELB {
			c, err := p.dial(ctx)
			if err != nil {
				return nil, fmt.Errorf("connect: %w", err)
			}
			p.mu.Lock()
			p.total++
			p.busy[c] = struct{}{}
			closed := p.closed
			p.mu.Unlock()
			if closed {
				p.discard(c, "shutdown")
				return nil, errPoolClosed
			}
			return c, nil
		}
		wait := deadline.Sub(now)
		if wait <= 0 {
			return nil, fmt.Errorf("no pooled connection became usable within queue_timeout %v", cfg.QueueTimeout)
		}
		if !next.IsZero() {
			wait = min(wait, next.Sub(now))
		}
		tick, stop := clock.After(wait)
		select {
		case <-tick:
		case <-changed:
		case <-ctx.Done():
			stop()
			return nil, errPoolClosed
		}
		stop()
	}
	return nil, errors.New("pool: too many rounds")
}

// pickLocked takes the idle connection Order prefers among those idle for
// MinIdle; next is when the first of the others becomes usable.
func (p *pool) pickLocked(now time.Time) (c *bconn, next time.Time) {
	k := 0 // idle is oldest first, so the usable ones are a prefix
	for k < len(p.idle) && now.Sub(p.idle[k].lastUse) >= p.px.cfg.MinIdle {
		k++
	}
	if k < len(p.idle) {
		next = p.idle[k].lastUse.Add(p.px.cfg.MinIdle)
	}
	if k == 0 {
		return nil, next
	}
	i := 0 // lru
	if p.px.cfg.Order == "mru" {
		i = k - 1
	}
	c = p.idle[i]
	p.idle = append(p.idle[:i], p.idle[i+1:]...)
	p.busy[c] = struct{}{}
	p.signalLocked()
	return c, next
}

// put returns c to the pool after a complete exchange.
func (p *pool) put(c *bconn) {
	c.uses++
	c.lastUse = p.px.clock.Now()
	p.mu.Lock()
	delete(p.busy, c)
	if p.closed {
		p.total--
		p.mu.Unlock()
		p.closeAll([]*bconn{c}, "shutdown")
		return
	}
	p.idle = append(p.idle, c)
	var extra []*bconn
	if m := p.px.cfg.MaxIdle; m > 0 && len(p.idle) > m {
		extra = append(extra, p.idle[0])
		p.idle = p.idle[1:]
		p.total--
	}
	p.signalLocked()
	p.mu.Unlock()
	p.closeAll(extra, "max_idle")
}

// discard closes c, taken with get, and has the warmer replace it.
func (p *pool) discard(c *bconn, reason string) {
	p.mu.Lock()
	delete(p.busy, c)
	p.total--
	p.signalLocked()
	p.mu.Unlock()
	p.closeAll([]*bconn{c}, reason)
	select {
	case p.wake <- struct{}{}:
	default: // a top-up is already pending
	}
}

func (p *pool) closeAll(cs []*bconn, reason string) {
	for _, c := range cs {
		c.raw.Close()
		p.px.log.write(PoolEvent{Time: stamp(p.px.clock.Now()), Event: "close", Backend: p.addr, BackendConn: c.id, Reason: reason})
	}
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.total -= len(idle)
	for c := range p.busy {
		c.raw.Close() // its exchange fails now and discards it
	}
	p.signalLocked()
	p.mu.Unlock()
	p.closeAll(idle, "shutdown")
}

func (p *pool) signalLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// idleCount is for tests.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// alive peeks at an idle connection without blocking: EOF (the backend
// closed it), a reset, or unsolicited bytes (e.g. a 408) all mean it
// must not carry a request.
func alive(c *bconn) (bool, string) {
	if c.br.Buffered() > 0 {
		return false, "unsolicited data from the backend"
	}
	if sc, ok := c.raw.(syscall.Conn); ok {
		rc, err := sc.SyscallConn()
		if err != nil {
			return false, err.Error()
		}
		var n int
		var rerr error
		err = rc.Read(func(fd uintptr) bool {
			var b [1]byte
			n, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return true // never wait: this is a poll
		})
		switch {
		case err != nil:
			return false, err.Error()
		case rerr == unix.EAGAIN:
			return true, ""
		case rerr != nil:
			return false, rerr.Error()
		case n == 0:
			return false, "closed by the backend (EOF)"
		}
		return false, "unsolicited data from the backend"
	}
	// Not a socket (tests): a read with a very short deadline.
	prev := c.conn.rd
	c.conn.rd = 0 // the deadline below must hold for this one read
	defer func() { c.conn.rd = prev }()
	c.raw.SetReadDeadline(time.Now().Add(time.Millisecond))
	defer c.raw.SetReadDeadline(time.Time{})
	_, err := c.br.Peek(1)
	switch {
	case isTimeout(err):
		return true, ""
	case err == nil:
		return false, "unsolicited data from the backend"
	}
	return false, err.Error()
}

// timedConn refreshes a deadline before every read and write, so a peer
// may stay silent at most rd (wd) at a time; 0 leaves deadlines alone.
type timedConn struct {
	net.Conn
	rd, wd time.Duration
}

func (c *timedConn) Read(b []byte) (int, error) {
	if c.rd > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.rd))
	}
	return c.Conn.Read(b)
}

func (c *timedConn) Write(b []byte) (int, error) {
	if c.wd > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.wd))
	}
	return c.Conn.Write(b)
}
