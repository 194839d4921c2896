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
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/profiles"
)

// Options are what every kind of device (lab, attach, run) takes from its
// command alike. Zero values take the defaults.
type Options struct {
	Name    string
	Profile string  // built-in name or file
	Seed    *uint64 // the run's seed; else the profile's; else random
	Capture string  // pcapng file to write, if any
	// CPUs the device runs on (ParseCPUs); none: any. One CPU of its own
	// spares it migrations and cache misses (docs/benchmarks.md has what
	// that gains).
	CPUs []int
	// BusyPoll keeps the device polling this long after its last packet
	// before it sleeps (engine.Config.BusyPoll). Up to SharedBusyPoll it
	// may share the CPUs: a reply that comes back within it costs no
	// wake-up. Longer keeps a CPU busy under any traffic and needs CPUs;
	// so does engine.PollAlways, a device that never sleeps. 0: off.
	BusyPoll time.Duration
	// API, if set, is a TCP address (host:port) where the device also
	// serves its control API, with a bearer token; a non-loopback one
	// needs APIAllowRemote.
	API            string
	APIAllowRemote bool
	APITokenFile   string // the bearer token is read from it; default: a random one

	// Timeout bounds the wait for the device to be ready (10 s).
	Timeout time.Duration
	// Executable is the faultbox binary run as the device (this one).
	Executable string
	// Progress, when a terminal, gets a progress line while Launch waits.
	Progress *os.File
	// Notes gets remarks such as leftovers removed before starting.
	Notes io.Writer
}

// Check checks the options every kind takes alike, fills in the defaults
// and finds the binary to run as the device. It changes nothing.
func (o *Options) Check() error {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Notes == nil {
		o.Notes = io.Discard
	}
	if err := CheckCPUs(o.CPUs); err != nil {
		return err
	}
	if err := CheckBusyPoll(o.BusyPoll, o.CPUs); err != nil {
		return err
	}
	if o.API != "" {
		if err := CheckAPIAddr(o.API, o.APIAllowRemote); err != nil {
			return err
		}
	}
	if o.APITokenFile != "" {
		if o.API == "" {
			return InputErrorf("--api-token-file is the token of --api: give --api too")
		}
		var err error
		if o.APITokenFile, err = filepath.Abs(o.APITokenFile); err != nil {
			return err
		}
		if _, err := ReadAPIToken(o.APITokenFile); err != nil {
			return err
		}
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the faultbox binary to run the device: %w", err)
		}
		o.Executable = exe
	}
	return nil
}

// LoadProfile loads the profile and checks that its names resolve with
// resolve, the placement's names.
func (o *Options) LoadProfile(resolve behaviors.Resolver) (*profiles.Profile, error) {
	p, err := profiles.Load(o.Profile)
	if err != nil {
		return nil, err
	}
	if _, err := p.Chain(0, resolve); err != nil {
		return nil, err
	}
	return p, nil
}

// NewState is the first state of a device of kind k called o.Name, with
// its placement's record (nil: the kind records it later) and MTU, and
// the profile p that LoadProfile returned: recorded as a built-in's name
// or a file's absolute path, with the seed (o.Seed, else the profile's,
// else random) and the capture file's absolute path, whose directory must
// exist.
func (o *Options) NewState(k Kind, record any, mtu int, p *profiles.Profile) (*State, error) {
	st := &State{Name: o.Name, Kind: k, MTU: mtu, CPUs: o.CPUs, BusyPoll: o.BusyPoll,
		API: o.API, APIAllowRemote: o.APIAllowRemote, APITokenFile: o.APITokenFile, Created: time.Now().UTC()}
	var err error
	if record != nil {
		if err = st.Encode(record); err != nil {
			return nil, err
		}
	}
	if st.Profile, err = ProfileSource(o.Profile, p); err != nil {
		return nil, err
	}
	switch {
	case o.Seed != nil:
		st.Seed = *o.Seed
	case p.Seed != nil:
		st.Seed = *p.Seed
	default:
		st.Seed = RandomSeed()
	}
	if o.Capture != "" {
		if st.Capture, err = filepath.Abs(o.Capture); err != nil {
			return nil, err
		}
		if fi, err := os.Stat(filepath.Dir(st.Capture)); err != nil || !fi.IsDir() {
			return nil, InputErrorf("capture %s: directory %s does not exist", o.Capture, filepath.Dir(st.Capture))
		}
	}
	return st, nil
}

// Site is what a kind of device adds to Launch: the steps that depend on
// where its ports go, taken by the command that starts the device (the
// device process's are its Placement).
type Site interface {
	// Claim takes the state's name (Claim, with what removes a dead
	// device of that kind and name) and whatever else the kind reserves.
	Claim(st *State) error
	// Prepare makes what the placement needs before the device starts (a
	// lab's namespaces, a run's command), giving up on an interrupt and
	// telling progress what it does.
	Prepare(st *State, interrupt <-chan os.Signal, progress func(what string)) error
	// Remove removes the device called name and whatever its start left:
	// the kind's own down or detach.
	Remove(name string) ([]string, error)
}

// Launch starts the device of state st (from o.NewState) at site: it
// claims the name, prepares the site, starts the device process and
// returns once traffic flows through it. If that fails, or SIGINT or
// SIGTERM come, it removes the device again (Undo).
func Launch(o *Options, st *State, site Site) error {
	if err := site.Claim(st); err != nil {
		return err
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	pr := newProgress(o.Progress, string(st.KindOf())+" "+st.Name)
	defer pr.done()
	err := site.Prepare(st, sigc, pr.set)
	if err == nil {
		pr.set("starting the device")
		var exited <-chan error
		if exited, err = start(st, o.Executable); err == nil {
			pr.set("waiting for traffic to flow")
			err = waitReady(st.Name, exited, sigc, o.Timeout, pr.tick)
		}
	}
	if err != nil {
		pr.done()
		return Undo(st, err, site.Remove)
	}
	return nil
}

// Undo removes a device whose start failed with err, with remove, and
// returns err naming the device, with what removing it said and the end
// of its log, if it had one.
func Undo(st *State, err error, remove func(name string) ([]string, error)) error {
	log, logErr := os.ReadFile(LogPath(st.Name)) // before remove takes the runtime directory
	if _, rerr := remove(st.Name); rerr != nil {
		err = fmt.Errorf("%w (removing it again: %v)", err, rerr)
	}
	err = fmt.Errorf("%s %s: %w", st.KindOf(), st.Name, err)
	if logErr != nil {
		return err // the device never started
	}
	lines := bytes.Split(bytes.TrimRight(log, "\n"), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return fmt.Errorf("%w\n%s:\n  %s", err, filepath.Base(LogPath(st.Name)), bytes.Join(lines, []byte("\n  ")))
}

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

// RandomSeed is a random seed that fits any signed 64-bit reader.
func RandomSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 1
}

// start runs `EXE device --name N` (exe: the faultbox binary) as the device
// process of st, in a session of its own (so the terminal's signals and
// hang-up do not reach it), on st.CPUs, with its output in device.log, and
// records it in state.json. The channel reports its exit.
func start(st *State, exe string) (<-chan error, error) {
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

// waitReady waits until the device called name answers on its control
// socket, which it opens only once traffic flowed through it. tick is
// called every 50 ms while it waits (for progress).
func waitReady(name string, exited <-chan error, sigc <-chan os.Signal, timeout time.Duration, tick func()) error {
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

// progress draws one line on a terminal while Launch waits; elsewhere
// nothing.
type progress struct {
	f     *os.File
	who   string // "lab web"
	what  string
	start time.Time
	drawn bool
}

func newProgress(f *os.File, who string) *progress {
	if f != nil {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
			f = nil
		}
	}
	return &progress{f: f, who: who, start: time.Now()}
}

func (p *progress) set(what string) { p.what = what; p.tick() }

func (p *progress) tick() {
	if p.f == nil {
		return
	}
	fmt.Fprintf(p.f, "\r\033[K%s: %s ... %.1fs", p.who, p.what, time.Since(p.start).Seconds())
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.f, "\r\033[K")
		p.drawn = false
	}
}
