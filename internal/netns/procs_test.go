package netns_test

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/netns"
	"github.com/faultbox/faultbox/internal/testenv"
)

func TestID_SameThroughEveryPath(t *testing.T) {
	self, err := netns.IDOf("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := netns.Current()
	if err != nil || cur != self {
		t.Fatalf("Current = %v (%v), /proc/self/ns/net = %v", cur, err, self)
	}
	if path, ok := netns.Find(self, "/proc/self/ns/net"); !ok || path != "/proc/self/ns/net" {
		t.Errorf("Find with a good hint = %q, %v", path, ok)
	}
	// A wrong hint falls back to a process in the namespace: this one, at least.
	path, ok := netns.Find(self, "/nonexistent")
	if got, err := netns.IDOf(path); !ok || err != nil || got != self {
		t.Errorf("Find with a bad hint = %q, %v (%v, %v)", path, ok, got, err)
	}
	if _, ok := netns.Find(netns.ID{Dev: self.Dev, Ino: 1}, ""); ok {
		t.Error("Find found a namespace that does not exist")
	}
	pids, err := netns.Pids(self)
	if err != nil || !slices.Contains(pids, os.Getpid()) {
		t.Errorf("Pids(own namespace) = %v, %v; want this process among them", pids, err)
	}
}

// TestFind_ByName: a namespace no process is in is found by its name in
// Dir, with a bad hint or none.
func TestFind_ByName(t *testing.T) {
	testenv.RequireNetAdmin(t)
	ns := testenv.NewNetns(t, "find")
	id, err := netns.IDOf(ns)
	if err != nil {
		t.Fatal(err)
	}
	if path, ok := netns.Named(id); !ok || path != netns.Path(ns) {
		t.Errorf("Named = %q, %v; want %s", path, ok, netns.Path(ns))
	}
	for _, hint := range []string{"", "/proc/self/ns/net"} {
		if path, ok := netns.Find(id, hint); !ok || path != netns.Path(ns) {
			t.Errorf("Find(hint %q) = %q, %v; want %s", hint, path, ok, netns.Path(ns))
		}
	}
	self, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	if path, ok := netns.Named(self); ok && path == netns.Path(ns) {
		t.Errorf("Named(this namespace) = %s, the test's namespace", path)
	}
}

func TestKill_KillsEveryProcessInTheNamespaceOnly(t *testing.T) {
	testenv.RequireNetAdmin(t)
	ns := testenv.NewNetns(t, "nskill")
	id, err := netns.IDOf(ns)
	if err != nil {
		t.Fatal(err)
	}
	var inside []*exec.Cmd
	for range 2 {
		c := exec.Command("ip", "netns", "exec", ns, "sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		inside = append(inside, c)
	}
	outside := exec.Command("sleep", "60")
	if err := outside.Start(); err != nil {
		t.Fatal(err)
	}
	outsideDone := make(chan struct{})
	go func() { outside.Wait(); close(outsideDone) }()
	t.Cleanup(func() { outside.Process.Kill(); <-outsideDone })

	// ip netns exec enters the namespace before exec'ing sleep: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, _ := netns.Pids(id)
		if len(pids) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes in %s: %v, want 2", ns, pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n, err := netns.Kill(id, 5*time.Second)
	if err != nil || n != 2 {
		t.Fatalf("Kill = %d, %v; want 2 killed", n, err)
	}
	for _, c := range inside {
		if err := c.Wait(); err == nil {
			t.Errorf("pid %d exited normally, want killed", c.Process.Pid)
		}
	}
	select {
	case <-outsideDone:
		t.Error("the process outside the namespace ended")
	case <-time.After(100 * time.Millisecond):
	}
	if n, err := netns.Kill(id, time.Second); n != 0 || err != nil {
		t.Errorf("second Kill = %d, %v; want nothing to do", n, err)
	}
}
