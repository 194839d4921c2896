package engine

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/tun"
)

// Busy-poll mode (Config.BusyPoll) is for a device with a CPU of its own,
// or, with a short BusyPoll, for one that shares the CPUs. One goroutine
// does everything the per-port readers and delay-line writers do
// otherwise: it reads every port without blocking, releases delay lines by
// looking at the clock, and only after BusyPoll without work sleeps in
// ppoll() on all ports (until the next departure); with PollAlways it never
// sleeps. A packet arriving while it polls costs no wake-up, so round trips
// are shorter and small packets faster; on shared CPUs a short poll still
// catches most answers awake, but takes CPU from the endpoints. Both are
// measured in docs/benchmarks.md (make bench).

// pollIdleCap bounds one sleep, also with nothing scheduled, and is the
// longest sleep when a port has no file descriptor to wait on (MemPort).
const (
	pollIdleCap     = 100 * time.Millisecond
	pollNoFDIdleCap = time.Millisecond
)

// pollYield is how often a device that never sleeps (PollAlways) yields
// while idle.
const pollYield = time.Millisecond

// startPoll starts the busy-poll goroutine (engine lock held).
func (e *Engine) startPoll() error {
	pollers := make([]tun.Poller, len(e.ports))
	for i, p := range e.ports {
		pl, ok := p.dev.(tun.Poller)
		if !ok {
			return fmt.Errorf("engine: busy-poll: port %s cannot be polled", p.name)
		}
		pollers[i] = pl
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("engine: busy-poll: eventfd: %w", err)
	}
	e.pollWake = fd
	e.pollWG.Add(1)
	go e.pollLoop(pollers)
	return nil
}

// stopPoll ends the busy-poll goroutine and waits for it, before the ports
// are closed: it must not poll file descriptors that are gone.
func (e *Engine) stopPoll() {
	if e.pollWake < 0 {
		return
	}
	e.pollStop.Store(true)
	var one [8]byte
	one[0] = 1
	unix.Write(e.pollWake, one[:])
	e.pollWG.Wait()
	unix.Close(e.pollWake)
	e.pollWake = -1
}

func (e *Engine) pollLoop(pollers []tun.Poller) {
	defer e.pollWG.Done()
	always := e.cfg.BusyPoll == PollAlways
	if !always {
		runtime.LockOSThread() // its sleeps are in ppoll on this thread
		defer runtime.UnlockOSThread()
		// ppoll's timeout is the next departure of a delay line: without
		// this the kernel may stretch it by the default timer slack (50 µs).
		unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	}
	w := newWorker(e)
	due := make([][]scheduled, len(e.ports))
	batch := make([]tun.Packet, 0, BatchSize)
	fds := make([]unix.PollFd, 0, len(e.ports)+1)
	noFD := false
	for _, pl := range pollers {
		if fd := pl.WaitFD(); fd >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		} else {
			noFD = true
		}
	}
	fds = append(fds, unix.PollFd{Fd: int32(e.pollWake), Events: unix.POLLIN})
	idleSince := e.clock()
	yielded := idleSince
	for !e.pollStop.Load() {
		busy := false
		for i, pl := range pollers {
			n, err := pl.TryRead(w.batch)
			if err != nil {
				if !errors.Is(err, tun.ErrClosed) && !e.isClosed() {
					e.fail(fmt.Errorf("read %s: %w", e.ports[i].name, err))
				}
				return
			}
			if n > 0 {
				busy = true
				e.handle(w, e.ports[i], n)
			}
		}
		now := e.clock()
		next := int64(0) // the earliest departure still waiting
		for i, out := range e.ports {
			e.mu.Lock()
			at := out.line.next()
			e.mu.Unlock()
			if at != 0 && at <= now {
				due[i] = e.release(out, due[i], batch)
				busy = true
			} else if at != 0 && (next == 0 || at < next) {
				next = at
			}
		}
		if busy {
			idleSince = now
			continue
		}
		if always {
			if now-yielded > int64(pollYield) {
				// The runtime's other goroutines (control, GC) run now,
				// with no packet in hand, rather than when a preemption
				// signal stops the loop (every 10 ms), maybe mid-batch.
				runtime.Gosched()
				yielded = now
			}
			continue
		}
		if now-idleSince < int64(e.cfg.BusyPoll) {
			continue
		}
		limit := pollIdleCap
		if noFD {
			limit = pollNoFDIdleCap
		}
		if next != 0 {
			limit = min(limit, time.Duration(next-now))
		}
		ts := unix.NsecToTimespec(int64(limit))
		unix.Ppoll(fds, &ts, nil) // EINTR or not: poll again
		idleSince = e.clock()
	}
	e.mu.Lock()
	for i := range due {
		for _, s := range due[i] {
			e.pool.put(s.pkt.Buf)
		}
	}
	e.mu.Unlock()
}

// nopTimer is the delay lines' timer in busy-poll mode, which watches the
// clock instead: arming it costs nothing.
type nopTimer struct{ done chan struct{} }

func newNopTimer() (Timer, error) { return &nopTimer{done: make(chan struct{})}, nil }

func (t *nopTimer) Arm(int64) error { return nil }
func (t *nopTimer) Wait() error     { <-t.done; return errClosed }
func (t *nopTimer) Close() error {
	select {
	case <-t.done:
	default:
		close(t.done)
	}
	return nil
}
