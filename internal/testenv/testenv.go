// Package testenv holds the helpers tests need to run against real network
// namespaces and TUN devices: a root check that skips locally but fails in
// CI, throwaway namespaces removed on cleanup, and running code inside one.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/faultbox/faultbox/internal/netns"
)

// RequireNetAdmin skips the test unless it runs as root with /dev/net/tun
// and the ip command available. When CI=true it fails instead: CI must run
// these tests, not silently skip them.
func RequireNetAdmin(t testing.TB) {
	t.Helper()
	requireNetAdmin(t, os.Geteuid(), "/dev/net/tun")
}

func requireNetAdmin(t testing.TB, euid int, tunPath string) {
	t.Helper()
	var missing string
	switch {
	case euid != 0:
		missing = "root"
	case !exists(tunPath):
		missing = tunPath
	case !hasIP():
		missing = "the ip command (iproute2)"
	}
	if missing != "" {
		Missing(t, missing)
	}
}

// Missing ends a test for want of what (a command, a device, a privilege):
// it skips the test, but fails it when CI=true, since CI must run every
// test rather than skip it.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("test needs %s, which CI must provide", what)
		return // Fatalf does not return, except for fakes in tests
	}
	t.Skipf("test needs %s", what)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func hasIP() bool {
	_, err := exec.LookPath("ip")
	return err == nil
}

var tagRE = regexp.MustCompile(`^[a-z0-9]{1,8}$`)

// NewNetns creates a network namespace named "fbx-t-<tag>-<random>" (tag:
// 1-8 lowercase letters or digits), removes it when the test ends, and
// returns its name. Killing processes the test started in it is the
// caller's job (register that cleanup after this call so it runs first).
func NewNetns(t testing.TB, tag string) string {
	t.Helper()
	if !tagRE.MatchString(tag) {
		t.Fatalf("testenv: netns tag %q: want 1-8 of [a-z0-9]", tag)
		return ""
	}
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	name := "fbx-t-" + tag + "-" + hex.EncodeToString(r[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("testenv: ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("testenv: ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
	})
	return name
}

// LoopbackNetns is NewNetns for a test that needs root and only the
// namespace's loopback (127.0.0.1 and ::1 there, never the host's): it
// calls RequireNetAdmin and brings lo up.
func LoopbackNetns(t testing.TB, tag string) string {
	t.Helper()
	RequireNetAdmin(t)
	ns := NewNetns(t, tag)
	IP(t, ns, "link", "set", "lo", "up")
	return ns
}

// IP runs "ip -n ns args..." and fails the test on error. A convenience for
// giving test namespaces addresses and routes.
func IP(t testing.TB, ns string, args ...string) {
	t.Helper()
	args = append([]string{"-n", ns}, args...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
}

// InNetns runs fn on an OS thread inside namespace ns (a name in /run/netns
// or a path), for creating sockets there: a socket stays in the namespace it
// was created in, so it may be used from anywhere after fn returns. Other
// goroutines fn starts do NOT run in ns. The thread is returned to its
// original namespace afterwards, or discarded if that fails.
func InNetns(ns string, fn func() error) error { return netns.Do(ns, fn) }
