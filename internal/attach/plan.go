package attach

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
)

// Interface names of the device's two ports inside the attached namespace.
const (
	AppInterface   = "fbx-app"
	WorldInterface = "fbx-world"
)

// firstTable is where attach looks for two routing table ids nobody uses.
const firstTable = 0xfb00

// plan inspects the target namespace and writes down everything attach
// will change there (Record). It changes nothing. Problems the user can
// fix (no route to a prefix, an interface name taken, an attach already
// there) are input errors.
func plan(t Target, to []netip.Prefix, ports []uint16) (*Record, error) {
	nl, err := netns.Handle(t.Path)
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	r := &Record{Target: t, To: to, Ports: ports, App: AppInterface, World: WorldInterface}
	links, err := nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("%s: links: %w", t, err)
	}
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
		if n := l.Attrs().Name; n == r.App || n == r.World {
			return nil, device.InputErrorf("%s already has an interface named %s: is faultbox attached there already (faultbox status)? If not, remove or rename that interface", t, n)
		}
	}
	if r.Locals, err = localAddrs(nl, byIndex); err != nil {
		return nil, fmt.Errorf("%s: addresses: %w", t, err)
	}
	tables, err := usedTables(nl)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		var fp []netip.Prefix
		for _, p := range to {
			if familyOf(p.Addr()) == fam {
				fp = append(fp, p)
			}
		}
		if len(fp) == 0 {
			continue
		}
		f := &Family{Family: fam}
		f.AppTable, f.WorldTable = freeTable(tables), 0
		tables[f.AppTable] = true
		f.WorldTable = freeTable(tables)
		tables[f.WorldTable] = true
		if err := r.planFamily(nl, f, fp, byIndex); err != nil {
			return nil, err
		}
		r.Families = append(r.Families, f)
	}
	if err := r.planSysctls(); err != nil {
		return nil, err
	}
	return r, nil
}

// localAddrs are the namespace's own unicast addresses, but for loopback
// and link-local ones: the addresses replies from the prefixes come to.
func localAddrs(nl *netlink.Handle, links map[int]netlink.Link) ([]netip.Addr, error) {
	addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		if l := links[a.LinkIndex]; l != nil && l.Attrs().Flags&unix.IFF_LOOPBACK != 0 {
			continue
		}
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out, nil
}

// usedTables are the routing tables that hold a route or that a rule names.
func usedTables(nl *netlink.Handle) (map[int]bool, error) {
	used := map[int]bool{}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		routes, err := nl.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("routes: %w", err)
		}
		for _, rt := range routes {
			used[rt.Table] = true
		}
		rules, err := nl.RuleList(fam)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		for _, ru := range rules {
			used[ru.Table] = true
		}
	}
	return used, nil
}

func freeTable(used map[int]bool) int {
	t := firstTable
	for used[t] {
		t++
	}
	return t
}

// planFamily plans one IP version: the route each prefix takes now (its
// uplink and source address), the tables, the rules and their
// preferences, and whether the local rule must move.
func (r *Record) planFamily(nl *netlink.Handle, f *Family, prefixes []netip.Prefix, links map[int]netlink.Link) error {
	t := r.Target
	for _, p := range prefixes {
		probe := p.Addr()
		if p.Bits() < probe.BitLen() {
			probe = probe.Next() // the network address itself may be special (0.0.0.0)
		}
		routes, err := nl.RouteGet(probe.AsSlice())
		if err != nil || len(routes) == 0 {
			return device.InputErrorf("%s has no route to %s (%v): attach only changes the way traffic takes, the route must exist", t, p, err)
		}
		rt := routes[0]
		l := links[rt.LinkIndex]
		if l == nil {
			return device.InputErrorf("%s: the route to %s leaves by interface %d, which it does not list", t, p, rt.LinkIndex)
		}
		if l.Attrs().Flags&unix.IFF_LOOPBACK != 0 || rt.Type == unix.RTN_LOCAL {
			return device.InputErrorf("%s: %s is this namespace's own address, not a destination to put the device in front of", t, p)
		}
		src, ok := netip.AddrFromSlice(rt.Src)
		if !ok || !src.IsValid() {
			return device.InputErrorf("%s: the route to %s has no source address", t, p)
		}
		if name := l.Attrs().Name; !slices.Contains(f.Uplinks, name) {
			f.Uplinks = append(f.Uplinks, name)
		}
		if r.MTU == 0 || l.Attrs().MTU < r.MTU {
			r.MTU = l.Attrs().MTU
		}
		f.Routes = append(f.Routes, Route{Table: f.AppTable, Dst: p, Dev: r.App, Src: src.Unmap()})
	}
	// The namespace's own addresses inside a prefix stay local: thrown
	// out of the app table, they fall through to the rules after it.
	local, err := nl.RouteListFiltered(f.Family, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("%s: local routes: %w", t, err)
	}
	for _, rt := range local {
		d := prefixOf(rt.Dst)
		if !d.IsValid() {
			continue
		}
		for _, p := range prefixes {
			if p.Contains(d.Addr()) && d.Bits() >= p.Bits() {
				f.Routes = append(f.Routes, Route{Table: f.AppTable, Dst: d})
				break
			}
		}
	}
	for _, a := range r.Locals {
		if familyOf(a) == f.Family {
			f.Routes = append(f.Routes, Route{Table: f.WorldTable, Dst: netip.PrefixFrom(a, a.BitLen()), Dev: r.World})
		}
	}
	return r.planRules(nl, f, prefixes)
}

// placeRules finds room for k rules among the existing ones, just before
// the (first) rule that looks up the local table and after every rule that
// came before it, and returns the first preference. If the local rule is
// at 0 (the default) it is moved to after the k rules (f.LocalTo), which
// needs the preferences up to it free.
func (f *Family) placeRules(existing []netlink.Rule, k int) (int, error) {
	local, before, after := -1, -1, -1
	for _, ru := range existing {
		if ru.Table == unix.RT_TABLE_LOCAL && (local < 0 || ru.Priority < local) {
			local = ru.Priority
			f.LocalProtocol = ru.Protocol
		}
	}
	if local < 0 {
		return 0, fmt.Errorf("no %s rule looks up the local table; attach does not know where to put its rules", familyName(f.Family))
	}
	for _, ru := range existing {
		switch p := ru.Priority; {
		case p < local && p > before:
			before = p
		case p > local && (after < 0 || p < after):
			after = p
		}
	}
	switch {
	case local-before-1 >= k: // room just before the local rule
		f.LocalFrom, f.LocalTo = local, local
		return local - k, nil
	case before < 0 && (after < 0 || after > local+k+1): // move the local rule after ours
		f.LocalFrom, f.LocalTo = local, local+k+1
		return local + 1, nil
	}
	return 0, fmt.Errorf("no room for %d %s rules before the local rule (pref %d): the preferences around it are taken", k, familyName(f.Family), local)
}

// match is what one pair of rules selects: a protocol, and the port at
// the namespace's end and at the prefix's (0: any).
type match struct {
	proto     uint8
	own, peer uint16
}

// matches are what the rules select: each --port at either end over TCP
// and UDP; without --port, TCP, UDP and ICMP (ICMPv6).
//
// Never every protocol: the kernel also asks the rules things with no
// protocol, which only a rule without ipproto matches. arp_process()
// answers an ARP request only if the target address, looked up as a
// packet from the sender arriving on the uplink, is local: a reply rule
// for every protocol sends that lookup to the world table, and a selected
// host on the namespace's own link (another container on the bridge, a
// pod of the same node) goes unanswered once its neighbour entry expires.
// With arp_filter on, arp_filter() looks up the way back to the sender
// too, as a packet from lo.
func (r *Record) matches(family int) []match {
	if len(r.Ports) == 0 {
		icmp := uint8(unix.IPPROTO_ICMP)
		if family == unix.AF_INET6 {
			icmp = unix.IPPROTO_ICMPV6
		}
		return []match{{proto: unix.IPPROTO_TCP}, {proto: unix.IPPROTO_UDP}, {proto: icmp}}
	}
	var out []match
	for _, proto := range []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
		for _, p := range r.Ports {
			out = append(out, match{proto: proto, own: p}, match{proto: proto, peer: p})
		}
	}
	return out
}

func (m match) String() string {
	s := protoName(m.proto)
	if m.own != 0 {
		s += fmt.Sprintf(" port %d here", m.own)
	}
	if m.peer != 0 {
		s += fmt.Sprintf(" port %d there", m.peer)
	}
	return s
}

// steered reports whether packets of m from the prefixes are steered to
// the world interface. ICMPv6 is not: neighbor discovery from the prefix
// (an NA answering the kernel's own NS, a peer's NS or NUD probe) comes to
// the namespace's global address too; steered to the world interface it
// would be forwarded, its hop limit no longer 255, and dropped: the
// neighbor would never resolve and the namespace's processes would get
// "address unreachable". So ICMPv6 from the prefix is delivered as without
// attach.
func (m match) steered() bool { return m.proto != unix.IPPROTO_ICMPV6 }

// rules are attach's rules for one IP version, without preferences: per
// match, the replies from each prefix on each uplink to the world table,
// and the namespace's own packets to the app table.
func (r *Record) rules(f *Family, prefixes []netip.Prefix) []Rule {
	var rules []Rule
	for _, m := range r.matches(f.Family) {
		if m.steered() {
			for _, up := range f.Uplinks {
				for _, p := range prefixes {
					// A reply from the prefix: the ports reversed.
					rules = append(rules, Rule{Table: f.WorldTable, Iif: up, From: p, Proto: m.proto, Sport: m.peer, Dport: m.own})
				}
			}
		}
		rules = append(rules, Rule{Table: f.AppTable, Iif: "lo", Proto: m.proto, Sport: m.own, Dport: m.peer})
	}
	return rules
}

// planRules gives the rules their preferences: all of them before the
// local rule (replies to the namespace's addresses must reach the world
// table before the local table delivers them) and after every other rule
// that came before it, so no rule changes order against another. If the
// local rule is at 0, as it is by default, it moves to just after ours.
func (r *Record) planRules(nl *netlink.Handle, f *Family, prefixes []netip.Prefix) error {
	existing, err := nl.RuleList(f.Family)
	if err != nil {
		return fmt.Errorf("%s: rules: %w", r.Target, err)
	}
	rules := r.rules(f, prefixes)
	first, err := f.placeRules(existing, len(rules))
	if err != nil {
		return device.InputErrorf("%s: %w", r.Target, err)
	}
	for i := range rules {
		rules[i].Pref = first + i
	}
	f.Rules = rules
	return nil
}

// planSysctls lists the settings attach needs in the namespace, recording
// their values; those already right are left alone.
func (r *Record) planSysctls() error {
	want := map[string]string{"net/ipv4/ip_early_demux": "0"}
	var keys []string
	keys = append(keys, "net/ipv4/ip_early_demux", "net/ipv4/conf/all/rp_filter", "net/ipv6/conf/all/forwarding")
	for _, f := range r.Families {
		for _, up := range f.Uplinks {
			if f.Family == unix.AF_INET {
				keys = append(keys, "net/ipv4/conf/"+up+"/forwarding")
			} else {
				keys = append(keys, "net/ipv6/conf/"+up+"/force_forwarding")
			}
		}
	}
	vals, err := readSysctls(r.Target.Path, keys)
	if err != nil {
		return fmt.Errorf("%s: sysctls: %w", r.Target, err)
	}
	for _, f := range r.Families {
		if f.Family == unix.AF_INET && vals["net/ipv4/conf/all/rp_filter"] == "1" {
			return device.InputErrorf("%s: net.ipv4.conf.all.rp_filter is 1 (strict): the world interface receives the namespace's own packets to forward them, which strict reverse-path filtering drops; set it to 2 (loose, the Debian and Ubuntu default) or 0", r.Target)
		}
		for _, up := range f.Uplinks {
			switch {
			case f.Family == unix.AF_INET:
				want["net/ipv4/conf/"+up+"/forwarding"] = "1"
			case vals["net/ipv6/conf/all/forwarding"] == "1":
				// Forwarding everywhere already, as a pod's sysctls can set it
				// where its container may not write /proc/sys.
			case vals["net/ipv6/conf/"+up+"/force_forwarding"] != "":
				want["net/ipv6/conf/"+up+"/force_forwarding"] = "1"
			default:
				want["net/ipv6/conf/all/forwarding"] = "1" // a kernel before 6.17: no per-interface switch
			}
		}
	}
	for _, k := range keys {
		if w, ok := want[k]; ok && vals[k] != w && !slices.ContainsFunc(r.Sysctls, func(s Sysctl) bool { return s.Key == k }) {
			r.Sysctls = append(r.Sysctls, Sysctl{Key: k, Old: vals[k], New: w})
		}
	}
	return nil
}

// Describe says in a line what the record puts the device in front of.
func (r *Record) Describe() string {
	to := make([]string, len(r.To))
	for i, p := range r.To {
		to[i] = p.String()
	}
	s := fmt.Sprintf("%s, to %s", r.Target, strings.Join(to, ","))
	if len(r.Ports) > 0 {
		ps := make([]string, len(r.Ports))
		for i, p := range r.Ports {
			ps[i] = fmt.Sprint(p)
		}
		s += " port " + strings.Join(ps, ",")
	}
	return s
}
