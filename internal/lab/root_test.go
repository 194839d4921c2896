package lab

// These tests drive the real CLI as root: real namespaces, TUN ports and
// devices, with unique lab names, each removed with `lab down` in
// t.Cleanup. Traffic stays inside the lab's namespaces (198.18.0.0/15 and
// 2001:db8::/32).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
	"github.com/faultbox/faultbox/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	binErr    error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// faultbox builds the binary once for all tests of the package.
func faultbox(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "fbx-lab-test-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "faultbox")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/faultbox").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the faultbox CLI, bounded to 30 s.
func run(t *testing.T, args ...string) result {
	t.Helper()
	r := testenv.Run(30*time.Second, faultbox(t), args...)
	if r.Code < 0 {
		t.Fatalf("faultbox %s: %v", strings.Join(args, " "), r.Err)
	}
	return result{stdout: r.Stdout, stderr: r.Stderr, code: r.Code}
}

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := run(t, args...)
	if r.code != 0 {
		t.Fatalf("faultbox %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// newLab returns a unique lab name and removes the lab when the test ends.
func newLab(t *testing.T) string {
	t.Helper()
	testenv.RequireNetAdmin(t)
	name := UniqueName("t")
	t.Cleanup(func() {
		if r := run(t, "lab", "down", "--name", name); r.code != 0 {
			t.Errorf("cleanup: lab down --name %s: exit %d: %s", name, r.code, r.stderr)
		}
	})
	return name
}

// serveHTTP serves "hello from NS port P" on each address, with listening
// sockets made inside namespace ns (the accepting goroutines run here).
func serveHTTP(t *testing.T, ns string, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		var ln net.Listener
		if err := testenv.InNetns(ns, func() (err error) { ln, err = net.Listen("tcp", a); return err }); err != nil {
			t.Fatalf("listen %s in %s: %v", a, ns, err)
		}
		_, port, _ := net.SplitHostPort(a)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s port %s\n", ns, port)
		}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
}

func readState(t *testing.T, name string) *device.State {
	t.Helper()
	st, err := device.ReadState(name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func labStatus(t *testing.T, name string) *client.Status {
	t.Helper()
	r := mustRun(t, "lab", "status", "--name", name, "--json")
	var st client.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return &st
}

// assertGone checks that nothing of the lab is left: namespaces, their /etc
// files, the runtime directory, the device.
func assertGone(t *testing.T, name string, dev device.Proc) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") { // "name" or "name (id: 3)"
		if f := strings.Fields(line); len(f) > 0 && namespaceOf(name, f[0]) {
			t.Errorf("namespace %s is left (ip netns list)", f[0])
		}
	}
	ents, _ := os.ReadDir(NetnsEtc)
	for _, e := range ents {
		if namespaceOf(name, e.Name()) {
			t.Errorf("%s/%s is left", NetnsEtc, e.Name())
		}
	}
	if _, err := os.Stat(device.Dir(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is left (%v)", device.Dir(name), err)
	}
	if dev.Alive() {
		t.Errorf("device pid %d still runs", dev.PID)
	}
}

// curl runs curl in a lab host and returns its output and exit status.
func curl(t *testing.T, lab, host string, args ...string) result {
	t.Helper()
	return run(t, append([]string{"lab", "exec", "--name", lab, host, "--", "curl", "-sS", "--max-time", "3"}, args...)...)
}

func TestLab_UpExecStatusApplyDown(t *testing.T) {
	name := newLab(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("test needs curl")
	}
	r := mustRun(t, "lab", "up", "--name", name, "--seed", "42")
	for _, want := range []string{"client", "198.18.0.1", "2001:db8::1", "server", "198.18.0.2", "2001:db8::2",
		"profile passthrough", "seed 42", Namespace(name, "client")} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("lab up output lacks %q:\n%s", want, r.stdout)
		}
	}
	st := readState(t, name)
	if !st.Device.Alive() {
		t.Fatalf("device %+v is not running", st.Device)
	}
	fi, err := os.Stat(filepath.Join(device.Dir(name), "control.sock"))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("control socket: %v %v, want a socket with mode 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(device.Dir(name)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("runtime dir: %v %v, want 0700", fi.Mode(), err)
	}

	serverNS := Namespace(name, "server")
	serveHTTP(t, serverNS, "198.18.0.2:80", "[2001:db8::2]:80", "198.18.0.2:81", "[2001:db8::2]:81")

	// By name over IPv4 and IPv6, through the device.
	for _, family := range []string{"-4", "-6"} {
		r := curl(t, name, "client", family, "http://server/")
		if r.code != 0 || r.stdout != "hello from "+serverNS+" port 80\n" {
			t.Errorf("curl %s http://server/: exit %d %q %s", family, r.code, r.stdout, r.stderr)
		}
	}
	if _, err := exec.LookPath("ping"); err != nil {
		testenv.Missing(t, "ping (iputils-ping)")
	}
	for _, family := range []string{"-4", "-6"} {
		if r := run(t, "lab", "exec", "--name", name, "client", "--", "ping", family, "-c1", "-W2", "server"); r.code != 0 {
			t.Errorf("ping %s server: exit %d: %s %s", family, r.code, r.stdout, r.stderr)
		}
	}
	// exec passes on the command's exit status.
	if r := run(t, "lab", "exec", "--name", name, "server", "--", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exec sh -c 'exit 7': exit %d, want 7", r.code)
	}

	s := labStatus(t, name)
	if s.Name != name || s.Kind != string(device.KindLab) || s.Seed != 42 || s.Profile != "passthrough" || s.PID != st.Device.PID || len(s.Ports) != 2 ||
		s.Namespaces["client"] != Namespace(name, "client") {
		t.Errorf("status: %s %q seed %d profile %q pid %d ports %v in %v", s.Kind, s.Name, s.Seed, s.Profile, s.PID, s.Ports, s.Namespaces)
	}
	if s.Counters.In == 0 || s.Counters.Out == 0 || s.Flows.Created < 2 || s.Counters.Dropped != 0 {
		t.Errorf("status counters %+v flows %+v: want traffic and no drops", s.Counters, s.Flows)
	}
	if len(s.Ports) != 2 || s.Ports[0].Stats.ReadPackets == 0 || s.Ports[1].Stats.WritePackets == 0 {
		t.Errorf("status ports %+v", s.Ports)
	}

	// A connection opened before apply carries on after it.
	conn := dialIn(t, Namespace(name, "client"), "198.18.0.2:80")
	defer conn.Close()
	get := func() error {
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: server\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		if !bytes.Contains(buf[:n], []byte("hello from")) {
			return fmt.Errorf("reply %q", buf[:n])
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("request before apply: %v", err)
	}

	r = mustRun(t, "lab", "apply", "--name", name, "block-port-81")
	if !strings.Contains(r.stdout, "block-port-81") || !strings.Contains(r.stdout, "seed 42") {
		t.Errorf("apply output %q", r.stdout)
	}
	if err := get(); err != nil {
		t.Errorf("the connection opened before apply broke: %v", err)
	}
	for _, family := range []string{"-4", "-6"} {
		if r := curl(t, name, "client", family, "http://server/"); r.code != 0 {
			t.Errorf("port 80 %s after apply: exit %d %s", family, r.code, r.stderr)
		}
		if r := run(t, "lab", "exec", "--name", name, "client", "--", "curl", "-sS", family, "--max-time", "1", "http://server:81/"); r.code == 0 {
			t.Errorf("port 81 %s answers after block-port-81: %q", family, r.stdout)
		}
	}
	s = labStatus(t, name)
	if s.Profile != "block-port-81" || s.Source != "block-port-81" || s.Seed != 42 || len(s.Behaviors) != 1 ||
		s.Behaviors[0].Type != "drop" || s.Behaviors[0].Counters.Dropped == 0 || s.Counters.Dropped == 0 {
		t.Errorf("status after apply: profile %q source %q seed %d behaviors %+v counters %+v",
			s.Profile, s.Source, s.Seed, s.Behaviors, s.Counters)
	}
	text := mustRun(t, "lab", "status", "--name", name).stdout
	for _, want := range []string{name, "block-port-81", "seed 42", "drop", "port: 81", "fbx0", Namespace(name, "server")} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}

	conn.Close()
	r = mustRun(t, "lab", "down", "--name", name)
	for _, want := range []string{"device pid", Namespace(name, "client"), Namespace(name, "server"), device.Dir(name)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("lab down output lacks %q:\n%s", want, r.stdout)
		}
	}
	assertGone(t, name, st.Device)
	r = mustRun(t, "lab", "down", "--name", name)
	if !strings.Contains(r.stdout, "nothing to remove") {
		t.Errorf("second lab down: %q, want nothing to remove", r.stdout)
	}
}

// dialIn connects from inside namespace ns.
func dialIn(t *testing.T, ns, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := testenv.InNetns(ns, func() (err error) { c, err = net.DialTimeout("tcp", addr, 3*time.Second); return err }); err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns, err)
	}
	return c
}

func TestLab_TwoLabsAtOnce(t *testing.T) {
	a, b := newLab(t), newLab(t)
	// a shares the CPUs and polls briefly before it sleeps.
	mustRun(t, "lab", "up", "--name", a, "--busy-poll", "20us")
	mustRun(t, "lab", "up", "--name", b, "--hosts", "client,lb,server", "--profile", "block-port-81", "--cpus", "0", "--busy-poll", "always")
	// The device of b runs on CPU 0 only, its Go runtime sized to it, and
	// polls without ever sleeping (the curls below go through it).
	if allowed := procStatusField(t, readState(t, b).Device.PID, "Cpus_allowed_list"); allowed != "0" {
		t.Errorf("lab %s --cpus 0: device allowed on CPUs %q", b, allowed)
	}
	if s := labStatus(t, b); len(s.CPUs) != 1 || s.CPUs[0] != 0 || s.BusyPoll != "always" {
		t.Errorf("lab %s --cpus 0 --busy-poll always: status says cpus %v busy-poll %q", b, s.CPUs, s.BusyPoll)
	}
	if s := labStatus(t, a); len(s.CPUs) != 0 || s.BusyPoll != "20µs" {
		t.Errorf("lab %s --busy-poll 20us: status says cpus %v busy-poll %q", a, s.CPUs, s.BusyPoll)
	}
	serveHTTP(t, Namespace(a, "server"), "[2001:db8::2]:80")
	serveHTTP(t, Namespace(b, "server"), "[2001:db8::2]:80")
	serveHTTP(t, Namespace(b, "lb"), "198.18.0.3:80")
	// The same addresses in both labs, each answered by its own server.
	for _, lab := range []string{a, b} {
		if r := curl(t, lab, "client", "http://server/"); r.code != 0 || !strings.Contains(r.stdout, Namespace(lab, "server")) {
			t.Errorf("lab %s: curl server: exit %d %q %s", lab, r.code, r.stdout, r.stderr)
		}
	}
	if r := curl(t, b, "server", "-4", "http://lb/"); r.code != 0 || !strings.Contains(r.stdout, Namespace(b, "lb")) {
		t.Errorf("lab %s: curl lb from server: exit %d %q %s", b, r.code, r.stdout, r.stderr)
	}
	sa, sb := labStatus(t, a), labStatus(t, b)
	if sa.Name != a || sa.Profile != "passthrough" || sb.Name != b || sb.Profile != "block-port-81" || len(sb.Ports) != 3 {
		t.Errorf("status: %s %s %d ports / %s %s %d ports", sa.Name, sa.Profile, len(sa.Ports), sb.Name, sb.Profile, len(sb.Ports))
	}
	// Removing one leaves the other working.
	da := readState(t, a).Device
	mustRun(t, "lab", "down", "--name", a)
	assertGone(t, a, da)
	if r := curl(t, b, "client", "http://server/"); r.code != 0 {
		t.Errorf("lab %s after removing %s: exit %d %s", b, a, r.code, r.stderr)
	}
}

// procStatusField returns a field of /proc/PID/status.
func procStatusField(t *testing.T, pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// startInLab starts a long-running command inside a lab host through the
// CLI and returns the command's own process (found in the namespace).
func startInLab(t *testing.T, lab, host string) (*exec.Cmd, device.Proc) {
	t.Helper()
	cmd := exec.Command(faultbox(t), "lab", "exec", "--name", lab, host, "--", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	ns := Namespace(lab, host)
	id, err := netns.IDOf(ns)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		pids, _ := netns.Pids(id)
		for _, pid := range pids {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
				p, err := device.ProcOf(pid)
				if err == nil {
					return cmd, p
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no sleep process appeared in %s", ns)
	return nil, device.Proc{}
}

func TestLab_DownAfterSIGKILLOfTheDevice(t *testing.T) {
	name := newLab(t)
	mustRun(t, "lab", "up", "--name", name, "--hosts", "client,server,lb")
	st := readState(t, name)
	_, sleeper := startInLab(t, name, "server")
	if err := st.Device.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !st.Device.WaitGone(2 * time.Second) {
		t.Fatal("device survives SIGKILL")
	}
	r := run(t, "lab", "status", "--name", name)
	if r.code != 2 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("status of a lab whose device died: exit %d %q, want 2 and 'not running'", r.code, r.stderr)
	}
	r = mustRun(t, "lab", "down", "--name", name)
	if !strings.Contains(r.stdout, "killed 1 process") {
		t.Errorf("lab down output does not report the process it killed:\n%s", r.stdout)
	}
	assertGone(t, name, st.Device)
	if !sleeper.WaitGone(time.Second) {
		t.Errorf("process %d inside the lab survives lab down", sleeper.PID)
	}
	if r := mustRun(t, "lab", "down", "--name", name); !strings.Contains(r.stdout, "nothing to remove") {
		t.Errorf("second lab down: %q", r.stdout)
	}
}

func TestLab_SIGTERMToTheDeviceRemovesTheLabWithin2s(t *testing.T) {
	name := newLab(t)
	mustRun(t, "lab", "up", "--name", name)
	st := readState(t, name)
	_, sleeper := startInLab(t, name, "client")
	start := time.Now()
	if err := st.Device.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !st.Device.WaitGone(2 * time.Second) {
		t.Fatal("device still runs 2 s after SIGTERM")
	}
	took := time.Since(start)
	t.Logf("device removed the lab and exited %s after SIGTERM", took.Round(time.Millisecond))
	assertGone(t, name, st.Device)
	if sleeper.Alive() {
		t.Errorf("process %d inside the lab survives", sleeper.PID)
	}
}

func TestLab_UpReplacesWhatADeadDeviceLeft(t *testing.T) {
	name := newLab(t)
	mustRun(t, "lab", "up", "--name", name)
	old := readState(t, name).Device
	old.Signal(unix.SIGKILL)
	old.WaitGone(2 * time.Second)
	r := mustRun(t, "lab", "up", "--name", name, "--seed", "5")
	if !strings.Contains(r.stderr, "device had died") {
		t.Errorf("lab up over a dead lab does not say it cleaned up: %q", r.stderr)
	}
	if s := labStatus(t, name); s.Seed != 5 || s.PID == old.PID {
		t.Errorf("status after re-up: seed %d pid %d (old pid %d)", s.Seed, s.PID, old.PID)
	}
}

func TestLab_Errors(t *testing.T) {
	name := newLab(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "up", "--name", "Bad_Name"}, `name "Bad_Name"`},
		{[]string{"lab", "up", "--name", "-x"}, ""}, // a flag-looking name: cobra's usage error
		{[]string{"lab", "up", "--name", name, "--hosts", "client"}, "2 to 16 hosts"},
		{[]string{"lab", "up", "--name", name, "--hosts", "client,Server"}, "host name"},
		{[]string{"lab", "up", "--name", name, "--profile", "no-such-profile"}, "no-such-profile"},
		{[]string{"lab", "up", "--name", name, "--mtu", "1000"}, "mtu 1000"},
		{[]string{"lab", "up", "--name", name, "--capture", "/nonexistent-dir/x.pcapng"}, "does not exist"},
		{[]string{"lab", "up", "--name", name, "--cpus", "one"}, "cpus"},
		{[]string{"lab", "up", "--name", name, "--cpus", "1000"}, "CPU 1000 is not one"},
		{[]string{"lab", "up", "--name", name, "--busy-poll", "1ms"}, "--cpus, or poll at most 100µs"},
		{[]string{"lab", "up", "--name", name, "--cpus", "0", "--busy-poll", "5s"}, "busy-poll 5s"},
		{[]string{"lab", "status", "--name", name}, "is not up"},
		{[]string{"lab", "exec", "--name", name, "client", "--", "true"}, "is not up"},
		{[]string{"lab", "apply", "--name", name, "passthrough"}, "is not up"},
		{[]string{"lab", "down", "--name", name, "--all"}, "not both"},
		{[]string{"lab", "status", "--name", "UPPER"}, `name "UPPER"`},
	} {
		r := run(t, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("faultbox %s: exit %d %q, want 2 and %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
	if _, err := os.Stat(device.Dir(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused lab up left %s", device.Dir(name))
	}

	mustRun(t, "lab", "up", "--name", name, "--profile", "block-port-81", "--seed", "9")
	st := readState(t, name)
	r := run(t, "lab", "up", "--name", name)
	if r.code != 2 || !strings.Contains(r.stderr, "already up") {
		t.Errorf("second lab up of %s: exit %d %q, want 2 and 'already up'", name, r.code, r.stderr)
	}
	if !st.Device.Alive() {
		t.Fatal("the refused lab up harmed the running lab")
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: bad\nbehaviors:\n  - type: delay\n    delay: 10 sec\n"), 0o644)
	r = run(t, "lab", "apply", "--name", name, bad)
	if r.code != 2 || !strings.Contains(r.stderr, "bad.yaml:4") {
		t.Errorf("apply of a bad profile: exit %d %q, want 2 naming bad.yaml:4", r.code, r.stderr)
	}
	if s := labStatus(t, name); s.Profile != "block-port-81" || s.Seed != 9 {
		t.Errorf("a refused apply changed the lab: profile %s seed %d", s.Profile, s.Seed)
	}
	r = run(t, "lab", "exec", "--name", name, "nohost", "--", "true")
	if r.code != 2 || !strings.Contains(r.stderr, `no host "nohost"`) {
		t.Errorf("exec in an unknown host: exit %d %q", r.code, r.stderr)
	}

	// A file profile applies too, and its seed is used when --seed is not given.
	good := filepath.Join(t.TempDir(), "good.yaml")
	os.WriteFile(good, []byte("name: mine\nseed: 77\nbehaviors:\n  - type: passthrough\n"), 0o644)
	mustRun(t, "lab", "apply", "--name", name, good)
	if s := labStatus(t, name); s.Profile != "mine" || s.Seed != 77 || s.Source != good {
		t.Errorf("after apply of %s: profile %s seed %d source %s", good, s.Profile, s.Seed, s.Source)
	}
}

func TestLab_FailedUpRemovesWhatItMadeAndShowsTheLog(t *testing.T) {
	name := newLab(t)
	// The capture path is a directory: only the device finds out.
	dir := t.TempDir()
	r := run(t, "lab", "up", "--name", name, "--capture", dir)
	if r.code == 0 {
		t.Fatalf("lab up with a directory as capture file succeeded:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "device.log") || !strings.Contains(r.stderr, "capture") {
		t.Errorf("error lacks the device's log:\n%s", r.stderr)
	}
	assertGone(t, name, device.Proc{})
}

// The SIGKILL test above proves processes die; this one that lab exec passes
// stdin through and stdout back (a pipeline is how tests feed servers).
func TestLab_ExecPassesStdio(t *testing.T) {
	name := newLab(t)
	mustRun(t, "lab", "up", "--name", name)
	cmd := exec.Command(faultbox(t), "lab", "exec", "--name", name, "server", "--", "sh", "-c", "cat; cat /etc/hosts")
	cmd.Stdin = strings.NewReader("from stdin\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("from stdin\n")) || !bytes.Contains(out, []byte("2001:db8::1\tclient")) {
		t.Errorf("exec output %q", out)
	}
}

func TestLab_EventsAndApply(t *testing.T) {
	name := newLab(t)
	mustRun(t, "lab", "up", "--name", name)
	serveHTTP(t, Namespace(name, "server"), "198.18.0.2:80")
	logged := filepath.Join(t.TempDir(), "log80.yaml")
	os.WriteFile(logged, []byte("name: log80\nbehaviors:\n  - type: log\n    match: {port: 80, tcp_flags: [syn]}\n"), 0o644)
	mustRun(t, "lab", "apply", "--name", name, logged)
	if r := curl(t, name, "client", "-4", "http://server/"); r.code != 0 {
		t.Fatalf("curl: exit %d %s", r.code, r.stderr)
	}
	evs, next, err := device.Events(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || next != 1 || evs[0].DstPort != 80 || evs[0].Dst.String() != "198.18.0.2" || !strings.Contains(evs[0].Text, "log") {
		t.Errorf("events %+v next %d: want the one SYN to port 80", evs, next)
	}
	if evs, next2, err := device.Events(name, next); err != nil || len(evs) != 0 || next2 != next {
		t.Errorf("events from %d: %v %d %v, want none", next, evs, next2, err)
	}
}

// lab down --all removes every namespace named fbx-*, so it runs here in a
// mount namespace of its own with private /run/netns, /run/faultbox and
// /etc/netns: it sees only the labs and namespaces this test made, never
// those of anything else running on the machine.
func TestLab_DownAllRemovesEveryLabAndFbxNamespace(t *testing.T) {
	testenv.RequireNetAdmin(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("test needs unshare (util-linux)")
	}
	script := `set -e
mkdir -p /run/netns /run/faultbox /etc/netns
for d in /run/netns /run/faultbox /etc/netns; do mount -t tmpfs fbx-test "$d"; done
trap '"$FBX" lab down --all >/dev/null 2>&1; ip netns del other-ns 2>/dev/null' EXIT
"$FBX" lab up --name a >/dev/null
"$FBX" lab up --name b --hosts client,lb,server >/dev/null
ip netns add fbx-t-left-00aa00
mkdir /etc/netns/fbx-zz-stale
ip netns add other-ns
echo "=== down"
"$FBX" lab down --all
echo "=== left"
ip netns list
ls /run/faultbox /etc/netns
echo "=== again"
"$FBX" lab down --all
`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "FBX="+faultbox(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("%s", out)
	down, rest, _ := strings.Cut(string(out), "=== left\n")
	left, again, _ := strings.Cut(rest, "=== again\n")
	for _, want := range []string{"device pid", "namespace fbx-a-client", "namespace fbx-b-lb", "/run/faultbox/a", "/run/faultbox/b",
		"namespace fbx-t-left-00aa00", "/etc/netns/fbx-zz-stale"} {
		if !strings.Contains(down, want) {
			t.Errorf("lab down --all does not report %q:\n%s", want, down)
		}
	}
	// ip netns list, then ls of the two (now empty) directories.
	if strings.Contains(down, "other-ns") || strings.Join(strings.Fields(left), " ") != "other-ns /etc/netns: /run/faultbox:" {
		t.Errorf("after lab down --all, left: %q (want only other-ns)", left)
	}
	if !strings.Contains(again, "all labs: nothing to remove") {
		t.Errorf("second lab down --all: %q", again)
	}
}

// TestLab_UpStartsClean: lab up checks that traffic flows before it
// installs the profile, and none of that check reaches the user's run: with
// a profile that acts on FINs, a second after lab up every counter is zero —
// packets, ports, flows, events and the behavior's matches.
func TestLab_UpStartsClean(t *testing.T) {
	name := newLab(t)
	mustRun(t, "lab", "up", "--name", name, "--profile", "cisco-asa-lost-fin")
	time.Sleep(time.Second) // a probe packet still on its way would arrive by now
	s := labStatus(t, name)
	c := s.Counters
	if c.In != 0 || c.Out != 0 || s.Flows.Created != 0 || s.Flows.Active != 0 || s.Events != 0 || len(s.FlowStates) != 0 {
		t.Errorf("after lab up: packets in %d out %d, flows created %d active %d %v, events %d; want all 0",
			c.In, c.Out, s.Flows.Created, s.Flows.Active, s.FlowStates, s.Events)
	}
	if len(s.Ports) != 2 {
		t.Fatalf("%d ports in the status of a lab of two hosts", len(s.Ports))
	}
	for _, p := range s.Ports {
		if st := p.Stats; st.ReadPackets != 0 || st.WritePackets != 0 || st.ReadBytes != 0 || st.WriteBytes != 0 {
			t.Errorf("after lab up: port %s read %d written %d packets, want 0", p.Name, st.ReadPackets, st.WritePackets)
		}
	}
	if len(s.Behaviors) == 0 {
		t.Fatal("the profile's behaviors are not in the status")
	}
	for _, b := range s.Behaviors {
		if b.Counters != (client.BehaviorCounters{}) {
			t.Errorf("after lab up: behavior %s counted %+v, want nothing", b.Type, b.Counters)
		}
	}
}
