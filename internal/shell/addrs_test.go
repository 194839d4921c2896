package shell

import (
	"net/netip"
	"testing"
)

func TestSlot_AddressesAreItsOwnAndInTheTestRanges(t *testing.T) {
	for _, c := range []struct {
		s                  slot
		gw4, cmd4, gw6, c6 string
		iface, name        string
	}{
		{0, "198.19.0.1", "198.19.0.2", "2001:db8:fb::1", "2001:db8:fb::2", "fbxrun0", "run-0"},
		{1, "198.19.0.5", "198.19.0.6", "2001:db8:fb:1::1", "2001:db8:fb:1::2", "fbxrun1", "run-1"},
		{64, "198.19.1.1", "198.19.1.2", "2001:db8:fb:40::1", "2001:db8:fb:40::2", "fbxrun64", "run-64"},
		{Slots - 1, "198.19.255.253", "198.19.255.254", "2001:db8:fb:3fff::1", "2001:db8:fb:3fff::2", "fbxrun16383", "run-16383"},
	} {
		got := []netip.Addr{c.s.Gateway4(), c.s.Command4(), c.s.Gateway6(), c.s.Command6()}
		for i, want := range []string{c.gw4, c.cmd4, c.gw6, c.c6} {
			if got[i] != netip.MustParseAddr(want) {
				t.Errorf("slot %d: address %d is %s, want %s", c.s, i, got[i], want)
			}
		}
		for _, a := range got {
			if !Net4.Contains(a) && !Net6.Contains(a) {
				t.Errorf("slot %d: %s is outside %s and %s", c.s, a, Net4, Net6)
			}
		}
		if c.s.HostInterface() != c.iface || len(c.s.HostInterface()) > 15 {
			t.Errorf("slot %d: interface %q, want %q (at most 15 bytes)", c.s, c.s.HostInterface(), c.iface)
		}
		if c.s.DefaultName() != c.name {
			t.Errorf("slot %d: name %q, want %q", c.s, c.s.DefaultName(), c.name)
		}
		want := []netip.Prefix{netip.MustParsePrefix(c.cmd4 + "/32"), netip.MustParsePrefix(c.c6 + "/128")}
		if p := c.s.CommandPrefixes(); p[0] != want[0] || p[1] != want[1] {
			t.Errorf("slot %d: command prefixes %v, want %v", c.s, p, want)
		}
	}
	// Neighbouring slots never share an address.
	if overlaps(slot(7).prefixes(), slot(8).prefixes()) {
		t.Error("slots 7 and 8 overlap")
	}
}

func TestFreeSlot_SkipsTakenSlotsAndTheHostsPrefixes(t *testing.T) {
	s, err := freeSlot(nil, nil)
	if err != nil || s != 0 {
		t.Fatalf("nothing taken: slot %d, %v", s, err)
	}
	taken := map[slot]bool{0: true, 1: true}
	if s, _ := freeSlot(taken, nil); s != 2 {
		t.Errorf("0 and 1 taken: slot %d, want 2", s)
	}
	// The host routes slot 2's IPv4 /30 and slot 3's IPv6 /64 elsewhere.
	inUse := []netip.Prefix{netip.MustParsePrefix("198.19.0.8/29"), netip.MustParsePrefix("2001:db8:fb:4::/64")}
	if s, _ := freeSlot(taken, inUse); s != 5 {
		t.Errorf("slot %d, want 5 (2, 3 in a routed /29, 4 by its IPv6)", s)
	}
	if _, err := freeSlot(nil, []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}); err == nil {
		t.Error("the whole range routed elsewhere: a slot was found")
	}
}

func TestBeyond_EveryDestinationButLinkScopedOnes(t *testing.T) {
	in := func(a string) bool {
		for _, p := range beyond {
			if p.Contains(netip.MustParseAddr(a)) {
				return true
			}
		}
		return false
	}
	for _, a := range []string{"0.0.0.0", "198.18.77.2", "255.255.255.255", "::", "::1", "64:ff9b::c000:201", "2001:db8:77::2", "2a00::1", "fd00::1", "fe7f::1", "fec0::1", "feff::1", "fbff:ffff::1"} {
		if !in(a) {
			t.Errorf("%s is not beyond the host side's port", a)
		}
	}
	for _, a := range []string{"fe80::1", "febf:ffff::1", "ff02::16", "ff0e::1", "ffff::1"} {
		if in(a) {
			t.Errorf("link-scoped %s is routed to the host side", a)
		}
	}
}
