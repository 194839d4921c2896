package netns

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ID identifies a network namespace for as long as it exists: the device
// and inode of its nsfs file, the same through every path that names it
// (/run/netns/NAME, /proc/PID/ns/net). Unnamed namespaces, which vanish
// with their last process, are known by it alone.
type ID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// IDOf returns the identity of namespace ns (a name or a path).
func IDOf(ns string) (ID, error) {
	var st unix.Stat_t
	if err := unix.Stat(Path(ns), &st); err != nil {
		return ID{}, fmt.Errorf("network namespace %s: %w", ns, err)
	}
	return ID{Dev: st.Dev, Ino: st.Ino}, nil
}

// Current returns the identity of the calling thread's namespace.
func Current() (ID, error) { return IDOf("/proc/thread-self/ns/net") }

func (id ID) String() string { return fmt.Sprintf("net:[%d]", id.Ino) }

// Pids lists the processes whose network namespace is id, as `ip netns
// pids` does, without running a program. Zombies have no namespace left
// and are not listed.
func Pids(id ID) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if in(pid, id) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// in reports whether process pid is in namespace id.
func in(pid int, id ID) bool {
	got, err := IDOf("/proc/" + strconv.Itoa(pid) + "/ns/net")
	return err == nil && got == id
}

// Find returns a path that opens namespace id: hint if it still names id,
// else its name in Dir, else the namespace of a process in it; ok is false
// when none does (then it is gone, or held only by an interface, an open
// file or a mount elsewhere).
func Find(id ID, hint string) (path string, ok bool) {
	if hint != "" {
		if got, err := IDOf(hint); err == nil && got == id {
			return hint, true
		}
	}
	if path, ok := Named(id); ok {
		return path, true
	}
	pids, _ := Pids(id)
	for _, pid := range pids {
		p := "/proc/" + strconv.Itoa(pid) + "/ns/net"
		if got, err := IDOf(p); err == nil && got == id {
			return p, true
		}
	}
	return "", false
}

// Named returns the path in Dir that names namespace id, if one does: a
// path that stays valid when the processes in it are gone.
func Named(id ID) (path string, ok bool) {
	names, _ := List()
	for _, n := range names {
		if got, err := IDOf(n); err == nil && got == id {
			return Path(n), true
		}
	}
	return "", false
}

// Kill SIGKILLs every process in namespace id but this one (whose threads
// may visit a namespace to open a socket there), again for processes
// forked meanwhile, for at most d. It returns how many it killed. A pidfd
// pins each process while its namespace is checked, so a pid reused in
// between is never hit.
func Kill(id ID, d time.Duration) (int, error) {
	self := os.Getpid()
	killed := map[int]bool{}
	deadline := time.Now().Add(d)
	for {
		pids, err := Pids(id)
		if err != nil {
			return len(killed), err
		}
		pids = without(pids, self)
		if len(pids) == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("%s: %d processes survive SIGKILL", id, len(pids))
		}
		for _, pid := range pids {
			if kill(pid, id) == nil {
				killed[pid] = true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func kill(pid int, id ID) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !in(pid, id) {
		return errors.New("not in the namespace")
	}
	return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

func without(pids []int, pid int) []int {
	out := pids[:0]
	for _, p := range pids {
		if p != pid {
			out = append(out, p)
		}
	}
	return out
}
