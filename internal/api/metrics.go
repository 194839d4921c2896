package api

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/faultbox/faultbox/internal/engine"
)

// collector turns the device's status into Prometheus metrics at scrape
// time: the engine keeps plain counters on its packet path and pays
// nothing for metrics between scrapes.
type collector struct {
	dev Device
}

func newCollector(dev Device) *collector { return &collector{dev: dev} }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("faultbox_"+name, help, labels, nil)
}

var (
	portPackets    = desc("port_packets_total", "Packets a port read from (in) or wrote to (out) its TUN device.", "port", "direction")
	portBytes      = desc("port_bytes_total", "Bytes a port read from (in) or wrote to (out) its TUN device.", "port", "direction")
	portQueueDrops = desc("port_queue_drops_total", "Packets the kernel dropped before the device read them: its input queue was full because the device fell behind.", "port")
	portDrops      = desc("port_drops_total", "Packets a port could not read (in) or that the kernel refused on write (out).", "port", "direction")
	delayLine      = desc("delay_line_packets", "Packets (segments) waiting in a port's delay line.", "port")

	devicePackets = map[string]*prometheus.Desc{
		"in":         desc("packets_in_total", "Packets the device read (segments of a super-packet count one by one)."),
		"out":        desc("packets_out_total", "Packets the device wrote."),
		"dropped":    desc("packets_dropped_total", "Packets a behavior dropped."),
		"delayed":    desc("packets_delayed_total", "Packets a behavior delayed."),
		"injected":   desc("packets_injected_total", "Packets behaviors made and sent."),
		"modified":   desc("packets_modified_total", "Packets a behavior changed."),
		"noroute":    desc("packets_no_route_total", "Packets to an address no port serves, dropped."),
		"unreadable": desc("packets_unreadable_total", "Packets whose IP header or offload descriptor was unusable, dropped."),
		"malformed":  desc("packets_malformed_total", "Packets whose transport header was unreadable, passed untouched."),
		"writedrops": desc("packets_write_drops_total", "Packets a port refused on write."),
	}

	behaviorPackets = desc("behavior_packets_total", "Packets per behavior of the running chain and what it did to them: matched, then dropped, delayed, modified; injected counts packets it made.", "behavior", "type", "verdict")
	behaviorStats   = desc("behavior_stat_total", "A behavior's own counters (lab status' STATS column), by name.", "behavior", "type", "stat")
	behaviorWaits   = desc("behavior_trigger_seen_total", "How often what a behavior waits for came (a client FIN, a trigger firing).", "behavior", "type")

	flowsActive   = desc("flows_active", "TCP flows in the flow table.")
	flowsCapacity = desc("flows_capacity", "The flow table's bound.")
	flowsByState  = desc("flows", "TCP flows in the flow table by state.", "state")
	flowsCreated  = desc("flows_created_total", "TCP flows the table began tracking.")
	flowsEvicted  = desc("flows_evicted_total", "TCP flows removed to make room while the table was full.")
	flowsExpired  = desc("flows_expired_total", "TCP flows removed after their idle timeout.")

	addedDelay = desc("added_delay_seconds", "Delay behaviors added to packets.")
	events     = desc("events_total", "Events recorded in the event log.")
	profile    = desc("profile_info", "The running profile (1), with its name, source and seed.", "profile", "source", "seed")
	version    = desc("profile_version", "The running profile's version: it grows with every change.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{portPackets, portBytes, portQueueDrops, portDrops, delayLine,
		behaviorPackets, behaviorStats, behaviorWaits, flowsActive, flowsCapacity, flowsByState,
		flowsCreated, flowsEvicted, flowsExpired, addedDelay, events, profile, version} {
		ch <- d
	}
	for _, d := range devicePackets {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.dev.Status()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(profile, err)
		return
	}
	m := c.dev.Metrics()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), validLabels(labels)...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, validLabels(labels)...)
	}
	for i, p := range st.Ports {
		s := p.Stats
		counter(portPackets, s.ReadPackets, p.Name, "in")
		counter(portPackets, s.WritePackets, p.Name, "out")
		counter(portBytes, s.ReadBytes, p.Name, "in")
		counter(portBytes, s.WriteBytes, p.Name, "out")
		counter(portQueueDrops, s.QueueDrops, p.Name)
		counter(portDrops, s.ReadDrops, p.Name, "in")
		counter(portDrops, s.WriteDrops, p.Name, "out")
		if i < len(m.Queued) {
			gauge(delayLine, float64(m.Queued[i]), p.Name)
		}
	}
	k := st.Counters
	for key, v := range map[string]uint64{"in": k.In, "out": k.Out, "dropped": k.Dropped, "delayed": k.Delayed,
		"injected": k.Injected, "modified": k.Modified, "noroute": k.NoRoute, "unreadable": k.Unreadable,
		"malformed": k.Malformed, "writedrops": k.WriteDrops} {
		counter(devicePackets[key], v, nil...)
	}
	for _, b := range st.Behaviors {
		bc := b.Counters
		counter(behaviorPackets, bc.Matched, b.Name, b.Type, "matched")
		counter(behaviorPackets, bc.Dropped, b.Name, b.Type, "dropped")
		counter(behaviorPackets, bc.Delayed, b.Name, b.Type, "delayed")
		counter(behaviorPackets, bc.Modified, b.Name, b.Type, "modified")
		counter(behaviorPackets, bc.Injected, b.Name, b.Type, "injected")
		for stat, v := range b.Extra {
			counter(behaviorStats, v, b.Name, b.Type, stat)
		}
		if b.Waits != nil {
			counter(behaviorWaits, b.Waits.Seen, b.Name, b.Type)
		}
	}
	f := st.Flows
	gauge(flowsActive, float64(f.Active))
	gauge(flowsCapacity, float64(f.Capacity))
	for state, n := range st.FlowStates {
		gauge(flowsByState, float64(n), state)
	}
	counter(flowsCreated, f.Created)
	counter(flowsEvicted, f.Evicted)
	counter(flowsExpired, f.Expired)

	buckets := make(map[float64]uint64, len(engine.DelayBounds))
	var cum uint64
	for i, b := range engine.DelayBounds {
		cum += m.DelayCounts[i]
		buckets[b.Seconds()] = cum
	}
	cum += m.DelayCounts[len(engine.DelayBounds)]
	ch <- prometheus.MustNewConstHistogram(addedDelay, cum, m.DelaySum.Seconds(), buckets)

	counter(events, st.Events)
	gauge(profile, 1, st.Profile, st.Source, strconv.FormatUint(st.Seed, 10))
	gauge(version, float64(st.Version))
}

// validLabels makes label values valid UTF-8, as Prometheus requires: a
// profile's source is what the request or the file system said, any
// bytes, and one invalid value would fail the whole scrape.
func validLabels(values []string) []string {
	for i, v := range values {
		values[i] = strings.ToValidUTF8(v, "\uFFFD")
	}
	return values
}
