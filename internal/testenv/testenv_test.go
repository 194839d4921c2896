package testenv

import (
	"errors"
	"image"
	"image/color"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeTB records Skipf and Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()                 {}
func (f *fakeTB) Skipf(string, ...any)    { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any)   { f.failed = true }
func (f *fakeTB) Logf(s string, a ...any) {}

func TestRequireNetAdmin_SkipsLocallyFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ci           string
		euid         int
		tun          string
		skip, failed bool
	}{
		{"not root", "", 1000, "/dev/null", true, false},
		{"not root in CI", "true", 1000, "/dev/null", false, true},
		{"no tun", "", 0, "/nonexistent/tun", true, false},
		{"no tun in CI", "true", 0, "/nonexistent/tun", false, true},
		{"ci=false skips", "false", 1000, "/dev/null", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			f := &fakeTB{TB: t}
			requireNetAdmin(f, tc.euid, tc.tun)
			if f.skipped != tc.skip || f.failed != tc.failed {
				t.Errorf("skipped=%v failed=%v, want %v %v", f.skipped, f.failed, tc.skip, tc.failed)
			}
		})
	}
	t.Run("all present", func(t *testing.T) {
		if !hasIP() {
			Missing(t, "the ip command (iproute2)")
		}
		f := &fakeTB{TB: t}
		requireNetAdmin(f, 0, "/dev/null")
		if f.skipped || f.failed {
			t.Errorf("skipped=%v failed=%v with everything present", f.skipped, f.failed)
		}
	})
}

// Every other way a test finds something missing (chromium here) skips
// locally and fails in CI alike.
func TestMissing_SkipsLocallyFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		ci           string
		skip, failed bool
	}{{"", true, false}, {"false", true, false}, {"true", false, true}} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			f := &fakeTB{TB: t}
			if got := firstFile(f, []string{"/nonexistent/chromium"}, "chromium"); got != "" {
				t.Errorf("firstFile returned %q for a missing file", got)
			}
			if f.skipped != tc.skip || f.failed != tc.failed {
				t.Errorf("skipped=%v failed=%v, want %v %v", f.skipped, f.failed, tc.skip, tc.failed)
			}
		})
	}
	f := &fakeTB{TB: t}
	if got := firstFile(f, []string{"/nonexistent/chromium", "/dev/null"}, "chromium"); got != "/dev/null" || f.skipped || f.failed {
		t.Errorf("firstFile = %q (skipped=%v failed=%v), want /dev/null", got, f.skipped, f.failed)
	}
}

func TestColours_CountsQuantisedColoursUpToLimit(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 70, 70))
	if n := Colours(img, 64); n != 1 {
		t.Errorf("blank image: %d colours, want 1", n)
	}
	// 7x7 blocks of 10x10 pixels, each its own colour, all met by the
	// 7-pixel grid; colours 1 apart in 8 bits quantise to one.
	for y := range 70 {
		for x := range 70 {
			img.Set(x, y, color.RGBA{uint8(x / 10 * 32), uint8(y / 10 * 32), uint8(x % 2), 255})
		}
	}
	if n := Colours(img, 64); n != 49 {
		t.Errorf("49 blocks: %d colours, want 49", n)
	}
	if n := Colours(img, 16); n != 16 {
		t.Errorf("limit 16: %d colours", n)
	}
}

func TestNewNetns_CreatedAndRemoved(t *testing.T) {
	RequireNetAdmin(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		name = NewNetns(t, "tenv")
		if !strings.HasPrefix(name, "fbx-t-tenv-") {
			t.Errorf("name %q lacks prefix fbx-t-tenv-", name)
		}
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err != nil {
			t.Fatalf("namespace not created: %v", err)
		}
		other := NewNetns(t, "tenv")
		if other == name {
			t.Errorf("two namespaces with the same name %q", name)
		}
	})
	if _, err := os.Stat(filepath.Join("/run/netns", name)); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there after cleanup (stat: %v)", name, err)
	}
}

func TestNewNetns_BadTag(t *testing.T) {
	f := &fakeTB{TB: t}
	NewNetns(f, "Bad Tag")
	if !f.failed {
		t.Error("bad tag accepted")
	}
}

func TestInNetns_RunsInsideAndRestores(t *testing.T) {
	ns := LoopbackNetns(t, "tenv")
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	for i := 0; i < 20; i++ {
		err := InNetns(ns, func() error {
			var err error
			inside, err = os.Readlink("/proc/thread-self/ns/net")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if inside == self {
			t.Fatalf("fn ran in the test's own namespace %s", self)
		}
	}
	// Every thread of the process is back in the original namespace.
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, p := range tasks {
		if l, err := os.Readlink(p); err == nil && l != self {
			t.Errorf("%s is %s after InNetns, want %s", p, l, self)
		}
	}

	// A socket made inside lives there, whichever thread uses it later.
	var in1, in2 uint64
	if err := InNetns(ns, func() (err error) { in1, err = netnsCookie(); return }); err != nil {
		t.Fatal(err)
	}
	if err := InNetns(ns, func() (err error) { in2, err = netnsCookie(); return }); err != nil {
		t.Fatal(err)
	}
	out, err := netnsCookie()
	if err != nil {
		t.Fatal(err)
	}
	if in1 != in2 || in1 == out {
		t.Errorf("netns cookies inside %d, %d; outside %d: want inside equal and different from outside", in1, in2, out)
	}
	var l net.Listener
	if err := InNetns(ns, func() (err error) { l, err = net.Listen("tcp4", "127.0.0.1:0"); return }); err != nil {
		t.Fatalf("listen inside: %v", err)
	}
	defer l.Close()
	var c net.Conn
	if err := InNetns(ns, func() (err error) { c, err = net.Dial("tcp4", l.Addr().String()); return }); err != nil {
		t.Fatalf("dial inside: %v", err)
	}
	c.Close()

	want := errors.New("from fn")
	if err := InNetns(ns, func() error { return want }); err != want {
		t.Errorf("error from fn: got %v", err)
	}
	if err := InNetns("fbx-t-no-such-ns", func() error { return nil }); err == nil {
		t.Error("no error for a missing namespace")
	}
}

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14+), missing from x/sys/unix:
// a number identifying the namespace of a socket.
const soNetnsCookie = 71

func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie)
}

func TestRun_ExitCodeOutputAndTimeout(t *testing.T) {
	r := Run(10*time.Second, "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("Run = %+v, want exit 3 with out and err", r)
	}
	r = Run(100*time.Millisecond, "sleep", "5")
	if r.Code != -1 || r.Err == nil || !strings.Contains(r.Err.Error(), "timed out after 100ms") {
		t.Errorf("Run of a command past its timeout = %+v, want exit -1, timed out", r)
	}
}
