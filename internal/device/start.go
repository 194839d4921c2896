package device

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/faultbox/faultbox/profiles"
)

// Claim takes st.Name for a new device of st's kind: refused while a
// device of that name runs (or is being started), and while a dead device
// of another kind left its state behind. A dead one of the same kind is
// first removed with removeDead, which returns what it removed for notes.
// Claim creates the runtime directory and the first state.json, naming
// this process as the creator.
func Claim(st *State, removeDead func() ([]string, error), notes io.Writer) error {
	unlock, err := LockRunDir()
	if err != nil {
		return err
	}
	defer unlock()
	name, kind := st.Name, st.KindOf()
	old, err := ReadState(name)
	switch {
	case err == nil && old.Device.Alive():
		free := "`" + RemoveCommand(old.KindOf(), name) + "` first"
		if old.KindOf() == KindRun {
			free = "let its command end" // detach --all removes only runs whose faultbox died
		}
		return InputErrorf("%s %q is already up (device pid %d); use another --name, or %s", old.KindOf(), name, old.Device.PID, free)
	case err == nil && old.Device.PID == 0 && old.Creator.Alive():
		return InputErrorf("%s %q is being started by pid %d", old.KindOf(), name, old.Creator.PID)
	case err == nil && old.KindOf() != kind:
		return InputErrorf("the name %q belongs to %s whose device died; `%s` removes what is left", name, old.KindOf().WithArticle(), RemoveCommand(old.KindOf(), name))
	}
	removed, err := removeDead()
	if err != nil {
		return fmt.Errorf("%s %s: removing what its dead device left: %w", kind, name, err)
	}
	if len(removed) > 0 {
		fmt.Fprintf(notes, "%s %s: its device had died; removed %s\n", kind, name, strings.Join(removed, ", "))
	}
	if err := os.Mkdir(Dir(name), 0o700); err != nil {
		return err
	}
	if st.Creator, err = ProcOf(os.Getpid()); err != nil {
		return err
	}
	return WriteState(st)
}

// Configure records the kind's placement and what every kind of device
// takes from its command's flags alike: the profile (a built-in's name, or
// a file's absolute path), the seed (seed if given, else the profile's,
// else random) and the capture file's absolute path, whose directory must
// exist.
func (st *State) Configure(placement any, profileArg string, p *profiles.Profile, seed *uint64, capture string) error {
	err := st.Encode(placement)
	if err != nil {
		return err
	}
	if st.Profile, err = ProfileSource(profileArg, p); err != nil {
		return err
	}
	switch {
	case seed != nil:
		st.Seed = *seed
	case p.Seed != nil:
		st.Seed = *p.Seed
	default:
		st.Seed = RandomSeed()
	}
	if capture != "" {
		if st.Capture, err = filepath.Abs(capture); err != nil {
			return err
		}
		if fi, err := os.Stat(filepath.Dir(st.Capture)); err != nil || !fi.IsDir() {
			return InputErrorf("capture %s: directory %s does not exist", capture, filepath.Dir(st.Capture))
		}
	}
	return nil
}

// RandomSeed is a random seed that fits any signed 64-bit reader.
func RandomSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 1
}

// Executable is exe, or if empty this program: the faultbox binary that
// Start runs as the device.
func Executable(exe string) (string, error) {
	if exe != "" {
		return exe, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the faultbox binary to run the device: %w", err)
	}
	return exe, nil
}

// Start runs `EXE device --name N` (exe: the faultbox binary) as the device
// process of st, in a session of its own (so the terminal's signals and
// hang-up do not reach it), on st.CPUs, with its output in device.log, and
// records it in state.json. The channel reports its exit.
func Start(st *State, exe string) (<-chan error, error) {
	logf, err := os.OpenFile(LogPath(st.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "device", "--name", st.Name)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := withCPUs(st.CPUs, cmd.Start); err != nil {
		return nil, fmt.Errorf("starting the device (%s): %w", exe, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The child exists until we reap it, so its identity can be read even
	// if it has already failed.
	p, err := ProcOf(cmd.Process.Pid)
	if err == nil {
		st.Device = p
		err = WriteState(st)
	}
	if err != nil {
		cmd.Process.Kill()
		<-exited
		return nil, err
	}
	return exited, nil
}

// WaitReady waits until the device called name answers on its control
// socket, which it opens only once traffic flowed through it. tick is
// called every 50 ms while it waits (for progress).
func WaitReady(name string, exited <-chan error, sigc <-chan os.Signal, timeout time.Duration, tick func()) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-exited:
			if err == nil {
				err = errors.New("exit status 0")
			}
			return fmt.Errorf("the device failed while starting (%v)", err)
		case sig := <-sigc:
			return fmt.Errorf("interrupted (%v) while starting", sig)
		case <-t.C:
		}
		if answers(name, time.Second) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the device was not ready within %s", timeout)
		}
		tick()
	}
}

// LogTail returns the last n lines of the device's log, or a note why not.
func LogTail(name string, n int) string {
	path := LogPath(name)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
