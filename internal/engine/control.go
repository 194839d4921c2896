package engine

import (
	"container/heap"
	"net/netip"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/flow"
)

// What the device's control API asks of a running engine. Each takes the
// engine lock once, between two batches: packets wait for it, so each is
// short, and none is on the packet path.

// EditChain runs edit on the running chain and installs the chain it
// returns: the same one, changed in place, or one derived from it
// (behaviors.Chain.With, Without). edit runs under the engine lock, so no
// packet is in the chain meanwhile; it must be quick.
func (e *Engine) EditChain(edit func(*behaviors.Chain) (*behaviors.Chain, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := edit(e.chain)
	if err != nil {
		return err
	}
	e.chain = c
	return nil
}

// ChainStatus reports the running chain's profile, seed and entries.
func (e *Engine) ChainStatus() (profile string, seed uint64, entries []behaviors.EntryStatus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.chain.Profile, e.chain.Seed, e.chain.Status()
}

// SetCapture starts recording packets to c, or stops with nil, and returns
// the capture it replaces. Once it returns, the old capture gets no more
// records and may be closed.
func (e *Engine) SetCapture(c Capture) Capture {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cfg.Capture
	e.cfg.Capture = c
	return old
}

// FlowOrder says which flows TopFlows picks.
type FlowOrder uint8

const (
	Busiest FlowOrder = iota // most payload bytes, both ways
	Oldest                   // created first
	Recent                   // seen last
)

// FlowInfo is one tracked TCP flow, copied out of the table.
type FlowInfo struct {
	Client, Server netip.AddrPort
	State          flow.State
	Created        int64 // engine clock, ns
	LastSeen       int64
	Ends           [2]flow.Endpoint // indexed by flow.Side
}

// Bytes is the payload the flow carried both ways.
func (f *FlowInfo) Bytes() uint64 { return f.Ends[flow.Client].Bytes + f.Ends[flow.Server].Bytes }

// TopFlows returns at most n flows in order: the busiest, the oldest or
// the most recently seen first. It looks at every flow once, keeping the
// best n so far: the engine lock is held for one pass over the table.
func (e *Engine) TopFlows(n int, order FlowOrder) []FlowInfo {
	if n <= 0 {
		return nil
	}
	better := func(a, b *FlowInfo) bool {
		switch order {
		case Oldest:
			return a.Created < b.Created
		case Recent:
			return a.LastSeen > b.LastSeen
		}
		return a.Bytes() > b.Bytes()
	}
	top := &flowHeap{worse: func(a, b *FlowInfo) bool { return better(b, a) }}
	e.mu.Lock()
	e.flows.Each(func(f *flow.Flow) bool {
		info := FlowInfo{
			Client:  netip.AddrPortFrom(f.Addr(flow.Client), f.Port(flow.Client)),
			Server:  netip.AddrPortFrom(f.Addr(flow.Server), f.Port(flow.Server)),
			State:   f.State,
			Created: f.Created, LastSeen: f.LastSeen,
			Ends: f.Ends,
		}
		switch {
		case top.Len() < n:
			heap.Push(top, info)
		case order == Recent:
			return false // Each goes from the most recent: none better follows
		case better(&info, &top.s[0]):
			top.s[0] = info
			heap.Fix(top, 0)
		}
		return true
	})
	e.mu.Unlock()
	out := make([]FlowInfo, top.Len())
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(top).(FlowInfo)
	}
	return out
}

// flowHeap keeps the worst of the best n at the top.
type flowHeap struct {
	s     []FlowInfo
	worse func(a, b *FlowInfo) bool
}

func (h *flowHeap) Len() int           { return len(h.s) }
func (h *flowHeap) Less(i, j int) bool { return h.worse(&h.s[i], &h.s[j]) }
func (h *flowHeap) Swap(i, j int)      { h.s[i], h.s[j] = h.s[j], h.s[i] }
func (h *flowHeap) Push(x any)         { h.s = append(h.s, x.(FlowInfo)) }
func (h *flowHeap) Pop() any {
	x := h.s[len(h.s)-1]
	h.s = h.s[:len(h.s)-1]
	return x
}
