package shell

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// The command's first process is faultbox itself (`faultbox run-init`,
// started by Run in a new network and mount namespace): it mounts the
// command's /etc/resolv.conf and /sys, says so, and waits until the device
// is ready before it becomes the command (exec keeps its pid). Until then
// its namespace exists for the device to put fbx0 in, and the command
// never sees a moment without its network.
//
// Its file descriptors 3 and 4 are pipes to Run: 3 brings "go", 4 takes
// "ready" or an error.
const (
	initGoFD     = 3
	initReportFD = 4
	initReady    = "ready\n"
	initGo       = "go\n"
)

// Init is the command's first process. It returns only on failure; when
// Run gives up on the run (its pipe closes without "go"), it exits.
func Init(resolv string, argv []string) error {
	goPipe := os.NewFile(initGoFD, "go")
	report := os.NewFile(initReportFD, "report")
	if goPipe == nil || report == nil || len(argv) == 0 {
		return errors.New("run-init is started by faultbox run, not by hand")
	}
	if err := mountViews(resolv); err != nil {
		fmt.Fprintf(report, "%v\n", err)
		os.Exit(1)
	}
	io.WriteString(report, initReady)
	report.Close()
	buf := make([]byte, len(initGo))
	if _, err := io.ReadFull(goPipe, buf); err != nil || string(buf) != initGo {
		os.Exit(1) // faultbox run gave up: it removes the run
	}
	goPipe.Close()
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "faultbox run: %v\n", err)
		os.Exit(127)
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "faultbox run: %s: %v\n", argv[0], err)
	os.Exit(126)
	return nil
}

// mountViews makes the mount namespace private (slave: the host's later
// mounts still appear, none of ours leaks out), puts resolv (if any) over
// /etc/resolv.conf and mounts a /sys that shows the namespace's own
// interfaces, as `ip netns exec` does.
func mountViews(resolv string) error {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making the mounts private: %w", err)
	}
	if resolv != "" {
		if err := unix.Mount(resolv, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mounting the command's /etc/resolv.conf: %w", err)
		}
	}
	// A /sys of the host's namespace would list the host's interfaces;
	// a failure here leaves that, which few programs mind.
	if unix.Unmount("/sys", unix.MNT_DETACH) == nil {
		unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	}
	return nil
}
