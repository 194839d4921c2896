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
	Name      string        `json:"name"`
	Interface string        `json:"interface"` // the TUN interface's name in its namespace
	Offloads  bool          `json:"offloads"`
	Addrs     []string      `json:"addrs"`
	Stats     tun.PortStats `json:"stats"`
}

// Status returns a snapshot of counters, flows, ports and behaviors.
func (e *Engine) Status() Status {
	st, ports, bases := e.counters()
	// Outside the engine lock: a device reads some counters from the
	// kernel, and packets must not wait for that.
	for i, p := range ports {
		ps := PortStatus{Name: p.name, Interface: p.dev.Name(), Offloads: p.dev.Offloads(), Stats: since(p.dev.Stats(), bases[i])}
		for _, a := range p.addrs {
			ps.Addrs = append(ps.Addrs, a.String())
		}
		st.Ports = append(st.Ports, ps)
	}
	return st
}

// counters is Status without the ports, and the ports with their counters
// at the last Reset.
func (e *Engine) counters() (Status, []*port, []tun.PortStats) {
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
	bases := make([]tun.PortStats, len(e.ports))
	for j, p := range e.ports {
		bases[j] = p.base
		st.Queued += p.queued()
	}
	st.Counters.WriteDrops = e.writeDrops.Load()
	st.Counters.Out -= st.Counters.WriteDrops // counted out before the write failed
	e.flows.Each(func(f *flow.Flow) bool {
		st.FlowState[f.State.String()]++
		return true
	})
	return st, e.ports, bases
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

// since is what the counters in now gained after base.
func since(now, base tun.PortStats) tun.PortStats {
	return tun.PortStats{
		ReadPackets:   now.ReadPackets - base.ReadPackets,
		ReadBytes:     now.ReadBytes - base.ReadBytes,
		QueueDrops:    now.QueueDrops - base.QueueDrops,
		ReadDrops:     now.ReadDrops - base.ReadDrops,
		WritePackets:  now.WritePackets - base.WritePackets,
		WriteBytes:    now.WriteBytes - base.WriteBytes,
		WriteDrops:    now.WriteDrops - base.WriteDrops,
		GSOPackets:    now.GSOPackets - base.GSOPackets,
		JoinedWrites:  now.JoinedWrites - base.JoinedWrites,
		JoinedPackets: now.JoinedPackets - base.JoinedPackets,
	}
}
