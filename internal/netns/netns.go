// Package netns creates, lists and deletes named network namespaces (as
// `ip netns` does, without the ip command) and runs code inside one.
// Sockets and TUN devices stay in the namespace they were created in, so a
// function that creates them on a thread inside a namespace leaves them
// usable from anywhere afterwards.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir holds the named namespaces, as ip netns keeps them.
const Dir = "/run/netns"

// Path turns a namespace name (as in /run/netns) into its path; a path is
// returned as it is.
func Path(ns string) string {
	if strings.Contains(ns, "/") {
		return ns
	}
	return filepath.Join(Dir, ns)
}

// Create makes a new network namespace named name, as `ip netns add`
// does: a file in Dir with the namespace bind-mounted on it.
func Create(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("create namespace %s: %w", name, err)
			return
		}
		defer orig.Close()
		// NewNamed moves this thread into the new namespace.
		h, err := vnetns.NewNamed(name)
		if err == nil {
			h.Close()
		} else {
			err = fmt.Errorf("create namespace %s: %w", name, err)
		}
		if vnetns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the goroutine ends locked and the runtime ends the thread
		errc <- err
	}()
	return <-errc
}

// List returns the names of the namespaces in Dir.
func List() ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// Delete removes the name of namespace ns as `ip netns del` does: detach
// its bind mount and remove the file. The namespace itself ends with its
// last process and interface.
func Delete(ns string) error {
	path := Path(ns)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("delete namespace %s: unmount: %w", ns, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	return nil
}

// Handle opens a netlink handle that works inside namespace ns (a name or
// a path; "" means the current one). Close it when done.
func Handle(ns string) (*netlink.Handle, error) {
	if ns == "" {
		return netlink.NewHandle()
	}
	h, err := vnetns.GetFromPath(Path(ns))
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", ns, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	return nh, nil
}

// Do runs fn on an OS thread inside namespace ns (a name or a path; ""
// means the current one) and returns its error. Goroutines fn starts do
// not run in ns. The thread goes back to its own namespace afterwards; if
// it cannot, it is discarded rather than reused in the wrong namespace.
func Do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := runIn(Path(ns), fn)
		if restored {
			runtime.UnlockOSThread()
		} // else the goroutine ends locked and the runtime ends the thread
		errc <- err
	}()
	return <-errc
}

func runIn(path string, fn func() error) (restored bool, err error) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, fmt.Errorf("current network namespace: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	defer func() {
		restored = unix.Setns(orig, unix.CLONE_NEWNET) == nil
	}()
	return true, fn()
}
