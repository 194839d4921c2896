package shell

import (
	"fmt"
	"net/netip"
)

// Every run takes a slot: a /30 of Net4 and a /64 of Net6, the host side
// first (.1, ::1), the command second (.2, ::2). Labs use 198.18.0.0/16
// inside their own namespaces; runs stay out of it, so a run started in a
// lab host never meets its own addresses.
var (
	Net4 = netip.MustParsePrefix("198.19.0.0/16")
	Net6 = netip.MustParsePrefix("2001:db8:fb::/48")
)

// Slots is how many runs may exist at once.
const Slots = 1 << 14 // Net4's /30s

// slot is a run's share of the addresses.
type slot int

func (s slot) v4(host byte) netip.Addr {
	a := Net4.Addr().As4()
	n := int(s)*4 + int(host)
	a[2], a[3] = byte(n>>8), byte(n)
	return netip.AddrFrom4(a)
}

func (s slot) v6(host byte) netip.Addr {
	a := Net6.Addr().As16()
	a[6], a[7] = byte(s>>8), byte(s)
	a[15] = host
	return netip.AddrFrom16(a)
}

// Gateway4 and Gateway6 are the host side's addresses: the command's
// next hop and its name server.
func (s slot) Gateway4() netip.Addr { return s.v4(1) }
func (s slot) Gateway6() netip.Addr { return s.v6(1) }

// Command4 and Command6 are the command's addresses.
func (s slot) Command4() netip.Addr { return s.v4(2) }
func (s slot) Command6() netip.Addr { return s.v6(2) }

// CommandPrefixes are the command's addresses as single-address prefixes:
// what the device routes to the command's port.
func (s slot) CommandPrefixes() []netip.Prefix {
	return []netip.Prefix{netip.PrefixFrom(s.Command4(), 32), netip.PrefixFrom(s.Command6(), 128)}
}

// prefixes are the slot's whole share, for overlap checks.
func (s slot) prefixes() []netip.Prefix {
	return []netip.Prefix{netip.PrefixFrom(s.v4(0), 30), netip.PrefixFrom(s.v6(0), 64)}
}

// HostInterface is the name of the device's port on the host side.
func (s slot) HostInterface() string { return fmt.Sprintf("fbxrun%d", int(s)) }

// DefaultName is the name of a run started without --name.
func (s slot) DefaultName() string { return fmt.Sprintf("run-%d", int(s)) }

// freeSlot returns the lowest slot that no other run holds and whose
// addresses overlap nothing the host side already has (its addresses and
// routes, default routes aside).
func freeSlot(taken map[slot]bool, inUse []netip.Prefix) (slot, error) {
	for s := slot(0); s < Slots; s++ {
		if !taken[s] && !overlaps(s.prefixes(), inUse) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("no free addresses for another run in %s and %s: %d runs exist, or this namespace routes those ranges elsewhere", Net4, Net6, len(taken))
}

func overlaps(a, b []netip.Prefix) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return true
			}
		}
	}
	return false
}
