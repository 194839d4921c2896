package shell

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
)

// deadProc is the identity of a process that has ended.
func deadProc(t *testing.T) device.Proc {
	t.Helper()
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := device.ProcOf(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	c.Process.Kill()
	c.Wait()
	return p
}

// writeRun writes the state of a run whose faultbox run is creator; it has
// no device and its namespaces are long gone.
func writeRun(t *testing.T, name string, s slot, creator device.Proc) {
	t.Helper()
	st := &device.State{Name: name, Kind: device.KindRun, Creator: creator}
	rec := &record{Slot: s, Command: []string{"true"}, Netns: netns.ID{Dev: 1, Ino: 1}, Host: netns.ID{Dev: 1, Ino: 2}}
	if err := st.Encode(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(device.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := device.WriteState(st); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveDead_RemovesRunsWhoseFaultboxIsGoneOnly(t *testing.T) {
	device.RunDir = t.TempDir()
	self, err := device.ProcOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dead := deadProc(t)
	writeRun(t, "gone", 0, dead)
	writeRun(t, "going", 1, self)
	lab := &device.State{Name: "a-lab", Kind: device.KindLab, Creator: dead}
	os.MkdirAll(device.Dir(lab.Name), 0o700)
	if err := device.WriteState(lab); err != nil {
		t.Fatal(err)
	}

	runs, err := device.OfKind(device.KindRun)
	if err != nil || len(runs) != 2 || runs[0].Name != "going" || runs[1].Name != "gone" {
		t.Fatalf("runs: %v, %v; want going and gone, not the lab", runs, err)
	}
	rec, err := decode(runs[0])
	if err != nil || rec.Slot != 1 || rec.Command[0] != "true" {
		t.Fatalf("decode: %+v, %v", rec, err)
	}
	if _, err := decode(lab); err == nil || !device.IsInputError(err) {
		t.Errorf("decoding a lab's state as a run's: %v, want an input error", err)
	}

	removed, err := RemoveDead()
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || !strings.HasPrefix(removed[0], "run gone (") || !strings.Contains(removed[0], device.Dir("gone")) {
		t.Errorf("removed %q, want run gone and its directory", removed)
	}
	for name, want := range map[string]bool{"gone": false, "going": true, "a-lab": true} {
		if _, err := os.Stat(device.Dir(name)); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", name, err == nil, want)
		}
	}
	if removed, err := RemoveDead(); len(removed) != 0 || err != nil {
		t.Errorf("second RemoveDead: %q, %v; want nothing to do", removed, err)
	}
	names, _ := device.Names()
	if !slices.Equal(names, []string{"a-lab", "going"}) {
		t.Errorf("left: %v", names)
	}
}

func TestExitStatus_LikeAShell(t *testing.T) {
	for script, want := range map[string]int{"exit 0": 0, "exit 3": 3, "kill -TERM $$": 128 + 15, "kill -KILL $$": 128 + 9} {
		c := exec.Command("sh", "-c", script)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(c.Process.Pid, &ws, 0, nil); err != nil {
			t.Fatal(err)
		}
		if got := exitStatus(ws); got != want {
			t.Errorf("%s: status %d, want %d", script, got, want)
		}
	}
}

func TestHostName(t *testing.T) {
	id := netns.ID{Dev: 4, Ino: 4026531840}
	for path, want := range map[string]string{
		initNetns:            "the host",
		"/run/netns/fbx-t-h": "fbx-t-h",
		"":                   "net:[4026531840]",
	} {
		if got := hostName(id, path); got != want {
			t.Errorf("hostName(%q) = %q, want %q", path, got, want)
		}
	}
}
