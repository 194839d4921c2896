package behaviors

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/faultbox/faultbox/internal/packet"
)

// MatchSpec is a match as written in a profile. Every key is optional.
type MatchSpec struct {
	Direction string   `param:"direction" values:"upstream|downstream|both" default:"both" help:"upstream: from the client to the server; downstream: back"`
	From      []string `param:"from" help:"packets from these lab hosts or CIDR prefixes; empty: any"`
	To        []string `param:"to" help:"packets to these lab hosts or CIDR prefixes; empty: any"`
	Protocol  string   `param:"protocol" values:"tcp|udp|icmp|any" default:"any" help:"the transport protocol (tcp_flags imply tcp)"`
	Port      int      `param:"port" help:"either end's port; 0: any"`
	TCPFlags  []string `param:"tcp_flags" values:"syn|syn-ack|ack|bare-ack|fin|rst|data" help:"TCP segments with any of these flags; bare-ack: an ACK without payload; data: with payload"`
}

// Resolver turns a lab host name into its addresses.
type Resolver func(name string) ([]netip.Addr, bool)

// Direction selects packets by the way they travel relative to the
// connection's initiator.
type Direction uint8

const (
	Both Direction = iota
	Upstream
	Downstream
)

// Match is a compiled MatchSpec; its zero value matches everything.
type Match struct {
	Direction Direction
	From, To  []netip.Prefix
	Protocol  uint8 // 0 = any
	Port      uint16
	Flags     []FlagSet // any of these; empty = any segment
}

// FlagSet selects TCP segments by flags: (flags & Mask) == Want, and, for
// bare ACKs, no payload.
type FlagSet struct {
	Name       string // as the profile says it, e.g. "fin"
	Mask, Want packet.TCPFlags
	NoPayload  bool
	Payload    bool
}

var flagSets = map[string]FlagSet{
	"syn":      {Mask: packet.SYN | packet.ACK, Want: packet.SYN},
	"syn-ack":  {Mask: packet.SYN | packet.ACK, Want: packet.SYN | packet.ACK},
	"fin":      {Mask: packet.FIN, Want: packet.FIN},
	"rst":      {Mask: packet.RST, Want: packet.RST},
	"ack":      {Mask: packet.ACK, Want: packet.ACK},
	"bare-ack": {Mask: packet.SYN | packet.FIN | packet.RST | packet.ACK, Want: packet.ACK, NoPayload: true},
	"data":     {Payload: true},
}

// Compile checks a MatchSpec and resolves its host names.
func (s MatchSpec) Compile(resolve Resolver) (Match, error) {
	var m Match
	var err error
	if m.Direction, err = parseDirection("match.direction", s.Direction); err != nil {
		return m, err
	}
	if m.From, err = prefixes(s.From, resolve, "match.from"); err != nil {
		return m, err
	}
	if m.To, err = prefixes(s.To, resolve, "match.to"); err != nil {
		return m, err
	}
	switch strings.ToLower(s.Protocol) {
	case "", "any":
	case "tcp":
		m.Protocol = packet.ProtoTCP
	case "udp":
		m.Protocol = packet.ProtoUDP
	case "icmp":
		m.Protocol = packet.ProtoICMP // ICMPv6 too, see Matches
	default:
		return m, Errorf("match.protocol", "%q is not tcp, udp, icmp or any", s.Protocol)
	}
	if s.Port < 0 || s.Port > 65535 {
		return m, Errorf("match.port", "%d is out of range 0-65535", s.Port)
	}
	m.Port = uint16(s.Port)
	for _, name := range s.TCPFlags {
		fs, ok := flagSets[strings.ToLower(name)]
		if !ok {
			return m, Errorf("match.tcp_flags", "%q is not one of syn, syn-ack, ack, bare-ack, fin, rst, data", name)
		}
		fs.Name = strings.ToLower(name)
		m.Flags = append(m.Flags, fs)
	}
	if len(m.Flags) > 0 && m.Protocol == 0 {
		m.Protocol = packet.ProtoTCP
	}
	return m, nil
}

// parseDirection reads an upstream | downstream | both parameter ("" is both).
func parseDirection(field, v string) (Direction, error) {
	switch strings.ToLower(v) {
	case "", "both":
		return Both, nil
	case "upstream":
		return Upstream, nil
	case "downstream":
		return Downstream, nil
	}
	return Both, Errorf(field, "%q is not upstream, downstream or both", v)
}

// selects reports whether p travels in direction d.
func (d Direction) selects(p *Packet) bool {
	return d == Both || (d == Upstream) == p.Upstream()
}

func prefixes(items []string, resolve Resolver, field string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, it := range items {
		if p, err := netip.ParsePrefix(it); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(it); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		var addrs []netip.Addr
		ok := false
		if resolve != nil {
			addrs, ok = resolve(it)
		}
		if !ok {
			return nil, Errorf(field, "%q is neither a CIDR prefix nor a lab host name", it)
		}
		for _, a := range addrs {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// Matches reports whether p is selected.
func (m *Match) Matches(p *Packet) bool {
	if m.Protocol != 0 && p.Proto != m.Protocol && !(m.Protocol == packet.ProtoICMP && p.Proto == packet.ProtoICMPv6) {
		return false
	}
	if !m.Direction.selects(p) {
		return false
	}
	if m.Port != 0 && (!p.HasPorts || (p.SrcPort != m.Port && p.DstPort != m.Port)) {
		return false
	}
	if len(m.From) > 0 && !inAny(m.From, p.Src) {
		return false
	}
	if len(m.To) > 0 && !inAny(m.To, p.Dst) {
		return false
	}
	if len(m.Flags) > 0 {
		if !p.IsTCP() {
			return false
		}
		hit := false
		for _, fs := range m.Flags {
			if fs.matches(p) {
				hit = true
				break
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

func (fs FlagSet) matches(p *Packet) bool {
	if p.Flags&fs.Mask != fs.Want {
		return false
	}
	n := p.PayloadLen()
	return !(fs.NoPayload && n > 0) && !(fs.Payload && n == 0)
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// String renders the whole match for status output, in the profile's own
// words ("direction: downstream, protocol: tcp, tcp_flags: [fin]"), with
// host names as the addresses they resolved to; "all" if it selects every
// packet.
func (m Match) String() string {
	var parts []string
	if m.Direction == Upstream {
		parts = append(parts, "direction: upstream")
	} else if m.Direction == Downstream {
		parts = append(parts, "direction: downstream")
	}
	if m.Protocol != 0 {
		parts = append(parts, "protocol: "+packet.ProtoName(m.Protocol))
	}
	if m.Port != 0 {
		parts = append(parts, fmt.Sprintf("port: %d", m.Port))
	}
	list := func(key string, items []string) {
		if len(items) > 0 {
			parts = append(parts, key+": ["+strings.Join(items, ", ")+"]")
		}
	}
	list("from", prefixStrings(m.From))
	list("to", prefixStrings(m.To))
	flags := make([]string, len(m.Flags))
	for i, fs := range m.Flags {
		flags[i] = fs.Name
	}
	list("tcp_flags", flags)
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, ", ")
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
