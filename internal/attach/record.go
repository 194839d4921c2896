package attach

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Record is an attach's placement in state.json: everything it changes in
// the namespace, and what was there before, written before the first
// change so that detach can undo all of it even after a SIGKILL.
type Record struct {
	Target Target         `json:"target"`
	To     []netip.Prefix `json:"to"`
	Ports  []uint16       `json:"ports,omitempty"`
	// The device's two TUN interfaces in the namespace: the application
	// side (traffic from the namespace's processes enters the device here)
	// and the world side (where it leaves toward the prefixes).
	App   string `json:"app"`
	World string `json:"world"`
	MTU   int    `json:"mtu"`
	// Locals are the namespace's own addresses: what the app port serves.
	Locals   []netip.Addr `json:"locals"`
	Families []*Family    `json:"families"`
	// Sysctls changed in the namespace (its own interfaces' and the
	// namespace-wide ones; the device's own interfaces go with them).
	Sysctls []Sysctl `json:"sysctls"`
}

// Family is what attach adds to one IP version's routing.
type Family struct {
	Family int `json:"family"` // unix.AF_INET or AF_INET6
	// AppTable routes the prefixes to the app interface (and throws the
	// namespace's own addresses inside them back to the rules);
	// WorldTable routes the namespace's own addresses to the world
	// interface, for the replies.
	AppTable   int     `json:"app_table"`
	WorldTable int     `json:"world_table"`
	Routes     []Route `json:"routes"`
	Rules      []Rule  `json:"rules"`
	// The local rule (lookup local) moved from LocalFrom to LocalTo, so
	// that the reply rules come before it; equal when it stayed.
	LocalFrom     int   `json:"local_from"`
	LocalTo       int   `json:"local_to"`
	LocalProtocol uint8 `json:"local_protocol"`
	// Uplinks are the interfaces the routes to the prefixes leave by:
	// where their replies arrive.
	Uplinks []string `json:"uplinks"`
}

// Route is one route attach adds.
type Route struct {
	Table int          `json:"table"`
	Dst   netip.Prefix `json:"dst"`
	Dev   string       `json:"dev,omitempty"` // "" for a throw route
	Src   netip.Addr   `json:"src,omitzero"`
}

// Rule is one policy routing rule attach adds.
type Rule struct {
	Pref  int          `json:"pref"`
	Table int          `json:"table"`
	Iif   string       `json:"iif"`
	From  netip.Prefix `json:"from,omitzero"`
	Proto uint8        `json:"ipproto,omitempty"`
	Sport uint16       `json:"sport,omitempty"`
	Dport uint16       `json:"dport,omitempty"`
}

func (r Rule) String() string {
	s := fmt.Sprintf("%d: iif %s", r.Pref, r.Iif)
	if r.From.IsValid() {
		s += " from " + r.From.String()
	}
	if r.Proto != 0 {
		s += " ipproto " + protoName(r.Proto)
	}
	if r.Sport != 0 {
		s += fmt.Sprintf(" sport %d", r.Sport)
	}
	if r.Dport != 0 {
		s += fmt.Sprintf(" dport %d", r.Dport)
	}
	return s + fmt.Sprintf(" lookup %d", r.Table)
}

// netlink turns r into the library's rule for family.
func (r Rule) netlink(family int) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = family
	nr.Priority = r.Pref
	nr.Table = r.Table
	nr.IifName = r.Iif
	if r.From.IsValid() {
		nr.Src = ipNet(r.From)
	}
	nr.IPProto = int(r.Proto)
	if r.Sport != 0 {
		nr.Sport = netlink.NewRulePortRange(r.Sport, r.Sport)
	}
	if r.Dport != 0 {
		nr.Dport = netlink.NewRulePortRange(r.Dport, r.Dport)
	}
	return nr
}

// localRule is the rule that looks up the local table at pref.
func localRule(family, pref int, proto uint8) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = family
	r.Priority = pref
	r.Table = unix.RT_TABLE_LOCAL
	r.Protocol = proto
	return r
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// protoName names an IP protocol as ip rule does.
func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "ipv6-icmp"
	}
	return fmt.Sprint(p)
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func familyName(f int) string {
	if f == unix.AF_INET {
		return "IPv4"
	}
	return "IPv6"
}
