package client

import (
	"encoding/json"
	"net/netip"
	"time"
)

// The API's resources as they travel: every field has the JSON name the API
// documents (docs/api.md). Counters only grow while a device runs.

// Status is a device's state and counters (GET /v1/status).
type Status struct {
	Name          string    `json:"name"`
	Kind          string    `json:"kind"`      // lab, attach or run
	Placement     string    `json:"placement"` // what it sits in front of
	PID           int       `json:"pid"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// Namespaces says where each port's interface is: port name ->
	// network namespace, as the user knows it.
	Namespaces map[string]string `json:"port_namespaces"`
	// Source is where the profile came from: a built-in's name, a file,
	// or "request" for a profile sent in an API request.
	Source         string `json:"profile_source"`
	MTU            int    `json:"mtu"`
	CPUs           []int  `json:"cpus,omitempty"`
	BusyPoll       string `json:"busy_poll,omitempty"`
	Capture        string `json:"capture,omitempty"` // file being written, if any
	CapturePackets uint64 `json:"capture_packets,omitempty"`
	Failure        string `json:"failure,omitempty"` // a port failed for good
	API            string `json:"api,omitempty"`     // the TCP address the API also serves, if any

	Profile    string         `json:"profile"`
	Seed       uint64         `json:"seed"`
	Version    uint64         `json:"version"` // of the profile; see Profile.Version
	Counters   Counters       `json:"counters"`
	Queued     int            `json:"queued"` // segments in delay lines
	Flows      FlowCounters   `json:"flows"`
	FlowStates map[string]int `json:"flow_states"`
	Ports      []Port         `json:"ports"`
	Behaviors  []Behavior     `json:"behaviors"`
	Events     uint64         `json:"events"` // events recorded so far
}

// QueueDrops sums the ports' queue drops: packets the kernel dropped because
// the device fell behind, which no behavior asked for.
func (s *Status) QueueDrops() uint64 {
	var n uint64
	for _, p := range s.Ports {
		n += p.Stats.QueueDrops
	}
	return n
}

// Counters account for every packet the device read or made:
// in + injected = out + dropped_by_behavior + no_route + unreadable +
// queued + write_drops.
type Counters struct {
	In         uint64 `json:"in"`
	Out        uint64 `json:"out"`
	Dropped    uint64 `json:"dropped_by_behavior"`
	Delayed    uint64 `json:"delayed"`
	Injected   uint64 `json:"injected"`
	Modified   uint64 `json:"modified"`
	NoRoute    uint64 `json:"no_route"`
	Unreadable uint64 `json:"unreadable"`
	Malformed  uint64 `json:"malformed"`
	Split      uint64 `json:"split"`
	WriteDrops uint64 `json:"write_drops"`
}

// FlowCounters describe the flow table.
type FlowCounters struct {
	Created  uint64 `json:"created"`
	Evicted  uint64 `json:"evicted"` // removed to make room while full
	Expired  uint64 `json:"expired"`
	Active   int    `json:"active"`
	Capacity int    `json:"capacity"`
}

// Port is one of the device's TUN ports.
type Port struct {
	Name      string    `json:"name"`
	Interface string    `json:"interface"` // the TUN interface's name in its namespace
	Offloads  bool      `json:"offloads"`
	Addrs     []string  `json:"addrs"`
	Stats     PortStats `json:"stats"`
}

// PortStats are a port's own counters.
type PortStats struct {
	ReadPackets   uint64 `json:"read_packets"`
	ReadBytes     uint64 `json:"read_bytes"`
	QueueDrops    uint64 `json:"queue_drops"` // the kernel's: the device fell behind
	ReadDrops     uint64 `json:"read_drops"`
	WritePackets  uint64 `json:"write_packets"`
	WriteBytes    uint64 `json:"write_bytes"`
	WriteDrops    uint64 `json:"write_drops"`
	GSOPackets    uint64 `json:"gso_packets"`
	JoinedWrites  uint64 `json:"joined_writes,omitempty"`
	JoinedPackets uint64 `json:"joined_packets,omitempty"`
}

// Behavior is one behavior of the running chain with its counters
// (GET /v1/behaviors).
type Behavior struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Match    string            `json:"match"` // in words
	Counters BehaviorCounters  `json:"counters"`
	Extra    map[string]uint64 `json:"extra,omitempty"` // the behavior's own counters
	Waits    *Wait             `json:"waits,omitempty"`
}

// BehaviorCounters are kept for every behavior.
type BehaviorCounters struct {
	Matched  uint64 `json:"matched"`
	Dropped  uint64 `json:"dropped"`
	Delayed  uint64 `json:"delayed"`
	Modified uint64 `json:"modified"`
	Injected uint64 `json:"injected"`
}

// Wait is what a behavior waits for (a client FIN, a byte count ...) and
// how often it came; Note says what came instead when nothing did.
type Wait struct {
	For  string `json:"for"`
	Seen uint64 `json:"seen"`
	Note string `json:"note,omitempty"`
}

// Profile is the running profile (GET and PUT /v1/profile).
type Profile struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	Seed   uint64 `json:"seed"`
	// Version grows with every change: a PUT or a behavior added, removed
	// or patched. Send it back in If-Match to change only what you read.
	Version uint64 `json:"version"`
	// Edited is true once behaviors were changed one by one: YAML then
	// renders the chain as it now runs, each behavior with its name.
	Edited bool   `json:"edited"`
	YAML   string `json:"yaml"`
}

// Spec is a behavior to add (POST /v1/behaviors), written as a profile's
// behaviors list holds one: type, optional name and match, and the
// behavior's parameters, flat, with the values a profile takes ("50ms",
// "1%", "40kbit", numbers, lists).
type Spec struct {
	Type   string
	Name   string // optional: the type, delay-2 ... when empty
	Match  *Match
	Params Params
}

// Params are a behavior's parameters by name, e.g. {"delay": "50ms"}.
type Params map[string]any

// Match selects the packets a behavior sees; every field is optional.
type Match struct {
	Direction string   `json:"direction,omitempty"` // upstream | downstream | both
	From      []string `json:"from,omitempty"`      // host names or CIDR prefixes
	To        []string `json:"to,omitempty"`
	Protocol  string   `json:"protocol,omitempty"` // tcp | udp | icmp | any
	Port      int      `json:"port,omitempty"`     // either end
	TCPFlags  []string `json:"tcp_flags,omitempty"`
}

// MarshalJSON writes the spec as the API takes it: parameters beside type,
// name and match.
func (s Spec) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(s.Params)+3)
	for k, v := range s.Params {
		m[k] = v
	}
	m["type"] = s.Type
	if s.Name != "" {
		m["name"] = s.Name
	}
	if s.Match != nil {
		m["match"] = s.Match
	}
	return json.Marshal(m)
}

// Flow is one tracked TCP connection (GET /v1/flows).
type Flow struct {
	Client      netip.AddrPort `json:"client"`
	Server      netip.AddrPort `json:"server"`
	State       string         `json:"state"` // syn-sent, established, closing, closed, reset ...
	AgeSeconds  float64        `json:"age_seconds"`
	IdleSeconds float64        `json:"idle_seconds"`
	ClientEnd   FlowEnd        `json:"client_end"` // what the client sent
	ServerEnd   FlowEnd        `json:"server_end"`
}

// FlowEnd is what one end of a flow has sent, as seen on the wire.
type FlowEnd struct {
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"` // payload
	Window   uint32 `json:"window"`
	SentFIN  bool   `json:"sent_fin"`
	SentRST  bool   `json:"sent_rst"`
	AckedFIN bool   `json:"acked_fin"` // acknowledged the peer's FIN
}

// Event is one record of the device's event log: something a behavior or
// the engine did to a packet (GET /v1/events, one JSON object a line).
type Event struct {
	Seq     uint64     `json:"seq"` // 0, 1, 2 ... over the device's life
	Time    time.Time  `json:"time"`
	Note    string     `json:"note"`
	Proto   string     `json:"proto"` // tcp, udp, icmp, icmpv6, or the number
	Src     netip.Addr `json:"src"`
	Dst     netip.Addr `json:"dst"`
	SrcPort uint16     `json:"src_port,omitempty"`
	DstPort uint16     `json:"dst_port,omitempty"`
	Flags   string     `json:"flags,omitempty"` // TCP, as tcpdump: S, F., R ...
	TCPSeq  uint32     `json:"tcp_seq,omitempty"`
	TCPAck  uint32     `json:"tcp_ack,omitempty"`
	Len     int        `json:"len"` // TCP payload, else the packet
	Text    string     `json:"text"`
}

// Capture is the state of the device's packet capture (/v1/capture).
type Capture struct {
	Active  bool   `json:"active"`
	Path    string `json:"path,omitempty"`
	Packets uint64 `json:"packets"`
}
