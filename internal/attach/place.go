package attach

import (
	"fmt"
	"log"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
	"github.com/faultbox/faultbox/tun"
)

// placement puts the device in front of the record's prefixes inside the
// attached namespace (see the package comment for how).
type placement struct {
	rec *Record
	ns  vnetns.NsHandle // held for the device's life: the namespace cannot go
	// path reaches the namespace from any thread of this process ("" if
	// it is the process's own: no setns needed).
	path string
	nl   *netlink.Handle
}

// Placement is the device.PlaceFunc of attach.
func Placement(st *device.State) (device.Placement, error) {
	rec, err := RecordOf(st)
	if err != nil {
		return nil, err
	}
	return &placement{rec: rec, ns: vnetns.None()}, nil
}

// RecordOf returns the attach record a state holds.
func RecordOf(st *device.State) (*Record, error) {
	var r Record
	if err := st.DecodeAs(device.KindAttach, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (p *placement) Place(lg *log.Logger) ([]device.Port, error) {
	r := p.rec
	if r.Target.Path != "" {
		h, err := vnetns.GetFromPath(r.Target.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Target, err)
		}
		p.ns = h
		p.path = fmt.Sprintf("/proc/self/fd/%d", int(h))
	}
	if !r.Target.Same(pathOrSelf(p.path)) {
		return nil, fmt.Errorf("%s: %s is no longer the namespace attach inspected", r.Target, r.Target.Path)
	}
	nl, err := netns.Handle(p.path)
	if err != nil {
		return nil, err
	}
	p.nl = nl
	var ports []device.Port
	for _, name := range []string{r.App, r.World} {
		dev, err := tun.Open(tun.Options{Name: name, NetNS: p.path, MTU: r.MTU, Offload: true, BeforeUp: p.quiet})
		if err != nil {
			return ports, fmt.Errorf("%s: %w", r.Target, err)
		}
		pfx := r.To
		if name == r.App {
			pfx = nil
			for _, a := range r.Locals {
				pfx = append(pfx, netip.PrefixFrom(a, a.BitLen()))
			}
		}
		ports = append(ports, device.Port{Name: map[string]string{r.App: "app", r.World: "world"}[name], Namespace: r.Target.Said, Dev: dev, Prefixes: pfx})
	}
	if err := p.apply(lg); err != nil {
		return ports, err
	}
	return ports, nil
}

func pathOrSelf(path string) string {
	if path == "" {
		return "/proc/thread-self/ns/net"
	}
	return path
}

// quiet sets up one of the device's own interfaces before it comes up
// (tun.Options.BeforeUp, on a thread inside the namespace): the world side
// takes the namespace's own packets in to forward them (IPv4: forwarding,
// accept_local, no reverse-path filter; IPv6: force_forwarding), and
// neither side gets an IPv6 link-local address or solicits routers, so the
// kernel's own chatter never reaches the device.
func (p *placement) quiet(name string) error {
	settings := [][2]string{{"net/ipv6/conf/" + name + "/addr_gen_mode", "1"}, {"net/ipv6/conf/" + name + "/router_solicitations", "0"}}
	if name == p.rec.World {
		settings = append(settings,
			[2]string{"net/ipv4/conf/" + name + "/forwarding", "1"},
			[2]string{"net/ipv4/conf/" + name + "/accept_local", "1"},
			[2]string{"net/ipv4/conf/" + name + "/rp_filter", "0"})
		// Not where forwarding is on everywhere (a pod's sysctls).
		ff := "net/ipv6/conf/" + name + "/force_forwarding"
		if v, _ := readSysctls("", []string{ff, "net/ipv6/conf/all/forwarding"}); v[ff] != "" && v["net/ipv6/conf/all/forwarding"] != "1" {
			settings = append(settings, [2]string{ff, "1"})
		}
	}
	for _, s := range settings {
		if err := writeSysctl("", s[0], s[1]); err != nil { // "": this thread is in the namespace
			return err
		}
	}
	return nil
}

// apply makes the record's changes: sysctls, routes, rules, and last the
// local rule's move, after which replies take the world table.
func (p *placement) apply(lg *log.Logger) error {
	r, nl := p.rec, p.nl
	for _, s := range r.Sysctls {
		if err := writeSysctl(p.path, s.Key, s.New); err != nil {
			return fmt.Errorf("%s: %w", r.Target, err)
		}
		lg.Printf("sysctl %s (was %s)", s, s.Old)
	}
	for _, f := range r.Families {
		for _, rt := range f.Routes {
			nr := &netlink.Route{Table: rt.Table, Dst: ipNet(rt.Dst), Family: f.Family}
			if rt.Dev == "" {
				nr.Type = unix.RTN_THROW
			} else {
				link, err := nl.LinkByName(rt.Dev)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", r.Target, rt.Dev, err)
				}
				nr.LinkIndex, nr.Scope = link.Attrs().Index, netlink.SCOPE_LINK
				if rt.Src.IsValid() {
					nr.Src = rt.Src.AsSlice()
				}
			}
			if err := nl.RouteAdd(nr); err != nil {
				return fmt.Errorf("%s: route %s dev %q table %d: %w", r.Target, rt.Dst, rt.Dev, rt.Table, err)
			}
		}
		for _, ru := range f.Rules {
			if err := nl.RuleAdd(ru.netlink(f.Family)); err != nil {
				return fmt.Errorf("%s: %s rule %s: %w", r.Target, familyName(f.Family), ru, err)
			}
		}
		if f.LocalTo != f.LocalFrom {
			if err := nl.RuleAdd(localRule(f.Family, f.LocalTo, f.LocalProtocol)); err != nil {
				return fmt.Errorf("%s: %s local rule at %d: %w", r.Target, familyName(f.Family), f.LocalTo, err)
			}
			if err := nl.RuleDel(localRule(f.Family, f.LocalFrom, 0)); err != nil {
				return fmt.Errorf("%s: %s local rule at %d: %w", r.Target, familyName(f.Family), f.LocalFrom, err)
			}
		}
		lg.Printf("%s: %d rules from pref %d, tables %d and %d, local rule at %d (was %d), uplinks %v",
			familyName(f.Family), len(f.Rules), f.Rules[0].Pref, f.AppTable, f.WorldTable, f.LocalTo, f.LocalFrom, f.Uplinks)
	}
	return nil
}

// Check asks the kernel which way traffic now takes, without sending any:
// from the namespace to each prefix through the app interface, and a reply
// from the prefix arriving on its uplink through the world interface, for
// every protocol and port the rules select.
func (p *placement) Check(lg *log.Logger) error {
	r := p.rec
	return netns.Do(p.path, func() error {
		for _, f := range r.Families {
			for _, rt := range f.Routes {
				if rt.Table != f.AppTable || rt.Dev == "" {
					continue
				}
				probe := rt.Dst.Addr()
				if rt.Dst.Bits() < probe.BitLen() {
					probe = probe.Next()
				}
				for _, m := range r.matches(f.Family) {
					what := fmt.Sprintf("to %s (%s)", rt.Dst, m)
					if err := p.expect(routeQuery{dst: probe, proto: m.proto, sport: m.own, dport: m.peer}, r.App, what); err != nil {
						return err
					}
					if !m.steered() {
						continue
					}
					for _, up := range f.Uplinks {
						link, err := p.nl.LinkByName(up)
						if err != nil {
							return fmt.Errorf("%s: %s: %w", r.Target, up, err)
						}
						q := routeQuery{dst: rt.Src, src: probe, iif: link.Attrs().Index, proto: m.proto, sport: m.peer, dport: m.own}
						if err := p.expect(q, r.World, fmt.Sprintf("from %s on %s (%s)", rt.Dst, up, m)); err != nil {
							return err
						}
					}
				}
			}
		}
		lg.Printf("routes checked: to %v through %s, back through %s", r.To, r.App, r.World)
		return nil
	})
}

// expect checks that the kernel routes q out of interface want.
func (p *placement) expect(q routeQuery, want, what string) error {
	oif, err := q.get()
	if err != nil {
		return fmt.Errorf("%s: traffic %s: no route (%v)", p.rec.Target, what, err)
	}
	link, err := p.nl.LinkByIndex(oif)
	if err != nil {
		return fmt.Errorf("%s: traffic %s: interface %d: %w", p.rec.Target, what, oif, err)
	}
	if got := link.Attrs().Name; got != want {
		return fmt.Errorf("%s: traffic %s takes %s, not %s", p.rec.Target, what, got, want)
	}
	return nil
}

// Resolver resolves "local", the namespace's own addresses; lab host
// names mean nothing here.
func (p *placement) Resolver() behaviors.Resolver { return Resolver(p.rec) }

// Resolver resolves the names a profile may use under attach: "local" is
// the attached namespace's own addresses.
func Resolver(r *Record) behaviors.Resolver {
	return func(name string) ([]netip.Addr, bool) {
		if name == "local" {
			return slices.Clone(r.Locals), true
		}
		return nil, false
	}
}

func (p *placement) Describe() string { return p.rec.Describe() }

// Remove undoes everything the record lists; the device's interfaces are
// gone by now, and their routes with them.
func (p *placement) Remove(lg *log.Logger) {
	if p.nl != nil {
		for _, err := range restore(p.rec, p.path, p.nl) {
			lg.Printf("detach: %v", err)
		}
		p.nl.Close()
		lg.Printf("%s restored", p.rec.Target)
	}
	if p.ns.IsOpen() {
		p.ns.Close()
	}
}
