package shell

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
)

// killWait bounds killing what is left in a command's namespace.
const killWait = 2 * time.Second

// lockFile serialises the runs' choice of addresses and the removal of
// dead runs.
const lockFile = ".run.lock"

// RemoveDead removes every run whose faultbox run process is gone (killed
// by SIGKILL, say): it stops the run's device if it still runs, kills what
// is left in the command's namespace, deletes the masquerade table and
// the runtime directory. Runs still going are left alone. It returns what
// it removed; `faultbox run` calls it before each run, and `faultbox
// detach --all` calls it too.
func RemoveDead() ([]string, error) {
	unlock, err := device.LockFile(lockFile)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return removeDead()
}

func removeDead() ([]string, error) {
	runs, err := device.OfKind(device.KindRun)
	errs := []error{err}
	var removed []string
	for _, st := range runs {
		if st.Creator.Alive() {
			continue
		}
		name := st.Name
		r, err := remove(name)
		if len(r) > 0 {
			removed = append(removed, fmt.Sprintf("run %s (%s)", name, strings.Join(r, ", ")))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", name, err))
		}
	}
	return removed, errors.Join(errs...)
}

// remove removes whatever is left of run name, in any state: its device
// (asked to stop, which undoes the placement), the processes in the
// command's namespace, the masquerade table on the host side (found by
// its namespace's identity, wherever this is called from), the runtime
// directory. It returns what it removed.
func remove(name string) ([]string, error) {
	st, err := device.ReadState(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err // a damaged state: not knowing what it is, leave it
	}
	rec, err := decode(st)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	stopped, err := device.StopIfAlive(st)
	if err != nil {
		return nil, err // its ports are in use: leave everything
	}
	if stopped != "" {
		removed = append(removed, stopped)
	}
	if rec.Netns != (netns.ID{}) {
		n, err := netns.Kill(rec.Netns, killWait)
		if err != nil {
			errs = append(errs, err)
		}
		if n > 0 {
			removed = append(removed, fmt.Sprintf("%d processes in the command's namespace", n))
		}
	}
	if path, ok := netns.Find(rec.Host, rec.HostPath); ok {
		gone, err := removeMasqueradeIn(path, name)
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			removed = append(removed, "nft table inet "+tableName(name))
		}
	}
	if err := os.RemoveAll(device.Dir(name)); err != nil {
		errs = append(errs, err)
	} else {
		removed = append(removed, device.Dir(name))
	}
	return removed, errors.Join(errs...)
}

// removeMasqueradeIn deletes run's table in the namespace at path.
func removeMasqueradeIn(path, run string) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return false, err
	}
	return removeMasquerade(c, run)
}

// hostName is how the user knows the host side's namespace: "the host"
// for the first process's, its name under /run/netns, else its identity.
func hostName(id netns.ID, path string) string {
	switch {
	case path == initNetns:
		return "the host"
	case strings.HasPrefix(path, netns.Dir+"/"):
		return strings.TrimPrefix(path, netns.Dir+"/")
	}
	return id.String()
}

// initNetns is the namespace of the system's first process.
const initNetns = "/proc/1/ns/net"

// hostPath returns a path that names namespace id for later (when the
// processes in it now may be gone): init's, or its name in netns.Dir; ""
// if neither does.
func hostPath(id netns.ID) string {
	if got, err := netns.IDOf(initNetns); err == nil && got == id {
		return initNetns
	}
	path, _ := netns.Named(id)
	return path
}
