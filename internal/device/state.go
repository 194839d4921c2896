package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// RunDir holds one runtime directory per device. A variable so that unit
// tests can point it elsewhere; the CLI never changes it.
var RunDir = "/run/faultbox"

// Kind says how a device's ports are placed, and so what undoes it.
type Kind string

const (
	KindLab    Kind = "lab"    // namespaces of its own, one per host (lab up)
	KindAttach Kind = "attach" // two ports inside an existing namespace (attach)
	KindRun    Kind = "run"    // one fresh namespace for one command (run)
)

// WithArticle is the kind with its article, for messages: "a lab", "an
// attach".
func (k Kind) WithArticle() string {
	if k == KindAttach {
		return "an attach"
	}
	return "a " + string(k)
}

// State is a device's state.json: what the device starts from, and what
// removing it needs even when the device process is gone.
type State struct {
	Name    string `json:"name"`
	Kind    Kind   `json:"kind"`
	Profile string `json:"profile"` // built-in name or absolute file
	Seed    uint64 `json:"seed"`
	Capture string `json:"capture,omitempty"` // absolute path
	MTU     int    `json:"mtu"`
	CPUs    []int  `json:"cpus,omitempty"` // the device's; none: any
	// BusyPoll: how long the device polls after its last packet before it
	// sleeps; 0: it sleeps at once; engine.PollAlways: never
	// (engine.Config.BusyPoll).
	BusyPoll time.Duration `json:"busy_poll_ns,omitempty"`
	// API, if set, is a TCP address the control API also serves, with a
	// bearer token; a non-loopback one needs APIAllowRemote.
	API            string `json:"api,omitempty"`
	APIAllowRemote bool   `json:"api_allow_remote,omitempty"`
	// APITokenFile, if set, holds the API's bearer token (a Kubernetes
	// Secret's, say); else the device makes a random one, api.token.
	APITokenFile string `json:"api_token_file,omitempty"`
	// Placement is the kind's own record: where the ports go and what
	// undoing that needs (a lab's hosts; what attach changed).
	Placement json.RawMessage `json:"placement,omitempty"`

	// The device process, identified by pid and start time so that a
	// reused pid is never signalled; 0 until it was started.
	Device Proc `json:"device"`
	// The command that is creating the device: a second one of the same
	// name sees the name in use while this one lives, even before there
	// is a device process.
	Creator Proc      `json:"creator"`
	Created time.Time `json:"created"`
}

// KindOf is the state's kind; a state written before kinds existed is a
// lab's.
func (s *State) KindOf() Kind {
	if s.Kind == "" {
		return KindLab
	}
	return s.Kind
}

// WantKind refuses a state of another kind than k, naming what it is.
func (s *State) WantKind(k Kind) error {
	if s.KindOf() != k {
		return InputErrorf("%q is not %s but %s", s.Name, k.WithArticle(), s.KindOf().WithArticle())
	}
	return nil
}

// DecodeAs reads the placement record of a state of kind k into v.
func (s *State) DecodeAs(k Kind, v any) error {
	if err := s.WantKind(k); err != nil {
		return err
	}
	return s.Decode(v)
}

// Decode reads the placement record into v.
func (s *State) Decode(v any) error {
	if len(s.Placement) == 0 {
		return fmt.Errorf("%s: no placement recorded", statePath(s.Name))
	}
	if err := json.Unmarshal(s.Placement, v); err != nil {
		return fmt.Errorf("%s: placement: %w", statePath(s.Name), err)
	}
	return nil
}

// Encode records v as the placement.
func (s *State) Encode(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.Placement = data
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)

// CheckName returns an error unless name is a valid device name: 1-16 of
// lowercase letters, digits and '-', not starting with '-'. Labs, attaches
// and runs share one name space (their runtime directories).
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return InputErrorf("name %q: want 1-16 lowercase letters, digits or '-', starting with a letter or digit (e.g. default, web-1)", name)
	}
	return nil
}

// Dir is the runtime directory of the device called name.
func Dir(name string) string { return filepath.Join(RunDir, name) }

// Paths inside a device's runtime directory.
func statePath(name string) string  { return filepath.Join(Dir(name), "state.json") }
func socketPath(name string) string { return filepath.Join(Dir(name), "control.sock") }

// LogPath is the device process's log (its stderr).
func LogPath(name string) string { return filepath.Join(Dir(name), "device.log") }

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

// ReadState reads the device's state.json; the error wraps fs.ErrNotExist
// when there is none.
func ReadState(name string) (*State, error) {
	data, err := os.ReadFile(statePath(name))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(name), err)
	}
	return &s, nil
}

// WriteState replaces the device's state.json atomically (write, then rename), so a
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

// LockRunDir takes an exclusive lock on RunDir/.lock, serialising the
// check-and-claim of a name between concurrent commands.
func LockRunDir() (unlock func(), err error) { return LockFile(".lock") }

// LockFile takes an exclusive lock on RunDir/name, for a kind's own
// choices that must not race (runs: their addresses). It must not be
// ".lock", which Claim takes.
func LockFile(name string) (unlock func(), err error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(RunDir, name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// Names lists the devices with a runtime directory, of every kind.
func Names() ([]string, error) {
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

// OfKind returns the states of the devices of kind k, dead or alive, in
// name order. A runtime directory without a readable state.json is a
// lab's, its state only its name: labs are the kind from before kinds,
// and lab down removes what a half-made one left.
func OfKind(k Kind) ([]*State, error) {
	names, err := Names()
	var out []*State
	for _, n := range names {
		st, serr := ReadState(n)
		if serr != nil {
			st = &State{Name: n}
		}
		if st.KindOf() == k {
			out = append(out, st)
		}
	}
	return out, err
}

// Only is name if given, else the name of the only device of kind k, or
// of any kind if k is "". With none or several to pick from, it returns an
// input error that says so.
func Only(name string, k Kind) (string, error) {
	if name != "" {
		return name, nil
	}
	names, err := Names()
	what := "devices are up"
	if k != "" {
		var sts []*State
		sts, err = OfKind(k)
		names = names[:0]
		for _, st := range sts {
			names = append(names, st.Name)
		}
		what = string(k) + " devices exist"
	}
	switch {
	case err != nil:
		return "", err
	case len(names) == 1:
		return names[0], nil
	case len(names) > 1:
		return "", InputErrorf("%d %s (%s): say which with --name", len(names), what, strings.Join(names, ", "))
	case k == "":
		return "", InputErrorf("no device is up: start one with faultbox lab up, faultbox attach or faultbox run")
	}
	return "", InputErrorf("no %s device exists", k)
}
