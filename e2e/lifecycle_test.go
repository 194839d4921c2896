package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	fblab "github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestDown_AfterSIGKILLLeavesNothing: the device process dies by SIGKILL
// (no chance to clean up) while a process runs in the client host; `lab
// down` then removes every namespace, link, file and process of the lab, and
// a second `lab down` is a no-op that succeeds.
func TestDown_AfterSIGKILLLeavesNothing(t *testing.T) {
	l := startLab(t, "--profile", "passthrough")
	sleeper := l.start("client", "sleep 300")
	dev := l.deviceProc()
	if !dev.Alive() {
		t.Fatalf("device pid %d from the state file is not running", dev.PID)
	}
	if err := dev.Signal(unix.SIGKILL); err != nil {
		t.Fatalf("SIGKILL device %d: %v", dev.PID, err)
	}
	if !dev.WaitGone(10 * time.Second) {
		t.Fatalf("device %d: still running 10s after SIGKILL", dev.PID)
	}

	if r := fb(60*time.Second, "lab", "down", "--name", l.name); r.Code != 0 {
		t.Fatalf("lab down after SIGKILL: %s", r)
	}
	if !sleeper.WaitGone(5 * time.Second) {
		t.Errorf("process %d in the client host survived lab down", sleeper.PID)
	}
	assertNoTrace(t, l.name)

	if r := fb(60*time.Second, "lab", "down", "--name", l.name); r.Code != 0 {
		t.Errorf("second lab down: %s", r)
	}
	if r := fb(30*time.Second, "lab", "status", "--name", l.name); r.Code == 0 {
		t.Errorf("lab status of a removed lab succeeded: %s", r)
	}
}

// TestDown_CleanLeavesNothing: the ordinary path, up then down.
func TestDown_CleanLeavesNothing(t *testing.T) {
	l := startLab(t, "--hosts", "client,lb,server", "--profile", "passthrough")
	dev := l.deviceProc()
	l.mustExec(30*time.Second, "lb", "ping", "-c", "1", "-W", "2", "server")
	if r := fb(60*time.Second, "lab", "down", "--name", l.name); r.Code != 0 {
		t.Fatalf("lab down: %s", r)
	}
	if !dev.WaitGone(5 * time.Second) {
		t.Errorf("device %d survived lab down", dev.PID)
	}
	assertNoTrace(t, l.name)
}

// TestUp_NameInUseIsAClearError: a second lab of the same name is refused,
// and the refusal leaves the first lab working.
func TestUp_NameInUseIsAClearError(t *testing.T) {
	l := startLab(t, "--profile", "passthrough")
	r := fb(60*time.Second, "lab", "up", "--name", l.name)
	if r.Code == 0 {
		t.Fatalf("second lab up --name %s succeeded", l.name)
	}
	if !strings.Contains(r.Stderr, l.name) {
		t.Errorf("error does not name the lab: %s", r)
	}
	l.mustExec(30*time.Second, "client", "ping", "-c", "1", "-W", "2", "server")
}

// assertNoTrace checks that nothing named after lab is left: namespaces,
// their /etc/netns files, the runtime directory, links in this namespace,
// processes whose command line names the lab.
func assertNoTrace(t *testing.T, lab string) {
	t.Helper()
	prefix := "fbx-" + lab + "-"
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix) {
			t.Errorf("namespace left: %s", line)
		}
	}
	if m, _ := filepath.Glob("/etc/netns/" + prefix + "*"); len(m) > 0 {
		t.Errorf("/etc/netns left: %v", m)
	}
	if m, _ := filepath.Glob("/run/netns/" + prefix + "*"); len(m) > 0 {
		t.Errorf("/run/netns left: %v", m)
	}
	if _, err := os.Stat(filepath.Join("/run/faultbox", lab)); err == nil {
		t.Errorf("runtime directory /run/faultbox/%s left", lab)
	}
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link show: %v", err)
	}
	for _, line := range strings.Split(string(links), "\n") {
		if strings.Contains(line, lab) {
			t.Errorf("link left: %s", line)
		}
	}
	for _, pid := range procsNaming(lab) {
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		t.Errorf("process left: %d %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
}

// procsNaming returns live processes (not this one) with an argument equal
// to lab or containing fbx-<lab>-.
func procsNaming(lab string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !running(pid) {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if string(arg) == lab || bytes.Contains(arg, []byte("fbx-"+lab+"-")) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// TestLabs_TwoAtOnceAreSeparate: two labs run side by side with the same
// addresses; each has its own device (a transfer in one is not counted by
// the other) and taking one down leaves the other working.
func TestLabs_TwoAtOnceAreSeparate(t *testing.T) {
	a := startLab(t, "--profile", "passthrough")
	b := startLab(t, "--profile", "passthrough")
	if da, db := a.deviceProc(), b.deviceProc(); da.PID == db.PID {
		t.Fatalf("two labs share device pid %d", da.PID)
	}
	inB := b.counter(b.status(), "in")
	a.mustExec(30*time.Second, "client", "ping", "-c", "20", "-i", "0.01", "-W", "2", "server")
	if got := b.counter(b.status(), "in"); got != inB {
		t.Errorf("lab %s counted %v packets of lab %s's ping", b.name, got-inB, a.name)
	}
	if got := a.counter(a.status(), "in"); got < 40 {
		t.Errorf("lab %s counted %v packets in, want >= 40 (20 pings and replies)", a.name, got)
	}
	if r := fb(60*time.Second, "lab", "down", "--name", a.name); r.Code != 0 {
		t.Fatalf("lab down %s: %s", a.name, r)
	}
	b.mustExec(30*time.Second, "client", "ping", "-c", "1", "-W", "2", "server")
}

// TestUp_BadProfileStartsNothing: a profile with an unknown key is an input
// error (exit 2) naming the file and line, and no namespace, runtime
// directory or device of the lab is left.
func TestUp_BadProfileStartsNothing(t *testing.T) {
	testenv.RequireNetAdmin(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\ndescription: x\nsources: [x]\nbehaviors:\n  - type: drop\n    match: {port: 81}\n    colour: red\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := fblab.UniqueName("e2")
	t.Cleanup(func() { fb(60*time.Second, "lab", "down", "--name", name) })
	r := fb(60*time.Second, "lab", "up", "--name", name, "--profile", bad)
	if r.Code != 2 {
		t.Errorf("lab up with a bad profile: exit %d, want 2: %s", r.Code, r)
	}
	if !strings.Contains(r.Stderr, "bad.yaml:7") || !strings.Contains(r.Stderr, "colour") {
		t.Errorf("error does not name file:line and the field: %s", r)
	}
	assertNoTrace(t, name)
}

// TestUp_NotRootIsAClearError: run as nobody, lab up fails with a message
// that says root is needed, and creates nothing.
func TestUp_NotRootIsAClearError(t *testing.T) {
	testenv.RequireNetAdmin(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop privileges: %v", err)
	}
	name := fblab.UniqueName("e2")
	t.Cleanup(func() { fb(60*time.Second, "lab", "down", "--name", name) })
	// The binary sits in a 0700 temp dir of root's: copy it where nobody can run it.
	bin := filepath.Join(t.TempDir(), "faultbox")
	if out, err := exec.Command("cp", faultbox, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	for d := filepath.Dir(bin); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	r := testenv.Run(30*time.Second, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", bin, "lab", "up", "--name", name)
	if r.Code == 0 {
		t.Fatalf("lab up as nobody succeeded: %s", r)
	}
	if !strings.Contains(strings.ToLower(r.Stderr), "root") {
		t.Errorf("error does not say root is needed: %s", r)
	}
	assertNoTrace(t, name)
}
