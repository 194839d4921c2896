package netns_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/faultbox/faultbox/internal/netns"
	"github.com/faultbox/faultbox/internal/testenv"
)

func inode(t *testing.T) string {
	t.Helper()
	link, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return link
}

func TestDo_RunsInsideTheNamespaceAndComesBack(t *testing.T) {
	testenv.RequireNetAdmin(t)
	ns := testenv.NewNetns(t, "nsdo")
	outside := inode(t)
	var inside string
	if err := netns.Do(ns, func() error { inside = inode(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside == outside || inside == "" {
		t.Fatalf("fn ran in %q, the caller is in %q", inside, outside)
	}
	if err := netns.Do("", func() error { inside = inode(t); return nil }); err != nil || inside != outside {
		t.Fatalf(`Do("") ran in %q (%v), want the current namespace %q`, inside, err, outside)
	}
}

func TestDo_ErrorsNameTheNamespaceAndPassFnErrors(t *testing.T) {
	err := netns.Do("fbx-no-such-namespace", func() error { t.Fatal("fn ran"); return nil })
	if err == nil || !strings.Contains(err.Error(), "fbx-no-such-namespace") {
		t.Fatalf("missing namespace: %v", err)
	}
	testenv.RequireNetAdmin(t)
	ns := testenv.NewNetns(t, "nserr")
	want := errors.New("from fn")
	if err := netns.Do(ns, func() error { return want }); !errors.Is(err, want) {
		t.Fatalf("got %v, want fn's error", err)
	}
}
