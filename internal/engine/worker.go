package engine

import (
	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/tun"
)

// worker is one reader goroutine's private state: its read batch, the
// packets it will write once the lock is released, and scratch space, so
// that processing a packet allocates nothing.
type worker struct {
	e        *Engine
	now      int64
	in       *port // the port the current batch came from
	batch    []tun.Packet
	segs     []tun.Packet // split output, buffers from the pool
	verdicts []outcome    // per split segment
	views    tun.SegmentViews
	out      [][]tun.Packet
	owned    [][]byte // pool buffers in flight, returned after the flush
	parsed   packet.Parsed
	pkt      behaviors.Packet
	scratch  [2048]byte
	capture  []byte // copy of the packet before behaviors, when capturing
}

// maxSegments bounds one super-packet's split: 64 KiB over the smallest
// sensible MSS (1 KiB) per split.
const maxSegments = 64

func newWorker(e *Engine) *worker {
	w := &worker{e: e, batch: make([]tun.Packet, BatchSize), segs: make([]tun.Packet, maxSegments), verdicts: make([]outcome, maxSegments)}
	for i := range w.batch {
		w.batch[i].Buf = make([]byte, tun.BufSize)
	}
	w.out = make([][]tun.Packet, len(e.ports))
	for i := range w.out {
		w.out[i] = make([]tun.Packet, 0, BatchSize)
	}
	e.mu.Lock()
	w.refillSegs(maxSegments)
	e.mu.Unlock()
	return w
}

// refillSegs gives the first n split slots fresh buffers (engine lock held).
func (w *worker) refillSegs(n int) {
	for i := 0; i < n; i++ {
		if w.segs[i].Buf == nil {
			w.segs[i].Buf = w.e.pool.get(16384)
		}
	}
}

// own keeps a pool buffer until the next batch, after the flush wrote it.
func (w *worker) own(b []byte) { w.owned = append(w.owned, b) }

// recycle returns the previous batch's pool buffers (engine lock held).
func (w *worker) recycle() {
	for i, b := range w.owned {
		w.e.pool.put(b)
		w.owned[i] = nil
	}
	w.owned = w.owned[:0]
}

// send queues pkt for out, to be written after the lock is released.
func (w *worker) send(out *port, pkt *tun.Packet, note string) {
	w.e.egress(out, w.now, pkt, note, 0)
	w.out[out.id] = append(w.out[out.id], *pkt)
}

// flush writes every queued packet, one batch per port. Called with the
// engine lock held, it takes the write locks of the ports it writes to and
// then releases the engine lock, so writes keep the engine's order.
func (w *worker) flush() {
	for id, pkts := range w.out {
		if len(pkts) > 0 {
			w.e.ports[id].wmu.Lock()
		}
	}
	w.e.mu.Unlock()
	for id, pkts := range w.out {
		if len(pkts) == 0 {
			continue
		}
		w.e.write(w.e.ports[id], pkts)
		w.e.ports[id].wmu.Unlock()
		clear(pkts)
		w.out[id] = pkts[:0]
	}
}
