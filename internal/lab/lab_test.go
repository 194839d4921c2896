package lab

import (
	"bufio"
	"bytes"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/profiles"
	"github.com/faultbox/faultbox/tun"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"default", "a", "0", "web-1", "t1a2b3c", "abcdefghijklmnop"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v, want ok", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "A", "web_1", "a.b", "abcdefghijklmnopq", "a/b", "a b", "ä"} {
		err := CheckName(bad)
		if err == nil || !IsInputError(err) || !strings.Contains(err.Error(), "lab name") {
			t.Errorf("CheckName(%q) = %v, want an input error about the lab name", bad, err)
		}
	}
}

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
		{"X", []string{"client", "server"}, "lab name"},
	} {
		_, err := Plan(c.lab, c.hosts)
		if err == nil || !strings.Contains(err.Error(), c.want) || !IsInputError(err) {
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

// withRunDir points the runtime directory at a temporary one.
func withRunDir(t *testing.T) {
	t.Helper()
	old := RunDir
	RunDir = t.TempDir()
	t.Cleanup(func() { RunDir = old })
}

func TestState_RoundTripIsAtomicAndPrivate(t *testing.T) {
	withRunDir(t)
	hosts, _ := Plan("x", DefaultHosts)
	self, err := ProcOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	st := &State{Name: "x", Hosts: hosts, Profile: "/tmp/p.yaml", Seed: 1<<63 + 5, Capture: "/tmp/c.pcapng", MTU: 9000,
		Daemon: self, Created: time.Now().UTC().Truncate(time.Second)}
	if err := os.Mkdir(Dir("x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(st); err != nil {
		t.Fatal(err)
	}
	st.Seed = 7 // a rewrite replaces the file
	if err := WriteState(st); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState("x")
	if err != nil {
		t.Fatal(err)
	}
	if got.Seed != 7 || got.MTU != 9000 || got.Profile != st.Profile || got.Capture != st.Capture ||
		got.Daemon != self || !got.Created.Equal(st.Created) || len(got.Hosts) != 2 || got.Hosts[1] != hosts[1] {
		t.Errorf("read back %+v, want %+v", got, st)
	}
	if !got.Daemon.Alive() {
		t.Error("the recorded process (this test) is not alive")
	}
	ents, _ := os.ReadDir(Dir("x"))
	if len(ents) != 1 || ents[0].Name() != "state.json" {
		t.Errorf("runtime dir holds %v, want only state.json", ents)
	}
	fi, err := os.Stat(statePath("x"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state.json mode %v %v, want 0600", fi.Mode(), err)
	}
	if _, err := ReadState("other"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadState of a lab without state: %v, want not exist", err)
	}
	os.WriteFile(statePath("x"), []byte("{"), 0o600)
	if _, err := ReadState("x"); err == nil || !strings.Contains(err.Error(), "state.json") {
		t.Errorf("damaged state.json: %v", err)
	}
	names, err := labs()
	if err != nil || !slices.Equal(names, []string{"x"}) {
		t.Errorf("labs() = %v %v", names, err)
	}
}

func TestProc_ReusedOrDeadPidIsNotAlive(t *testing.T) {
	self, err := ProcOf(os.Getpid())
	if err != nil || self.Start == 0 {
		t.Fatalf("ProcOf(self) = %+v, %v", self, err)
	}
	if !self.Alive() {
		t.Error("this process is not alive")
	}
	reused := Proc{PID: self.PID, Start: self.Start + 1}
	if reused.Alive() {
		t.Error("a pid with another start time counts as alive")
	}
	if err := reused.Signal(0); err == nil {
		t.Error("Signal reached a process with another start time")
	}
	if (Proc{}).Alive() {
		t.Error("the zero Proc is alive")
	}

	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child, err := ProcOf(cmd.Process.Pid)
	if err != nil || !child.Alive() {
		t.Fatalf("child %+v alive=%v err=%v", child, child.Alive(), err)
	}
	if err := child.Signal(9); err != nil {
		t.Fatal(err)
	}
	// Not yet reaped, the child is a zombie: dead all the same.
	if !child.WaitGone(2 * time.Second) {
		t.Error("a killed child (a zombie) still counts as alive")
	}
	cmd.Wait()
	if child.Alive() {
		t.Error("a reaped child counts as alive")
	}
}

func TestParseNetnsList(t *testing.T) {
	out := "fbx-a-server (id: 3)\nfbx-a-client\n\nother (id: 0)\n"
	if got := parseNetnsList([]byte(out)); !slices.Equal(got, []string{"fbx-a-server", "fbx-a-client", "other"}) {
		t.Errorf("parseNetnsList = %v", got)
	}
}

func TestLeftoverNamespaces_AllFbxAndNothingElse(t *testing.T) {
	// Namespaces, then /etc/netns entries, as knownNamespaces lists them.
	got := leftoverNamespaces([]string{"fbx-a-client", "docker", "fbx-t-tun-0a0b0c", "fbxnot", "fbx-a-client", "fbx-b-server", "cni"})
	if !slices.Equal(got, []string{"fbx-a-client", "fbx-b-server", "fbx-t-tun-0a0b0c"}) {
		t.Errorf("leftoverNamespaces = %v", got)
	}
}

func TestWriteStatus_ShowsHostsCountersAndBehaviors(t *testing.T) {
	hosts, _ := Plan("x", DefaultHosts)
	st := &Status{Lab: "x", PID: 4242, UptimeSeconds: 83, Hosts: hosts, Source: "/tmp/p.yaml", MTU: 1500,
		Capture: "/tmp/c.pcapng", CapturePackets: 99,
		Status: engine.Status{
			Profile: "gprs", Seed: 42, Queued: 3,
			Counters:  engine.Counters{In: 1001, Out: 990, Dropped: 11, Delayed: 500, NoRoute: 7},
			Flows:     flow.Counters{Created: 12, Active: 2, Capacity: 1024},
			FlowState: map[string]int{"established": 2, "closed": 10},
			Ports: []engine.PortStatus{
				{Name: "client", Device: "fbx0", Offloads: true, Stats: tun.PortStats{ReadPackets: 500, WritePackets: 490, GSOPackets: 17}},
				{Name: "server", Device: "fbx0", Offloads: false, Stats: tun.PortStats{ReadPackets: 501, WriteDrops: 5, QueueDrops: 8}},
			},
			Behaviors: []behaviors.EntryStatus{
				{Type: "loss", Match: "downstream", Counters: behaviors.EntryCounters{Matched: 300, Dropped: 11}, Extra: map[string]uint64{"bursts": 4, "a": 1}},
			},
		},
	}
	var b strings.Builder
	if err := WriteStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"x (device pid 4242, up 1m23s, mtu 1500)", "gprs (seed 42, from /tmp/p.yaml)", "/tmp/c.pcapng (99 packets)",
		"198.18.0.1", "2001:db8::2", "fbx-x-server", "in 1001", "out 990", "dropped 11", "queued 3", "no-route 7",
		"active 2/1024", "created 12", "closed 10, established 2", "loss", "downstream", "a=1 bursts=4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(out, "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 5 && f[0] == "client" && (f[5] != "on" || f[6] != "500" || f[10] != "17") {
			t.Errorf("client row %q: want offload on, 500 read, 17 gso", l)
		}
		if len(f) > 5 && f[0] == "server" && (f[5] != "off" || f[11] != "8" || f[12] != "5") {
			t.Errorf("server row %q: want offload off, 8 queue drops, 5 drops", l)
		}
	}
	if !strings.Contains(out, "warning: the device lost 8 packets that no behavior dropped") {
		t.Errorf("status does not warn of the queue drops:\n%s", out)
	}
	st.Ports[1].Stats.QueueDrops = 0
	b.Reset()
	if err := WriteStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "warning") {
		t.Errorf("a warning without queue drops:\n%s", b.String())
	}
}

func TestIsInputError(t *testing.T) {
	if !IsInputError(inputErrorf("x")) || !IsInputError(&profiles.Error{File: "f", Err: errors.New("bad")}) {
		t.Error("input errors not recognised")
	}
	if IsInputError(errors.New("ip netns add: permission denied")) {
		t.Error("a system error counts as input error")
	}
	if !errors.Is(&InputError{&inUseError{"x"}}, ErrInUse) {
		t.Error("in-use error does not match ErrInUse")
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]string{"": "", "1": "1", " 3,1 ": "1,3", "2-4,3": "2,3,4", "0-0": "0"} {
		got, err := ParseCPUs(in)
		if err != nil || FormatCPUs(got) != want {
			t.Errorf("ParseCPUs(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"x", "-1", "3-1", "1,", "1-", "5000"} {
		if _, err := ParseCPUs(in); !IsInputError(err) {
			t.Errorf("ParseCPUs(%q): %v, want an input error", in, err)
		}
	}
}

// Without CPUs of its own the device may poll up to SharedBusyPoll; with
// them, up to 1s.
func TestCheckBusyPoll_SharedCPUsPollBriefly(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		cpus []int
		want string // "": accepted; else in the input error
	}{
		{0, nil, ""},
		{20 * time.Microsecond, nil, ""},
		{SharedBusyPoll, nil, ""},
		{SharedBusyPoll + time.Nanosecond, nil, "--cpus, or poll at most 100µs"},
		{time.Millisecond, nil, "--cpus"},
		{time.Millisecond, []int{0}, ""},
		{time.Second, []int{0}, ""},
		{time.Second + time.Nanosecond, []int{0}, "want 0 (off) to 1s"},
		{-time.Nanosecond, nil, "want 0 (off) to 1s"},
	} {
		err := checkBusyPoll(c.d, c.cpus)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("busy-poll %v cpus %v: %v, want accepted", c.d, c.cpus, err)
		case c.want != "" && (!IsInputError(err) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("busy-poll %v cpus %v: %v, want an input error with %q", c.d, c.cpus, err, c.want)
		}
	}
}
