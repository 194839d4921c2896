package lab

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/faultbox/faultbox/internal/device"
)

// Exec runs argv in host's namespace of lab through `ip netns exec`, which
// also mounts the lab's /etc/hosts, with the given stdio. It returns the
// command's exit status (128+N if signal N ended it). SIGINT, SIGTERM and
// SIGHUP sent to this process are passed on to the command.
func Exec(lab, host string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return 0, device.InputErrorf("no command to run (faultbox lab exec HOST -- CMD [ARGS...])")
	}
	if err := CheckPrivileges(); err != nil {
		return 0, err
	}
	st, err := device.Running(lab)
	if err != nil {
		return 0, err
	}
	hosts, err := Hosts(st)
	if err != nil {
		return 0, err
	}
	i := slices.IndexFunc(hosts, func(h Host) bool { return h.Name == host })
	if i < 0 {
		names := make([]string, len(hosts))
		for j, h := range hosts {
			names[j] = h.Name
		}
		return 0, device.InputErrorf("lab %s has no host %q (hosts: %s)", lab, host, strings.Join(names, ", "))
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", hosts[i].Namespace}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigc)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case sig := <-sigc:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}
