package engine

import (
	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/tun"
)

// Status is a snapshot of the engine for `lab status`.
type Status struct {
	Profile   string                  `json:"profile"`
	Seed      uint64                  `json:"seed"`
	Counters  Counters                `json:"counters"`
	Queued    int                     `json:"queued"` // segments in delay lines
	Flows     flow.Counters           `json:"flows"`
	FlowState map[string]int          `json:"flow_states"`
	Ports     []PortStatus            `json:"ports"`
	Behaviors []behaviors.EntryStatus `json:"behaviors"`
	Events    uint64                  `json:"events"`
}

// PortStatus describes one port.
type PortStatus struct {
	Name     string        `json:"name"`
	Device   string        `json:"device"`
	Offloads bool          `json:"offloads"`
	Addrs    []string      `json:"addrs"`
	Stats    tun.PortStats `json:"stats"`
}

// Status returns a snapshot of counters, flows, ports and behaviors.
func (e *Engine) Status() Status {
	st, ports := e.counters()
	// Outside the engine lock: a device reads some counters from the
	// kernel, and packets must not wait for that.
	for _, p := range ports {
		ps := PortStatus{Name: p.name, Device: p.dev.Name(), Offloads: p.dev.Offloads(), Stats: p.dev.Stats()}
		for _, a := range p.addrs {
			ps.Addrs = append(ps.Addrs, a.String())
		}
		st.Ports = append(st.Ports, ps)
	}
	return st
}

// counters is Status without the ports, and the ports.
func (e *Engine) counters() (Status, []*port) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{
		Profile:   e.chain.Profile,
		Seed:      e.chain.Seed,
		Counters:  e.c,
		Flows:     e.flows.Counters(),
		FlowState: map[string]int{},
		Behaviors: e.chain.Status(),
		Events:    e.events.next,
	}
	for _, p := range e.ports {
		for i := range p.line.h {
			st.Queued += int(segmentCount(&p.line.h[i].pkt))
		}
	}
	st.Counters.WriteDrops = e.writeDrops.Load()
	st.Counters.Out -= st.Counters.WriteDrops // counted out before the write failed
	e.flows.Each(func(f *flow.Flow) bool {
		st.FlowState[f.State.String()]++
		return true
	})
	return st, e.ports
}

// Events returns the events recorded since sequence number from, oldest
// first, and the number to pass next time.
func (e *Engine) Events(from uint64) ([]Event, uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.events.since(from)
}

// Flows calls fn for each tracked flow under the engine lock, most recent
// first; fn must not keep the pointer.
func (e *Engine) Flows(fn func(*flow.Flow) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.flows.Each(fn)
}
