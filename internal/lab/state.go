package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// State is a lab's state.json: what `lab down` needs to remove it even when
// the daemon is gone, and what the daemon starts from.
type State struct {
	Name    string `json:"name"`
	Hosts   []Host `json:"hosts"`
	Profile string `json:"profile"` // built-in name or absolute file
	Seed    uint64 `json:"seed"`
	Capture string `json:"capture,omitempty"` // absolute path
	MTU     int    `json:"mtu"`
	CPUs    []int  `json:"cpus,omitempty"` // the device's; none: any
	// BusyPoll: how long the device polls after its last packet before it
	// sleeps; 0: it sleeps at once (engine.Config.BusyPoll).
	BusyPoll time.Duration `json:"busy_poll_ns,omitempty"`

	// The daemon, identified by pid and start time so that a reused pid is
	// never signalled; 0 until it was started.
	Daemon Proc `json:"daemon"`
	// The `lab up` that is creating the lab: a second `lab up` of the same
	// name sees the lab in use while this one lives, even before there is
	// a daemon.
	Creator Proc      `json:"creator"`
	Created time.Time `json:"created"`
}

// Proc names a process by pid and start time (field 22 of /proc/PID/stat,
// clock ticks since boot), which together never name two processes.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start_time"`
}

// ProcOf returns the identity of the running process pid.
func ProcOf(pid int) (Proc, error) {
	st, _, err := procStat(pid)
	if err != nil {
		return Proc{}, err
	}
	return Proc{PID: pid, Start: st}, nil
}

// procStat returns pid's start time and state letter ('R', 'S', 'Z' ...).
func procStat(pid int) (start uint64, state byte, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after it start at the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(data[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return start, f[0][0], nil
}

// Alive reports whether the process still runs: same pid, same start time,
// and not a zombie (an orphan nobody reaps still has a /proc entry).
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, state, err := procStat(p.PID)
	return err == nil && st == p.Start && state != 'Z' && state != 'X'
}

// Signal sends sig to the process if it is still the one p names. A pidfd
// pins the process between the identity check and the signal, so a pid
// reused in between is never hit.
func (p Proc) Signal(sig unix.Signal) error {
	if p.PID <= 0 {
		return errors.New("no process")
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !p.Alive() {
		return unix.ESRCH
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// WaitGone polls until the process is gone or d has passed; it reports
// whether it is gone.
func (p Proc) WaitGone(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for p.Alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// ReadState reads lab's state.json; the error wraps fs.ErrNotExist when the
// lab has none.
func ReadState(lab string) (*State, error) {
	data, err := os.ReadFile(statePath(lab))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(lab), err)
	}
	return &s, nil
}

// WriteState replaces lab's state.json atomically (write, then rename), so a
// reader never sees half a file.
func WriteState(s *State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	path := statePath(s.Name)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*.json")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// lockRunDir takes an exclusive lock on RunDir/.lock, serialising the
// check-and-claim of a lab name between concurrent `lab up`s.
func lockRunDir() (unlock func(), err error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(RunDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// labs lists the labs with a runtime directory.
func labs() ([]string, error) {
	ents, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && nameRE.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
