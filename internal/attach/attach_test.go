package attach

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/testenv"
)

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"198.18.1.7/24, 2001:db8:1::3", "198.18.1.0/24", "10.0.0.1"})
	want := []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("2001:db8:1::3/128"), netip.MustParsePrefix("10.0.0.1/32")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ParsePrefixes = %v %v, want %v (masked, single addresses as /32 and /128, each once)", got, err, want)
	}
	for _, bad := range [][]string{{"198.18.1.300/24"}, {"server"}, {"fe80::1%eth0"}, {""}, nil} {
		if _, err := ParsePrefixes(bad); !device.IsInputError(err) {
			t.Errorf("ParsePrefixes(%q): %v, want an input error", bad, err)
		}
	}
}

func TestParsePorts(t *testing.T) {
	if got, err := ParsePorts([]string{"80, 443", "80"}); err != nil || !slices.Equal(got, []uint16{80, 443}) {
		t.Errorf("ParsePorts = %v %v", got, err)
	}
	for _, bad := range []string{"0", "65536", "http", "-1"} {
		if _, err := ParsePorts([]string{bad}); !device.IsInputError(err) {
			t.Errorf("ParsePorts(%q): %v, want an input error", bad, err)
		}
	}
}

func TestDefaultName(t *testing.T) {
	for _, c := range []struct {
		pid      int
		ns, want string
	}{{4242, "", "pid-4242"}, {0, "self", "self"}, {0, "blue", "blue"}, {0, "/var/run/netns/Blue", "blue"}, {0, "/proc/7/ns/net", "net"}, {0, "a_b", "attach"}} {
		if got := defaultName(c.pid, c.ns); got != c.want {
			t.Errorf("defaultName(%d, %q) = %q, want %q", c.pid, c.ns, got, c.want)
		}
	}
}

func rules(prefs map[int]int) []netlink.Rule { // pref -> table
	var out []netlink.Rule
	for p, table := range prefs {
		out = append(out, netlink.Rule{Priority: p, Table: table, Protocol: 2})
	}
	return out
}

// Attach's rules go just before the local rule and after everything that
// came before it; the local rule moves only from 0, and only where the
// preferences after it are free.
func TestPlaceRules(t *testing.T) {
	const local, main = unix.RT_TABLE_LOCAL, unix.RT_TABLE_MAIN
	for _, c := range []struct {
		name            string
		existing        map[int]int
		k               int
		first, from, to int
		err             string
	}{
		{"default: local at 0 moves after ours", map[int]int{0: local, 32766: main, 32767: 253}, 3, 1, 0, 4, ""},
		{"local moved by someone: room before it", map[int]int{10: 100, 100: local, 32766: main}, 3, 97, 100, 100, ""},
		{"no room before it", map[int]int{98: 100, 100: local, 32766: main}, 3, 0, 0, 0, "no room"},
		{"a rule right after local at 0", map[int]int{0: local, 2: 100, 32766: main}, 3, 0, 0, 0, "no room"},
		{"no local rule", map[int]int{32766: main}, 1, 0, 0, 0, "local table"},
	} {
		f := &Family{Family: unix.AF_INET}
		first, err := f.placeRules(rules(c.existing), c.k)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error saying %q", c.name, err, c.err)
			}
		case err != nil || first != c.first || f.LocalFrom != c.from || f.LocalTo != c.to:
			t.Errorf("%s: first %d, local %d -> %d (%v); want %d, %d -> %d", c.name, first, f.LocalFrom, f.LocalTo, err, c.first, c.from, c.to)
		case f.LocalProtocol != 2:
			t.Errorf("%s: the local rule's protocol %d is not kept", c.name, f.LocalProtocol)
		}
	}
}

// With --port, every rule selects TCP and UDP by the port at either end:
// the namespace's packets by their own ports, replies by theirs reversed.
func TestRules_WithPorts(t *testing.T) {
	r := &Record{Ports: []uint16{80}}
	f := &Family{Family: unix.AF_INET, AppTable: 64256, WorldTable: 64257, Uplinks: []string{"eth0"}}
	got := r.rules(f, []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")})
	want := []string{
		"0: iif eth0 from 198.18.1.0/24 ipproto tcp dport 80 lookup 64257", "0: iif lo ipproto tcp sport 80 lookup 64256",
		"0: iif eth0 from 198.18.1.0/24 ipproto tcp sport 80 lookup 64257", "0: iif lo ipproto tcp dport 80 lookup 64256",
		"0: iif eth0 from 198.18.1.0/24 ipproto udp dport 80 lookup 64257", "0: iif lo ipproto udp sport 80 lookup 64256",
		"0: iif eth0 from 198.18.1.0/24 ipproto udp sport 80 lookup 64257", "0: iif lo ipproto udp dport 80 lookup 64256",
	}
	if s := ruleStrings(got); !slices.Equal(s, want) {
		t.Errorf("rules with --port 80:\n%s\nwant\n%s", strings.Join(s, "\n"), strings.Join(want, "\n"))
	}
}

// Without --port, the rules select TCP, UDP and ICMP, never every
// protocol: a lookup without one (ARP's for the namespace's own address,
// arp_filter's for the way back) must fall through to the local rule. For
// IPv6, ICMPv6 from the prefixes is not steered (neighbor discovery).
func TestRules_EachNamesAProtocol(t *testing.T) {
	r := &Record{}
	for _, c := range []struct {
		family int
		prefix string
		want   []string
	}{
		{unix.AF_INET, "198.18.1.3/32", []string{
			"0: iif eth0 from 198.18.1.3/32 ipproto tcp lookup 64257", "0: iif lo ipproto tcp lookup 64256",
			"0: iif eth0 from 198.18.1.3/32 ipproto udp lookup 64257", "0: iif lo ipproto udp lookup 64256",
			"0: iif eth0 from 198.18.1.3/32 ipproto icmp lookup 64257", "0: iif lo ipproto icmp lookup 64256",
		}},
		{unix.AF_INET6, "2001:db8:1::3/128", []string{
			"0: iif eth0 from 2001:db8:1::3/128 ipproto tcp lookup 64257", "0: iif lo ipproto tcp lookup 64256",
			"0: iif eth0 from 2001:db8:1::3/128 ipproto udp lookup 64257", "0: iif lo ipproto udp lookup 64256",
			"0: iif lo ipproto ipv6-icmp lookup 64256",
		}},
	} {
		f := &Family{Family: c.family, AppTable: 64256, WorldTable: 64257, Uplinks: []string{"eth0"}}
		if s := ruleStrings(r.rules(f, []netip.Prefix{netip.MustParsePrefix(c.prefix)})); !slices.Equal(s, c.want) {
			t.Errorf("%s rules:\n%s\nwant\n%s", familyName(c.family), strings.Join(s, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

func ruleStrings(rules []Rule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.String()
	}
	return out
}

func TestResolver_LocalIsTheNamespacesAddresses(t *testing.T) {
	a := netip.MustParseAddr("198.18.1.2")
	res := Resolver(&Record{Locals: []netip.Addr{a}})
	if got, ok := res("local"); !ok || !slices.Equal(got, []netip.Addr{a}) {
		t.Errorf("local = %v %v", got, ok)
	}
	if _, ok := res("server"); ok {
		t.Error("a lab host name resolves under attach")
	}
}

// detach --all removes every attach, dead ones from their records, and
// leaves labs alone.
func TestDetachAll_LeavesLabsAlone(t *testing.T) {
	testenv.RequireNetAdmin(t) // detach needs CAP_NET_ADMIN
	old := device.RunDir
	device.RunDir = t.TempDir()
	t.Cleanup(func() { device.RunDir = old })
	gone := &Record{Target: Target{Path: "/proc/0/ns/net", Dev: 1, Ino: 1, Said: "a namespace that is gone"}}
	for name, kind := range map[string]device.Kind{"a-lab": device.KindLab, "an-attach": device.KindAttach} {
		st := &device.State{Name: name, Kind: kind}
		if kind == device.KindAttach {
			st.Encode(gone)
		}
		os.Mkdir(device.Dir(name), 0o700)
		if err := device.WriteState(st); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := DetachAll()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(device.Dir("an-attach")); err == nil {
		t.Errorf("detach --all left the dead attach: removed %v", removed)
	}
	if _, err := os.Stat(device.Dir("a-lab")); err != nil {
		t.Errorf("detach --all removed a lab: %v (removed %v)", err, removed)
	}
	if !strings.Contains(strings.Join(removed, "\n"), "is gone: nothing to undo") {
		t.Errorf("removed %v: want a word on the namespace that is gone", removed)
	}
}
