package engine

import (
	"sync/atomic"
	"time"
)

// DelayBounds are the upper bounds of the added-delay histogram's buckets,
// from a link's jitter to a stalled flow; a last bucket takes the rest.
var DelayBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}

// delayHistogram counts the delay behaviors added to packets: fixed
// buckets of atomic counters, bumped once per delayed packet, read at
// scrape time without the engine lock.
type delayHistogram struct {
	counts [len(DelayBounds) + 1]atomic.Uint64
	sum    atomic.Int64 // ns
}

// observe counts n segments delayed by d ns.
func (h *delayHistogram) observe(d int64, n uint64) {
	i := 0
	for i < len(DelayBounds) && d > int64(DelayBounds[i]) {
		i++
	}
	h.counts[i].Add(n)
	h.sum.Add(d * int64(n))
}

func (h *delayHistogram) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.sum.Store(0)
}

// Metrics is what the engine keeps for a metrics scrape beyond Status.
type Metrics struct {
	// DelayCounts counts delayed packets per bucket of DelayBounds (not
	// cumulative); the last is above every bound.
	DelayCounts [len(DelayBounds) + 1]uint64
	DelaySum    time.Duration
	// Queued is each port's delay-line depth in segments, in AddPort order.
	Queued []int
}

// Metrics returns the added-delay histogram and the delay lines' depths.
func (e *Engine) Metrics() Metrics {
	var m Metrics
	for i := range m.DelayCounts {
		m.DelayCounts[i] = e.delays.counts[i].Load()
	}
	m.DelaySum = time.Duration(e.delays.sum.Load())
	e.mu.Lock()
	defer e.mu.Unlock()
	m.Queued = make([]int, len(e.ports))
	for i, p := range e.ports {
		m.Queued[i] = p.queued()
	}
	return m
}

// queued is the number of segments in p's delay line (engine lock held).
func (p *port) queued() int {
	n := 0
	for i := range p.line.h {
		n += int(segmentCount(&p.line.h[i].pkt))
	}
	return n
}
