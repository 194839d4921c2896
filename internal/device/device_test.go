package device

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/profiles"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"default", "a", "0", "web-1", "t1a2b3c", "abcdefghijklmnop"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v, want ok", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "A", "web_1", "a.b", "abcdefghijklmnopq", "a/b", "a b", "ä"} {
		err := CheckName(bad)
		if err == nil || !IsInputError(err) || !strings.Contains(err.Error(), "name") {
			t.Errorf("CheckName(%q) = %v, want an input error about the name", bad, err)
		}
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
	self, err := ProcOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	type record struct{ Hosts []string }
	st := &State{Name: "x", Kind: KindAttach, Profile: "/tmp/p.yaml", Seed: 1<<63 + 5, Capture: "/tmp/c.pcapng", MTU: 9000,
		Device: self, Created: time.Now().UTC().Truncate(time.Second)}
	if err := st.Encode(record{Hosts: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
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
		got.Device != self || !got.Created.Equal(st.Created) || got.KindOf() != KindAttach {
		t.Errorf("read back %+v, want %+v", got, st)
	}
	var r record
	if err := got.Decode(&r); err != nil || !slices.Equal(r.Hosts, []string{"a", "b"}) {
		t.Errorf("placement read back %+v %v", r, err)
	}
	if !got.Device.Alive() {
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
		t.Errorf("ReadState of a device without state: %v, want not exist", err)
	}
	os.WriteFile(statePath("x"), []byte("{"), 0o600)
	if _, err := ReadState("x"); err == nil || !strings.Contains(err.Error(), "state.json") {
		t.Errorf("damaged state.json: %v", err)
	}
	names, err := Names()
	if err != nil || !slices.Equal(names, []string{"x"}) {
		t.Errorf("Names() = %v %v", names, err)
	}
	if (&State{}).KindOf() != KindLab {
		t.Error("a state without a kind (written before kinds) is not a lab's")
	}
}

// DecodeAs reads a state's record only for its own kind, and names the
// kind it is otherwise, as an input error.
func TestState_DecodeAsRefusesAnotherKind(t *testing.T) {
	st := &State{Name: "web", Kind: KindAttach}
	if err := st.Encode(map[string]int{"n": 7}); err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if err := st.DecodeAs(KindAttach, &got); err != nil || got["n"] != 7 {
		t.Errorf("DecodeAs(attach) = %v, %v", got, err)
	}
	err := st.DecodeAs(KindLab, &got)
	if err == nil || err.Error() != `"web" is not a lab but an attach` || !IsInputError(err) {
		t.Errorf("DecodeAs(lab) of an attach: %v", err)
	}
	if stopped, err := StopIfAlive(st); stopped != "" || err != nil {
		t.Errorf("StopIfAlive of a state with no device: %q, %v", stopped, err)
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

func TestWriteStatus_ShowsPortsCountersAndBehaviors(t *testing.T) {
	st := &client.Status{Name: "x", Kind: "lab", Placement: "lab hosts client, server", PID: 4242, UptimeSeconds: 83, Source: "/tmp/p.yaml", MTU: 1500,
		Namespaces: map[string]string{"client": "fbx-x-client", "server": "fbx-x-server"},
		Capture:    "/tmp/c.pcapng", CapturePackets: 99,
		Profile: "gprs", Seed: 42, Queued: 3,
		Counters:   client.Counters{In: 1001, Out: 990, Dropped: 11, Delayed: 500, NoRoute: 7},
		Flows:      client.FlowCounters{Created: 12, Active: 2, Capacity: 1024},
		FlowStates: map[string]int{"established": 2, "closed": 10},
		Ports: []client.Port{
			{Name: "client", Interface: "fbx0", Offloads: true, Addrs: []string{"198.18.0.1/32", "2001:db8::1/128"},
				Stats: client.PortStats{ReadPackets: 500, WritePackets: 490, GSOPackets: 17}},
			{Name: "server", Interface: "fbx0", Offloads: false, Addrs: []string{"198.18.0.2/32", "2001:db8::2/128"},
				Stats: client.PortStats{ReadPackets: 501, WriteDrops: 5, QueueDrops: 8}},
		},
		Behaviors: []client.Behavior{
			{Name: "lossy", Type: "loss", Match: "direction: downstream", Counters: client.BehaviorCounters{Matched: 300, Dropped: 11}, Extra: map[string]uint64{"bursts": 4, "a": 1}},
			{Name: "asa-teardown", Type: "asa-teardown", Match: "protocol: tcp, tcp_flags: [fin]"},
		},
	}
	var b strings.Builder
	if err := WriteStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"x (device pid 4242, up 1m23s, mtu 1500)", "lab hosts client, server", "gprs (seed 42, from /tmp/p.yaml)", "/tmp/c.pcapng (99 packets)",
		"198.18.0.1", "2001:db8::2", "fbx-x-server", "in 1001", "out 990", "dropped 11", "queued 3", "no-route 7",
		"active 2/1024", "created 12", "closed 10, established 2", "lossy (loss)", "direction: downstream", "a=1 bursts=4",
		"asa-teardown  protocol: tcp, tcp_flags: [fin]  0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	rows := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) <= 12 || f[0] != "client" && f[0] != "server" {
			continue
		}
		rows++
		if f[0] == "client" && (f[1] != "fbx-x-client" || f[3] != "198.18.0.1" || f[5] != "on" || f[6] != "500" || f[10] != "17") {
			t.Errorf("client row %q: want offload on, 500 read, 17 gso", l)
		}
		if f[0] == "server" && (f[5] != "off" || f[11] != "8" || f[12] != "5") {
			t.Errorf("server row %q: want offload off, 8 queue drops, 5 drops", l)
		}
	}
	if rows != 2 {
		t.Errorf("%d port rows (client and server) in:\n%s", rows, out)
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
	if strings.Contains(b.String(), "waiting") {
		t.Errorf("a behavior that saw no packet is said to wait:\n%s", b.String())
	}
}

// A behavior that saw traffic but never what it waits for says so (issue
// 17: a cancelled curl closes with a RST, and the ASA profiles never fire).
func TestWriteStatus_SaysWhatABehaviorStillWaitsFor(t *testing.T) {
	st := &client.Status{Name: "x", Kind: "lab", Behaviors: []client.Behavior{
		{Name: "asa-teardown", Type: "asa-teardown", Counters: client.BehaviorCounters{Matched: 52},
			Waits: &client.Wait{For: "client FINs", Note: "5 client RSTs came instead"}},
		{Name: "slow", Type: "delay", Counters: client.BehaviorCounters{Matched: 52}},
		{Name: "vanish", Type: "vanish", Counters: client.BehaviorCounters{Matched: 9},
			Waits: &client.Wait{For: "flows where the client acknowledged the server's FIN", Seen: 2}},
	}}
	var b strings.Builder
	if err := WriteStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	want := "waiting: #1 asa-teardown: 0 client FINs seen in 52 matched packets: 5 client RSTs came instead\n"
	if out := b.String(); !strings.Contains(out, want) || strings.Count(out, "waiting:") != 1 {
		t.Errorf("status:\n%s\nwant the one line %q", out, want)
	}
}

func TestIsInputError(t *testing.T) {
	if !IsInputError(InputErrorf("x")) || !IsInputError(&profiles.Error{File: "f", Err: errors.New("bad")}) {
		t.Error("input errors not recognised")
	}
	if IsInputError(errors.New("ip netns add: permission denied")) {
		t.Error("a system error counts as input error")
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
// them, up to 1s, or always.
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
		{time.Second + time.Nanosecond, []int{0}, "want 0 (off) to 1s, or always"},
		{-time.Nanosecond, nil, "want 0 (off) to 1s"},
		{engine.PollAlways, []int{1}, ""},
		{engine.PollAlways, nil, "busy-poll always keeps a CPU busy at all times: give the device a CPU of its own with --cpus"},
	} {
		err := CheckBusyPoll(c.d, c.cpus)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("busy-poll %v cpus %v: %v, want accepted", c.d, c.cpus, err)
		case c.want != "" && (!IsInputError(err) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("busy-poll %v cpus %v: %v, want an input error with %q", c.d, c.cpus, err, c.want)
		}
	}
}

func TestParseBusyPoll_DurationOrAlways(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{{"0", 0}, {"20us", 20 * time.Microsecond}, {"1ms", time.Millisecond}, {"always", engine.PollAlways}} {
		got, err := ParseBusyPoll(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseBusyPoll(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if back, err := ParseBusyPoll(FormatBusyPoll(got)); err != nil || back != got {
			t.Errorf("ParseBusyPoll(FormatBusyPoll(%v)) = %v, %v", got, back, err)
		}
	}
	if got := FormatBusyPoll(engine.PollAlways); got != "always" {
		t.Errorf("FormatBusyPoll(PollAlways) = %q, want always", got)
	}
	for _, in := range []string{"", "forever", "Always", "1"} {
		if _, err := ParseBusyPoll(in); !IsInputError(err) || !strings.Contains(err.Error(), "or always") {
			t.Errorf("ParseBusyPoll(%q): %v, want an input error naming always", in, err)
		}
	}
}

// OfKind lists the devices of one kind, dead or alive; a state from
// before kinds, and a runtime directory without a readable state, count
// as labs (lab down --all removes them, detach --all does not).
func TestOfKind_ListsOneKind(t *testing.T) {
	withRunDir(t)
	for name, kind := range map[string]Kind{"a": KindLab, "b": KindAttach, "c": KindRun, "d": "", "e": KindAttach} {
		if err := os.Mkdir(Dir(name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := WriteState(&State{Name: name, Kind: kind}); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(Dir("f"), 0o700) // no state.json
	for kind, want := range map[Kind][]string{KindLab: {"a", "d", "f"}, KindAttach: {"b", "e"}, KindRun: {"c"}} {
		sts, err := OfKind(kind)
		var got []string
		for _, st := range sts {
			got = append(got, st.Name)
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("OfKind(%s) = %v %v, want %v", kind, got, err, want)
		}
	}
}

// Only picks the one device there is (of a kind), or says why not.
func TestOnly_PicksTheOneDeviceOrSaysWhyNot(t *testing.T) {
	withRunDir(t)
	want := func(name string, k Kind, wantName, wantErr string) {
		t.Helper()
		got, err := Only(name, k)
		switch {
		case wantErr == "" && (err != nil || got != wantName):
			t.Errorf("Only(%q, %q) = %q %v, want %q", name, k, got, err, wantName)
		case wantErr != "" && (!IsInputError(err) || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("Only(%q, %q) = %q %v, want an input error with %q", name, k, got, err, wantErr)
		}
	}
	want("", "", "", "no device is up")
	want("", KindAttach, "", "no attach device exists")
	want("given", KindAttach, "given", "")
	for name, kind := range map[string]Kind{"a-lab": KindLab, "x1": KindAttach} {
		os.Mkdir(Dir(name), 0o700)
		if err := WriteState(&State{Name: name, Kind: kind}); err != nil {
			t.Fatal(err)
		}
	}
	want("", KindAttach, "x1", "")
	want("", "", "", "2 devices are up (a-lab, x1)")
	os.Mkdir(Dir("x2"), 0o700)
	WriteState(&State{Name: "x2", Kind: KindAttach})
	want("", KindAttach, "", "2 attach devices exist (x1, x2): say which with --name")
}

func TestRunning_SaysWhatIsWrong(t *testing.T) {
	withRunDir(t)
	if _, err := Running("nothere"); !IsInputError(err) || !strings.Contains(err.Error(), "is not up") {
		t.Errorf("Running of no device: %v", err)
	}
	os.Mkdir(Dir("dead"), 0o700)
	WriteState(&State{Name: "dead", Kind: KindAttach, Device: Proc{PID: os.Getpid(), Start: 1}})
	if _, err := Running("dead"); !IsInputError(err) || !strings.Contains(err.Error(), "faultbox detach --name dead") {
		t.Errorf("Running of a dead attach: %v, want the command that removes it", err)
	}
}
