package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
)

// ip runs the ip command and returns its error with its output.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// listNamespaces returns the names ip netns list shows.
func listNamespaces() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	return parseNetnsList(out), nil
}

// parseNetnsList reads `ip netns list` output: "name" or "name (id: 3)".
func parseNetnsList(out []byte) []string {
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func netnsExists(ns string) bool {
	_, err := os.Stat(netns.Path(ns))
	return err == nil
}

// createHost makes host's namespace with lo up and its /etc/hosts.
func createHost(h Host, hostsFile []byte) error {
	if err := ip("netns", "add", h.Namespace); err != nil {
		return err
	}
	if err := ip("-n", h.Namespace, "link", "set", "lo", "up"); err != nil {
		return err
	}
	dir := filepath.Dir(hostsFilePath(h.Namespace))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(hostsFilePath(h.Namespace), hostsFile, 0o644)
}

// addressHost gives the host's fbx0 its addresses and the lab's routes.
// IPv6 skips duplicate address detection: the address is usable at once and
// nobody else can hold it on a point-to-point link.
func addressHost(h Host) error {
	n := h.Namespace
	for _, args := range [][]string{
		{"-n", n, "addr", "add", h.IPv4.String() + "/32", "dev", HostInterface},
		{"-n", n, "-6", "addr", "add", h.IPv6.String() + "/128", "dev", HostInterface, "nodad"},
		{"-n", n, "route", "add", Net4.String(), "dev", HostInterface, "src", h.IPv4.String()},
		{"-n", n, "-6", "route", "add", Net6.String(), "dev", HostInterface, "src", h.IPv6.String()},
	} {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// netnsPids lists the processes whose network namespace is ns, as
// `ip netns pids` does (same device and inode as /run/netns/NS), without
// running a program: teardown must be quick even on a busy machine.
func netnsPids(ns string) ([]int, error) {
	var target unix.Stat_t
	if err := unix.Stat(netns.Path(ns), &target); err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
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
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && st.Dev == target.Dev && st.Ino == target.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNetnsProcs SIGKILLs every process in namespace ns except this one
// (whose threads may visit a namespace to open a socket there), repeating
// for processes forked meanwhile, for at most about a second. It returns how
// many it killed.
func killNetnsProcs(ns string) (int, error) {
	self := os.Getpid()
	killed := map[int]bool{}
	deadline := time.Now().Add(time.Second)
	for {
		pids, err := netnsPids(ns)
		if err != nil {
			if !netnsExists(ns) {
				return len(killed), nil
			}
			return len(killed), err
		}
		var left []device.Proc
		for _, pid := range pids {
			if pid == self {
				continue
			}
			if p, err := device.ProcOf(pid); err == nil && p.Alive() {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("namespace %s: %d processes survive SIGKILL", ns, len(left))
		}
		for _, p := range left {
			if p.Signal(unix.SIGKILL) == nil {
				killed[p.PID] = true
			}
		}
		for _, p := range left {
			p.WaitGone(200 * time.Millisecond)
		}
	}
}

// deleteNetns removes the name of namespace ns as `ip netns del` does:
// detach its bind mount and remove the file. The namespace itself ends with
// its last process and interface.
func deleteNetns(ns string) error {
	path := netns.Path(ns)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("delete namespace %s: unmount: %w", ns, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	return nil
}

// removeNetns kills the namespace's processes and deletes it and its /etc
// files. It returns what it removed, for `lab down` to print.
func removeNetns(ns string) ([]string, error) {
	var removed []string
	var errs []error
	if netnsExists(ns) {
		n, err := killNetnsProcs(ns)
		if err != nil {
			errs = append(errs, err)
		}
		if err := deleteNetns(ns); err != nil {
			errs = append(errs, err)
		} else if n > 0 {
			removed = append(removed, fmt.Sprintf("namespace %s (killed %d processes)", ns, n))
		} else {
			removed = append(removed, "namespace "+ns)
		}
	}
	etc := filepath.Join(NetnsEtc, ns)
	if _, err := os.Stat(etc); err == nil {
		if err := os.RemoveAll(etc); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, etc)
		}
	}
	return removed, errors.Join(errs...)
}

// quietIPv6 stops the kernel's own IPv6 chatter (router solicitations) on
// interfaces created later in ns, so the device's counters show only the
// traffic of the programs in the lab.
func quietIPv6(ns string) error {
	return netns.Do(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/default/router_solicitations", []byte("0\n"), 0)
	})
}
