package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// faultbox is the binary under test, built once by TestMain.
var faultbox string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fbx-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	faultbox = filepath.Join(dir, "faultbox")
	// The test runs in e2e/; the command is one directory up. The
	// faultbox_testhooks tag adds the crash trigger the crash-safety tests
	// use (internal/device/debugpanic.go).
	build := exec.Command("go", "build", "-tags", "faultbox_testhooks", "-o", faultbox, "../cmd/faultbox")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building faultbox:", err)
		return 1
	}
	return m.Run()
}
