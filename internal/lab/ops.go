package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/faultbox/faultbox/profiles"
)

// Apply switches lab's profile without dropping connections. The profile is
// loaded and checked here first: a bad one changes nothing. The seed is
// seed if given, else the profile's, else the lab's current one. It returns
// the profile's name and the seed now in force.
func Apply(lab, nameOrFile string, seed *uint64) (string, uint64, error) {
	if err := CheckPrivileges(); err != nil {
		return "", 0, err
	}
	st, err := running(lab)
	if err != nil {
		return "", 0, err
	}
	p, err := profiles.Load(nameOrFile)
	if err != nil {
		return "", 0, err
	}
	if _, err := p.Chain(0, Resolver(st.Hosts)); err != nil {
		return "", 0, err
	}
	src, err := source(nameOrFile, p)
	if err != nil {
		return "", 0, err
	}
	resp, err := call(lab, Request{Op: "apply", Profile: src, YAML: string(p.YAML), Seed: seed}, 10*time.Second)
	if err != nil {
		return "", 0, fmt.Errorf("lab %s: apply %s: %w", lab, nameOrFile, err)
	}
	return resp.Profile, resp.Seed, nil
}

// Exec runs argv in host's namespace of lab through `ip netns exec`, which
// also mounts the lab's /etc/hosts, with the given stdio. It returns the
// command's exit status (128+N if signal N ended it). SIGINT, SIGTERM and
// SIGHUP sent to this process are passed on to the command.
func Exec(lab, host string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return 0, inputErrorf("no command to run (faultbox lab exec HOST -- CMD [ARGS...])")
	}
	if err := CheckPrivileges(); err != nil {
		return 0, err
	}
	st, err := running(lab)
	if err != nil {
		return 0, err
	}
	i := slices.IndexFunc(st.Hosts, func(h Host) bool { return h.Name == host })
	if i < 0 {
		names := make([]string, len(st.Hosts))
		for j, h := range st.Hosts {
			names[j] = h.Name
		}
		return 0, inputErrorf("lab %s has no host %q (hosts: %s)", lab, host, strings.Join(names, ", "))
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", st.Hosts[i].Namespace}, argv...)...)
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
