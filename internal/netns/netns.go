// Package netns runs code inside a network namespace. Sockets and TUN
// devices stay in the namespace they were created in, so a function that
// creates them on a thread inside a namespace leaves them usable from
// anywhere afterwards.
package netns

import (
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Path turns a namespace name (as in /run/netns) into its path; a path is
// returned as it is.
func Path(ns string) string {
	if strings.Contains(ns, "/") {
		return ns
	}
	return "/run/netns/" + ns
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
