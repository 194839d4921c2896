package device

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/profiles"
)

// ErrNotRunning means the device does not answer on its control socket.
var ErrNotRunning = errors.New("device is not running")

// RemoveCommand is the command that removes a device of kind k, also after
// its process died.
func RemoveCommand(k Kind, name string) string {
	switch k {
	case KindAttach:
		return "faultbox detach --name " + name
	case KindRun:
		return "faultbox detach --all"
	}
	return "faultbox lab down --name " + name
}

// Running returns the state of the device called name if its process is
// alive, or an error that says whether there is no such device or its
// process died.
func Running(name string) (*State, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	st, err := ReadState(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, InputErrorf("%q is not up: no lab, attach or run has that name", name)
	}
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%s: %w: a device's runtime directory is root's (mode 0700); run this as root", name, err)
	}
	if err != nil {
		return nil, err
	}
	if !st.Device.Alive() {
		return nil, InputErrorf("%s %q is not running: its device (pid %d) has died; `%s` removes what is left",
			st.KindOf(), name, st.Device.PID, RemoveCommand(st.KindOf(), name))
	}
	return st, nil
}

// GetStatus asks the device called name for its status.
func GetStatus(name string) (*Status, error) {
	if _, err := Running(name); err != nil {
		return nil, err
	}
	resp, err := call(name, request{Op: "status"}, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("%s: the device sent no status", name)
	}
	return resp.Status, nil
}

// Events returns the events the device called name recorded from sequence
// number from on, and the number to ask for next time.
func Events(name string, from uint64) ([]EventRecord, uint64, error) {
	if _, err := Running(name); err != nil {
		return nil, 0, err
	}
	resp, err := call(name, request{Op: "events", From: from}, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	return resp.Events, resp.Next, nil
}

// Apply switches the device called name to another profile without
// dropping connections. The profile is read and checked here first (the
// device opens no file a client names): a bad one changes nothing. The
// seed is seed if given, else the profile's, else the device's current
// one. It returns the profile's name and the seed now in force.
func Apply(name, nameOrFile string, seed *uint64) (string, uint64, error) {
	if _, err := Running(name); err != nil {
		return "", 0, err
	}
	p, err := profiles.Load(nameOrFile)
	if err != nil {
		return "", 0, err
	}
	src, err := ProfileSource(nameOrFile, p)
	if err != nil {
		return "", 0, err
	}
	resp, err := call(name, request{Op: "apply", Profile: src, YAML: string(p.YAML), Seed: seed}, 10*time.Second)
	if err != nil {
		return "", 0, fmt.Errorf("%s: apply %s: %w", name, nameOrFile, err)
	}
	return resp.Profile, resp.Seed, nil
}

// ProfileSource is how a device records its profile: a built-in's name, or
// a file's absolute path (the device does not share the caller's
// directory).
func ProfileSource(arg string, p *profiles.Profile) (string, error) {
	if strings.HasPrefix(p.File, "builtin/") {
		return arg, nil
	}
	return filepath.Abs(arg)
}

// Stop asks the device process p of the device called name to shut down
// (it then undoes its placement itself), falls back to SIGTERM if it does
// not answer, and SIGKILLs it after 2 s. It says how it went.
func Stop(name string, p Proc) (string, error) {
	if _, err := call(name, request{Op: "shutdown"}, time.Second); err != nil {
		p.Signal(unix.SIGTERM)
	}
	if p.WaitGone(2 * time.Second) {
		return "stopped", nil
	}
	if err := p.Signal(unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return "", fmt.Errorf("kill device pid %d: %w", p.PID, err)
	}
	if p.WaitGone(time.Second) {
		return "killed after 2s", nil
	}
	return "", fmt.Errorf("device pid %d survives SIGKILL", p.PID)
}
