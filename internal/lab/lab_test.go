package lab

import (
	"bufio"
	"bytes"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/profiles"
)

func addrsOf(t *testing.T, hosts []Host) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, h := range hosts {
		m[h.Name] = h.IPv4.String() + " " + h.IPv6.String() + " " + h.Namespace
	}
	return m
}

func TestPlan_WellKnownHostsKeepTheirAddressesInAnyOrder(t *testing.T) {
	hosts, err := Plan("x", []string{"server", "web", "lb", "client", "db"})
	if err != nil {
		t.Fatal(err)
	}
	got := addrsOf(t, hosts)
	want := map[string]string{
		"client": "198.18.0.1 2001:db8::1 fbx-x-client",
		"server": "198.18.0.2 2001:db8::2 fbx-x-server",
		"lb":     "198.18.0.3 2001:db8::3 fbx-x-lb",
		"web":    "198.18.0.10 2001:db8::a fbx-x-web",
		"db":     "198.18.0.11 2001:db8::b fbx-x-db",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %q, want %q", name, got[name], w)
		}
	}
	var order []string
	for _, h := range hosts {
		order = append(order, h.Name)
		if !Net4.Contains(h.IPv4) || !Net6.Contains(h.IPv6) {
			t.Errorf("%s: %s %s outside %s %s", h.Name, h.IPv4, h.IPv6, Net4, Net6)
		}
		p := h.Prefixes()
		if len(p) != 2 || p[0] != netip.PrefixFrom(h.IPv4, 32) || p[1] != netip.PrefixFrom(h.IPv6, 128) {
			t.Errorf("%s: prefixes %v", h.Name, p)
		}
	}
	if strings.Join(order, ",") != "server,web,lb,client,db" {
		t.Errorf("order %v, want as given", order)
	}
}

func TestPlan_Refuses(t *testing.T) {
	many := make([]string, MaxHosts+1)
	for i := range many {
		many[i] = "h" + string(rune('a'+i))
	}
	for _, c := range []struct {
		lab   string
		hosts []string
		want  string
	}{
		{"x", []string{"client"}, "2 to 16 hosts"},
		{"x", nil, "2 to 16 hosts"},
		{"x", many, "2 to 16 hosts"},
		{"x", []string{"client", "client"}, "listed twice"},
		{"x", []string{"client", "Server"}, `host name "Server"`},
		{"x", []string{"client", "1server"}, `host name "1server"`},
		{"x", []string{"client", "web-1"}, `host name "web-1"`},
		{"x", []string{"client", "abcdefghijk"}, `host name "abcdefghijk"`},
		{"X", []string{"client", "server"}, `name "X"`},
	} {
		_, err := Plan(c.lab, c.hosts)
		if err == nil || !strings.Contains(err.Error(), c.want) || !device.IsInputError(err) {
			t.Errorf("Plan(%q, %v) = %v, want an input error containing %q", c.lab, c.hosts, err, c.want)
		}
	}
}

func TestHostAddrs(t *testing.T) {
	v4, v6, ok := HostAddrs("lb")
	if !ok || v4.String() != "198.18.0.3" || v6.String() != "2001:db8::3" {
		t.Errorf("HostAddrs(lb) = %s %s %v", v4, v6, ok)
	}
	if _, _, ok := HostAddrs("web"); ok {
		t.Error("HostAddrs(web): ok for a host whose address depends on the lab")
	}
	// The profiles package resolves the same names to the same addresses.
	for _, name := range []string{"client", "server", "lb"} {
		v4, v6, _ := HostAddrs(name)
		got, ok := profiles.DefaultResolver(name)
		if !ok || !slices.Equal(got, []netip.Addr{v4, v6}) {
			t.Errorf("profiles.DefaultResolver(%s) = %v, lab plan %s %s", name, got, v4, v6)
		}
	}
}

func TestResolver(t *testing.T) {
	hosts, err := Plan("x", []string{"client", "web"})
	if err != nil {
		t.Fatal(err)
	}
	r := Resolver(hosts)
	for name, want := range map[string]string{
		"web":    "198.18.0.10 2001:db8::a",
		"client": "198.18.0.1 2001:db8::1",
		"lb":     "198.18.0.3 2001:db8::3", // not in this lab: still the fixed address
	} {
		got, ok := r(name)
		if !ok || strings.Join(addrStrings(got), " ") != want {
			t.Errorf("resolve %s = %v %v, want %s", name, got, ok, want)
		}
	}
	if got, ok := r("nobody"); ok {
		t.Errorf("resolve nobody = %v, want not found", got)
	}
	// A match in a profile compiles against the lab's names.
	m, err := behaviors.MatchSpec{From: []string{"web"}, To: []string{"client"}}.Compile(r)
	if err != nil || len(m.From) != 2 || m.From[0] != netip.MustParsePrefix("198.18.0.10/32") {
		t.Errorf("compile match from web: %+v %v", m, err)
	}
}

func addrStrings(a []netip.Addr) []string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return s
}

func TestNamespaceOf_TellsLabsWithSharedPrefixesApart(t *testing.T) {
	for _, c := range []struct {
		lab, ns string
		want    bool
	}{
		{"a", "fbx-a-client", true},
		{"a", "fbx-a-b-client", false}, // lab a-b's
		{"a-b", "fbx-a-b-client", true},
		{"a-b", "fbx-a-client", false},
		{"t", "fbx-t-tun-0a1b2c", false}, // a testenv namespace
		{"a", "fbx-a-", false},
		{"a", "fbx-ab-client", false},
		{"default", Namespace("default", "server"), true},
	} {
		if got := namespaceOf(c.lab, c.ns); got != c.want {
			t.Errorf("namespaceOf(%q, %q) = %v, want %v", c.lab, c.ns, got, c.want)
		}
	}
}

func TestHostsFile_EveryHostResolvesToBothAddresses(t *testing.T) {
	hosts, err := Plan("x", []string{"client", "lb", "server", "db"})
	if err != nil {
		t.Fatal(err)
	}
	data := HostsFile("x", hosts)
	// Read it as the resolver does: address, then names; # starts a comment.
	names := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if _, err := netip.ParseAddr(f[0]); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		for _, n := range f[1:] {
			names[n] = append(names[n], f[0])
		}
	}
	for _, h := range hosts {
		if got := names[h.Name]; !slices.Equal(got, []string{h.IPv4.String(), h.IPv6.String()}) {
			t.Errorf("%s resolves to %v, want %s and %s", h.Name, got, h.IPv4, h.IPv6)
		}
	}
	if got := names["localhost"]; !slices.Equal(got, []string{"127.0.0.1", "::1"}) {
		t.Errorf("localhost resolves to %v", got)
	}
	if hostsFilePath("fbx-x-client") != filepath.Join(NetnsEtc, "fbx-x-client", "hosts") {
		t.Errorf("hosts file path %s", hostsFilePath("fbx-x-client"))
	}
}

func TestLeftoverNamespaces_AllFbxAndNothingElse(t *testing.T) {
	// Namespaces, then /etc/netns entries, as knownNamespaces lists them.
	got := leftoverNamespaces([]string{"fbx-a-client", "docker", "fbx-t-tun-0a0b0c", "fbxnot", "fbx-a-client", "fbx-b-server", "cni"})
	if !slices.Equal(got, []string{"fbx-a-client", "fbx-b-server", "fbx-t-tun-0a0b0c"}) {
		t.Errorf("leftoverNamespaces = %v", got)
	}
}
