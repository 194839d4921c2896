// Package lab builds faultbox's one-command lab: one network namespace per
// host, each with a TUN port ("fbx0") as its only interface, all wired
// through one device (package device) that runs the engine between them.
//
// A lab named L with hosts client and server is:
//
//	namespaces     fbx-L-client, fbx-L-server (lo up, fbx0 opened by the device)
//	addresses      client 198.18.0.1 2001:db8::1, server .2 ::2, lb .3 ::3,
//	               any other host .10 ::a, .11 ::b ...
//	name service   /etc/netns/fbx-L-HOST/hosts (ip netns exec mounts it)
//	runtime dir    /run/faultbox/L/ (the device's, kind "lab")
//
// `lab up` creates the namespaces and starts the device process, whose
// Placement (place.go) opens and addresses the ports; `lab down` removes
// everything, also after the device was killed with SIGKILL.
package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/profiles"
)

// DefaultName is the lab a command acts on without --name.
const DefaultName = "default"

// DefaultHosts are the hosts of a lab without --hosts.
var DefaultHosts = []string{"client", "server"}

// HostInterface is the name of every host's TUN interface inside its
// namespace: the host's port on the device.
const HostInterface = "fbx0"

// Limits of a lab.
const (
	MaxHosts = 16
	MinMTU   = 1280 // the IPv6 minimum: every host has an IPv6 address
	MaxMTU   = 65535
)

// Prefixes every lab address comes from; the routes in every host.
var (
	Net4 = netip.MustParsePrefix("198.18.0.0/15")
	Net6 = netip.MustParsePrefix("2001:db8::/32")
)

// NetnsEtc is where ip netns exec finds per-namespace /etc files.
var NetnsEtc = "/etc/netns"

// NSPrefix starts the name of every namespace faultbox (and its tests)
// creates; `lab down --all` removes every namespace so named.
const NSPrefix = "fbx-"

var hostRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// UniqueName is prefix and 6 random hex digits: a lab name that another
// run picks only by a 1 in 16.7 M chance, for tools and tests that start
// labs of their own.
func UniqueName(prefix string) string {
	var b [3]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return prefix + hex.EncodeToString(b[:])
}

// Namespace is the network namespace of host in lab.
func Namespace(lab, host string) string { return NSPrefix + lab + "-" + host }

// namespaceOf reports whether ns is a namespace of lab (of any host), telling
// labs apart whose names share a prefix: host names have no '-', so
// fbx-a-b-client belongs to lab a-b, never to lab a.
func namespaceOf(lab, ns string) bool {
	rest, ok := strings.CutPrefix(ns, NSPrefix+lab+"-")
	return ok && hostRE.MatchString(rest)
}

// Host is one lab host and its addresses.
type Host struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"`
	IPv4      netip.Addr `json:"ipv4"`
	IPv6      netip.Addr `json:"ipv6"`
}

// Prefixes are the host's addresses as single-address prefixes: what the
// engine routes to its port.
func (h Host) Prefixes() []netip.Prefix {
	return []netip.Prefix{netip.PrefixFrom(h.IPv4, 32), netip.PrefixFrom(h.IPv6, 128)}
}

// wellKnown hosts have fixed addresses in every lab, whatever else it has.
var wellKnown = map[string]byte{"client": 1, "server": 2, "lb": 3}

// firstOther is the last byte of the first host that is not well known.
const firstOther = 10

// HostAddrs returns the addresses of a well-known host (client, server,
// lb), the same in every lab.
func HostAddrs(name string) (v4, v6 netip.Addr, ok bool) {
	n, ok := wellKnown[name]
	if !ok {
		return netip.Addr{}, netip.Addr{}, false
	}
	v4, v6 = addrs(n)
	return v4, v6, true
}

func addrs(n byte) (v4, v6 netip.Addr) {
	v6b := Net6.Addr().As16()
	v6b[15] = n
	return netip.AddrFrom4([4]byte{198, 18, 0, n}), netip.AddrFrom16(v6b)
}

// ParseHosts splits a --hosts value ("client,server,lb").
func ParseHosts(s string) []string {
	var out []string
	for _, h := range strings.Split(s, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// Plan checks the host names of lab and gives each its namespace and
// addresses: client, server and lb their fixed ones, any other host the
// next of .10/::a, .11/::b ... in the order given.
func Plan(lab string, names []string) ([]Host, error) {
	if err := device.CheckName(lab); err != nil {
		return nil, err
	}
	if len(names) < 2 || len(names) > MaxHosts {
		return nil, device.InputErrorf("hosts %q: a lab has 2 to %d hosts (e.g. client,server or client,lb,server)", strings.Join(names, ","), MaxHosts)
	}
	hosts := make([]Host, 0, len(names))
	next := byte(firstOther)
	for i, name := range names {
		if !hostRE.MatchString(name) {
			return nil, device.InputErrorf("host name %q: want 1-10 lowercase letters or digits, starting with a letter", name)
		}
		if slices.Contains(names[:i], name) {
			return nil, device.InputErrorf("host %q is listed twice", name)
		}
		n, ok := wellKnown[name]
		if !ok {
			n = next
			next++
		}
		h := Host{Name: name, Namespace: Namespace(lab, name)}
		h.IPv4, h.IPv6 = addrs(n)
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// Resolver resolves the names in a profile's matches: the lab's hosts, and
// client, server and lb (the same in every lab) even where the lab lacks
// them, so that one profile fits labs of any shape.
func Resolver(hosts []Host) behaviors.Resolver {
	return func(name string) ([]netip.Addr, bool) {
		for _, h := range hosts {
			if h.Name == name {
				return []netip.Addr{h.IPv4, h.IPv6}, true
			}
		}
		return profiles.DefaultResolver(name)
	}
}

// HostsFile is the /etc/hosts every host of the lab sees: localhost, and
// every host's name with both its addresses.
func HostsFile(lab string, hosts []Host) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# faultbox lab %s; removed by `faultbox lab down --name %s`\n", lab, lab)
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "%s\t%s\n", h.IPv4, h.Name)
	}
	for _, h := range hosts {
		fmt.Fprintf(&b, "%s\t%s\n", h.IPv6, h.Name)
	}
	return []byte(b.String())
}

// hostsFilePath is where ip netns exec finds ns's /etc/hosts.
func hostsFilePath(ns string) string { return filepath.Join(NetnsEtc, ns, "hosts") }
