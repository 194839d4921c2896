package device

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/profiles"
)

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

// Dial returns a client of the control API of the running device called
// name.
func Dial(name string) (*client.Client, error) {
	if _, err := Running(name); err != nil {
		return nil, err
	}
	c, err := client.Dial(socketPath(name))
	if err != nil {
		return nil, fmt.Errorf("device is not running: %w", err)
	}
	return c, nil
}

// apiErr makes the device's refusal of a request (a 4xx) an input error,
// which the CLI reports with exit status 2.
func apiErr(err error) error {
	var ce *client.Error
	if errors.As(err, &ce) && ce.StatusCode >= 400 && ce.StatusCode < 500 {
		return &InputError{err}
	}
	return err
}

// GetStatus asks the device called name for its status.
func GetStatus(name string) (*client.Status, error) {
	c, err := Dial(name)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, apiErr(err))
	}
	return st, nil
}

// Events returns the events the device called name recorded from sequence
// number from on, and the number to ask for next time.
func Events(name string, from uint64) ([]client.Event, uint64, error) {
	c, err := Dial(name)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := c.Events(ctx, from)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, apiErr(err))
	}
	next := from
	if len(evs) > 0 {
		next = evs[len(evs)-1].Seq + 1
	}
	return evs, next, nil
}

// Apply switches the device called name to another profile without
// dropping connections. The profile is read and checked here first (the
// device opens no file a client names: it gets the text): a bad one
// changes nothing. The seed is seed if given, else the profile's, else the
// device's current one. It returns the profile's name and the seed now in
// force.
func Apply(name, nameOrFile string, seed *uint64) (string, uint64, error) {
	c, err := Dial(name)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	p, err := profiles.Load(nameOrFile)
	if err != nil {
		return "", 0, err
	}
	src, err := ProfileSource(nameOrFile, p)
	if err != nil {
		return "", 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.Apply(ctx, p.YAML, client.ApplyOptions{Source: src, Seed: seed})
	if err != nil {
		return "", 0, fmt.Errorf("%s: apply %s: %w", name, nameOrFile, apiErr(err))
	}
	return got.Name, got.Seed, nil
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
	if err := shutdown(name); err != nil {
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

// StopIfAlive stops the device of st if it runs (Stop) and says what it
// removed, as the removals list it; "" if it was not running.
func StopIfAlive(st *State) (string, error) {
	if !st.Device.Alive() {
		return "", nil
	}
	how, err := Stop(st.Name, st.Device)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("device pid %d (%s)", st.Device.PID, how), nil
}

// shutdown asks the device called name to stop, over its control socket.
func shutdown(name string) error {
	c, err := client.Dial(socketPath(name))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Shutdown(ctx)
}

// answers reports whether the device called name answers on its control
// socket within timeout.
func answers(name string, timeout time.Duration) bool {
	c, err := client.Dial(socketPath(name))
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = c.Status(ctx)
	return err == nil
}
