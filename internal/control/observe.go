package control

import (
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// Status returns the engine's part of the device's status: the profile,
// counters, flows, ports and behaviors. The device adds its own facts.
func (c *Controller) Status() *client.Status {
	es := c.cfg.Engine.Status()
	st := &client.Status{
		Source:     c.Source(),
		Profile:    es.Profile,
		Seed:       es.Seed,
		Version:    c.Version(),
		Counters:   client.Counters(es.Counters),
		Queued:     es.Queued,
		Flows:      client.FlowCounters(es.Flows),
		FlowStates: es.FlowState,
		Events:     es.Events,
		Ports:      make([]client.Port, len(es.Ports)),
		Behaviors:  make([]client.Behavior, len(es.Behaviors)),
	}
	for i, p := range es.Ports {
		st.Ports[i] = client.Port{Name: p.Name, Interface: p.Interface, Offloads: p.Offloads, Addrs: p.Addrs, Stats: client.PortStats(p.Stats)}
	}
	for i, b := range es.Behaviors {
		st.Behaviors[i] = behaviorOf(b)
	}
	if cp := c.Capture(); cp.Active {
		st.Capture, st.CapturePackets = cp.Path, cp.Packets
	}
	return st
}

// Metrics returns what the engine keeps for a metrics scrape.
func (c *Controller) Metrics() engine.Metrics { return c.cfg.Engine.Metrics() }

// Flow orders by their API names.
var flowOrders = map[string]engine.FlowOrder{"": engine.Busiest, "busiest": engine.Busiest, "oldest": engine.Oldest, "recent": engine.Recent}

// MaxFlows bounds a flow listing.
const MaxFlows = 10000

// Flows returns at most n flows (0: 20) in order: busiest (most payload
// bytes), oldest or recent (seen last).
func (c *Controller) Flows(order string, n int) ([]client.Flow, error) {
	o, ok := flowOrders[order]
	if !ok {
		return nil, refuse(BadRequest, "order %q is not busiest, oldest or recent", order)
	}
	if n < 0 || n > MaxFlows {
		return nil, refuse(BadRequest, "n %d: want 1 to %d", n, MaxFlows)
	}
	if n == 0 {
		n = 20
	}
	now := engine.Monotonic()
	infos := c.cfg.Engine.TopFlows(n, o)
	out := make([]client.Flow, len(infos))
	for i, f := range infos {
		out[i] = client.Flow{
			Client: f.Client, Server: f.Server, State: f.State.String(),
			AgeSeconds:  time.Duration(now - f.Created).Seconds(),
			IdleSeconds: time.Duration(now - f.LastSeen).Seconds(),
			ClientEnd:   flowEnd(f.Ends[flow.Client]),
			ServerEnd:   flowEnd(f.Ends[flow.Server]),
		}
	}
	return out, nil
}

func flowEnd(e flow.Endpoint) client.FlowEnd {
	return client.FlowEnd{Packets: e.Packets, Bytes: e.Bytes, Window: e.Window, SentFIN: e.SawFIN, SentRST: e.SawRST, AckedFIN: e.AckedFIN}
}

// Events returns the events recorded from sequence number from on (of
// those the engine still keeps), and the number to ask for next.
func (c *Controller) Events(from uint64) ([]client.Event, uint64) {
	evs, next := c.cfg.Engine.Events(from)
	first := next - uint64(len(evs))
	out := make([]client.Event, len(evs))
	for i, e := range evs {
		out[i] = client.Event{
			Seq: first + uint64(i), Time: time.Unix(0, e.Time+c.wallOffset), Note: e.Note,
			Proto: packet.ProtoName(e.Proto), Src: e.Src, Dst: e.Dst, SrcPort: e.SrcPort, DstPort: e.DstPort,
			Len: e.Len, Text: e.String(),
		}
		if e.Proto == packet.ProtoTCP {
			out[i].Flags, out[i].TCPSeq, out[i].TCPAck = e.Flags.String(), e.Seq, e.Ack
		}
	}
	return out, next
}
