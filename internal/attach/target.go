package attach

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
)

// Target is the network namespace a device is attached to: where to find
// it, and its identity (device and inode of its nsfs file), which stays
// the same whichever path reaches it.
type Target struct {
	// Path is where the namespace was found: /proc/PID/ns/net, a file in
	// /run/netns, or "" for the namespace of the process itself (--netns
	// self: reached without setns, so without CAP_SYS_ADMIN).
	Path string `json:"path"`
	// PID is the process named by --pid, and its start time: a later pid
	// of the same number is never taken for it.
	PID device.Proc `json:"pid,omitzero"`
	Dev uint64      `json:"dev"`
	Ino uint64      `json:"ino"`
	// Said is how the user named it, for messages.
	Said string `json:"said"`
}

// String names the target for people.
func (t Target) String() string { return t.Said }

// ResolveTarget finds the namespace of --pid or --netns (a name in
// /run/netns, a path, or "self").
func ResolveTarget(pid int, ns string) (Target, error) {
	switch {
	case pid != 0 && ns != "":
		return Target{}, device.InputErrorf("give --pid or --netns, not both")
	case pid < 0:
		return Target{}, device.InputErrorf("--pid %d: want a process id", pid)
	case pid > 0:
		p, err := device.ProcOf(pid)
		if err != nil || !p.Alive() {
			return Target{}, device.InputErrorf("--pid %d: no such process", pid)
		}
		t := Target{Path: fmt.Sprintf("/proc/%d/ns/net", pid), PID: p, Said: fmt.Sprintf("the network namespace of pid %d", pid)}
		return t, t.identify()
	case ns == "self":
		t := Target{Said: "this network namespace (--netns self)"}
		return t, t.identify()
	case ns != "":
		t := Target{Path: netns.Path(ns), Said: "network namespace " + ns}
		return t, t.identify()
	}
	return Target{}, device.InputErrorf("say where to attach: --pid PID, or --netns PATH|NAME|self")
}

// identify fills in the namespace's identity, checking that Path is one.
func (t *Target) identify() error {
	path := t.Path
	if path == "" {
		path = "/proc/thread-self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return device.InputErrorf("%s: %s does not exist", t.Said, path)
		}
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%s: %s: permission denied: reaching another process's namespace needs CAP_SYS_ADMIN (and CAP_SYS_PTRACE for a process with more capabilities); inside the namespace, --netns self needs only CAP_NET_ADMIN", t.Said, path)
		}
		return fmt.Errorf("%s: %w", t.Said, err)
	}
	var nsfs unix.Statfs_t
	if err := unix.Statfs(path, &nsfs); err != nil || nsfs.Type != unix.NSFS_MAGIC {
		return device.InputErrorf("%s: %s is not a network namespace", t.Said, path)
	}
	t.Dev, t.Ino = st.Dev, st.Ino
	if t.Same("/proc/thread-self/ns/net") {
		t.Path = "" // our own namespace, however named: reached without setns (CAP_SYS_ADMIN)
	}
	return nil
}

// ID is the namespace's identity.
func (t Target) ID() netns.ID { return netns.ID{Dev: t.Dev, Ino: t.Ino} }

// Same reports whether path reaches the namespace t names.
func (t Target) Same(path string) bool {
	id, err := netns.IDOf(path)
	return err == nil && id == t.ID()
}

// Find returns a path to the namespace now: "" if it is this process's
// own, else the one recorded if it still reaches it, else its name in
// /run/netns or that of any process in it (netns.Find). ok is false if
// the namespace is gone (no process or name holds it any more).
func (t Target) Find() (path string, ok bool) {
	if t.Same("/proc/thread-self/ns/net") {
		return "", true
	}
	hint := t.Path
	if t.PID.PID != 0 && !t.PID.Alive() {
		hint = "" // the recorded /proc/PID is another process's now, if any
	}
	return netns.Find(t.ID(), hint)
}
