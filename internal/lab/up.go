package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/profiles"
)

// Options say what lab Up creates. Zero values take the defaults.
type Options struct {
	Name    string   // DefaultName
	Hosts   []string // DefaultHosts
	Profile string   // built-in name or file; "passthrough"
	Seed    *uint64  // the run's seed; else the profile's; else random
	Capture string   // pcapng file to write, if any
	MTU     int      // 1500
	// CPUs the device runs on (ParseCPUs); none: any. One CPU of its own
	// spares it migrations and cache misses: measured on 2 CPUs, 10-25 %
	// more TCP throughput (more with BusyPoll).
	CPUs []int
	// BusyPoll keeps the device polling this long after its last packet
	// before it sleeps (engine.Config.BusyPoll). Up to SharedBusyPoll it
	// may share the CPUs: a reply that comes back within it costs no
	// wake-up. Longer keeps a CPU busy under any traffic and needs CPUs.
	// 0: off.
	BusyPoll time.Duration

	// Timeout bounds the wait for the device to be ready and traffic to
	// flow (10 s).
	Timeout time.Duration
	// Executable is the faultbox binary run as the daemon (this one).
	Executable string
	// Progress, when a terminal, gets a progress line while Up waits.
	Progress *os.File
	// Notes gets remarks such as leftovers removed before starting.
	Notes io.Writer
}

// SharedBusyPoll is the longest busy-poll allowed without CPUs of its own:
// long enough to catch a request's answer through a local server (a round
// trip is 20-40 µs), short enough that light traffic does not keep a CPU
// busy.
const SharedBusyPoll = 100 * time.Microsecond

// checkBusyPoll refuses a busy-poll outside 0 to 1s, and one longer than
// SharedBusyPoll unless the device has CPUs of its own.
func checkBusyPoll(d time.Duration, cpus []int) error {
	if d < 0 || d > time.Second {
		return inputErrorf("busy-poll %v: want 0 (off) to 1s", d)
	}
	if d > SharedBusyPoll && len(cpus) == 0 {
		return inputErrorf("busy-poll %v keeps a CPU busy: give the device CPUs of its own with --cpus, or poll at most %v", d, SharedBusyPoll)
	}
	return nil
}

// ErrInUse means a lab of that name is up (errors.Is matches it).
var ErrInUse = errors.New("lab name in use")

type inUseError struct{ msg string }

func (e *inUseError) Error() string        { return e.msg }
func (e *inUseError) Is(target error) bool { return target == ErrInUse }

// Up creates a lab and returns when traffic flows through its device. On
// any failure it removes what it created, and the error includes the end
// of the daemon's log.
func Up(o Options) (*State, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if len(o.Hosts) == 0 {
		o.Hosts = DefaultHosts
	}
	if o.Profile == "" {
		o.Profile = "passthrough"
	}
	if o.MTU == 0 {
		o.MTU = 1500
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Notes == nil {
		o.Notes = io.Discard
	}
	hosts, err := Plan(o.Name, o.Hosts)
	if err != nil {
		return nil, err
	}
	if o.MTU < MinMTU || o.MTU > MaxMTU {
		return nil, inputErrorf("mtu %d: want %d to %d (every host has an IPv6 address)", o.MTU, MinMTU, MaxMTU)
	}
	if err := checkCPUs(o.CPUs); err != nil {
		return nil, err
	}
	if err := checkBusyPoll(o.BusyPoll, o.CPUs); err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := checkTun(); err != nil {
		return nil, err
	}
	p, err := profiles.Load(o.Profile)
	if err != nil {
		return nil, err
	}
	if _, err := p.Chain(0, Resolver(hosts)); err != nil {
		return nil, err
	}
	st := &State{Name: o.Name, Hosts: hosts, MTU: o.MTU, CPUs: o.CPUs, BusyPoll: o.BusyPoll, Created: time.Now().UTC()}
	if st.Profile, err = source(o.Profile, p); err != nil {
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
			return nil, inputErrorf("capture %s: directory %s does not exist", o.Capture, filepath.Dir(st.Capture))
		}
	}
	exe := o.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the faultbox binary to run the device: %w", err)
		}
	}
	if err := claim(st, o.Notes); err != nil {
		return nil, err
	}

	// From here on, a failure or an interrupt removes the lab again.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	pr := newProgress(o.Progress, o.Name)
	defer pr.done()
	fail := func(err error) (*State, error) {
		pr.done()
		log := tail(logPath(o.Name), 15)
		if _, derr := Down(o.Name); derr != nil {
			err = fmt.Errorf("%w (removing the lab again: %v)", err, derr)
		}
		return nil, fmt.Errorf("lab %s: %w\ndaemon.log:\n%s", o.Name, err, indent(log))
	}
	pr.set("creating namespaces")
	hostsFile := HostsFile(o.Name, hosts)
	for _, h := range hosts {
		if err := interrupted(sigc); err != nil {
			return fail(err)
		}
		if err := createHost(o.Name, h, hostsFile); err != nil {
			return fail(err)
		}
	}
	pr.set("starting the device")
	exited, err := startDaemon(st, exe)
	if err != nil {
		return fail(err)
	}
	pr.set("waiting for traffic to flow")
	if err := waitReady(o.Name, exited, sigc, o.Timeout, pr); err != nil {
		return fail(err)
	}
	return st, nil
}

func interrupted(sigc <-chan os.Signal) error {
	select {
	case sig := <-sigc:
		return fmt.Errorf("interrupted (%v) while starting", sig)
	default:
		return nil
	}
}

// source is how the lab records the profile: a built-in's name, or a file's
// absolute path (the daemon does not share the caller's directory).
func source(arg string, p *profiles.Profile) (string, error) {
	if strings.HasPrefix(p.File, "builtin/") {
		return arg, nil
	}
	return filepath.Abs(arg)
}

// claim takes the lab name: refused while a lab of that name is up (or
// being started), else leftovers of an earlier one are removed first. It
// creates the runtime directory and the first state.json.
func claim(st *State, notes io.Writer) error {
	unlock, err := lockRunDir()
	if err != nil {
		return err
	}
	defer unlock()
	name := st.Name
	if old, err := ReadState(name); err == nil {
		switch {
		case old.Daemon.Alive():
			return &InputError{&inUseError{fmt.Sprintf("lab %q is already up (device pid %d); use another --name, or `faultbox lab down --name %s` first", name, old.Daemon.PID, name)}}
		case old.Daemon.PID == 0 && old.Creator.Alive():
			return &InputError{&inUseError{fmt.Sprintf("lab %q is being started by pid %d", name, old.Creator.PID)}}
		}
	}
	if leftovers(name) {
		removed, err := Down(name)
		if err != nil {
			return fmt.Errorf("lab %s: removing what its dead device left: %w", name, err)
		}
		fmt.Fprintf(notes, "lab %s: its device had died; removed %s\n", name, strings.Join(removed, ", "))
	}
	if err := os.Mkdir(Dir(name), 0o700); err != nil {
		return err
	}
	if st.Creator, err = ProcOf(os.Getpid()); err != nil {
		return err
	}
	return WriteState(st)
}

// leftovers reports whether anything of lab exists.
func leftovers(lab string) bool {
	if _, err := os.Stat(Dir(lab)); err == nil {
		return true
	}
	nss, _ := labNamespaces(lab)
	return len(nss) > 0
}

// startDaemon runs `faultbox lab daemon --name N` in a session of its own
// (so the terminal's signals and hang-up do not reach it) with its output
// in daemon.log, and records it in state.json. The channel reports its exit.
func startDaemon(st *State, exe string) (<-chan error, error) {
	logf, err := os.OpenFile(logPath(st.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "lab", "daemon", "--name", st.Name)
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
		st.Daemon = p
		err = WriteState(st)
	}
	if err != nil {
		cmd.Process.Kill()
		<-exited
		return nil, err
	}
	return exited, nil
}

// waitReady waits until the daemon answers on its control socket, which it
// opens only after traffic flowed through it over IPv4 and IPv6.
func waitReady(lab string, exited <-chan error, sigc <-chan os.Signal, timeout time.Duration, pr *progress) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			if err == nil {
				err = errors.New("exit status 0")
			}
			return fmt.Errorf("the device failed while starting (%v)", err)
		case sig := <-sigc:
			return fmt.Errorf("interrupted (%v) while starting", sig)
		case <-tick.C:
		}
		if _, err := call(lab, Request{Op: "status"}, time.Second); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the device was not ready within %s", timeout)
		}
		pr.tick()
	}
}

// CheckPrivileges returns a clear error unless this process may create
// namespaces and TUN devices.
func CheckPrivileges() error {
	const capNetAdmin, capSysAdmin = 12, 21
	caps, err := effectiveCaps()
	if err == nil && caps&(1<<capNetAdmin) != 0 && caps&(1<<capSysAdmin) != 0 {
		return nil
	}
	return errors.New("faultbox lab needs root: it creates network namespaces and TUN devices (CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo")
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

func checkTun() error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		hint := "load the tun module (modprobe tun)"
		if !errors.Is(err, fs.ErrNotExist) {
			hint = "check its permissions"
		}
		return fmt.Errorf("cannot open /dev/net/tun: %v; %s, or in a container pass the device (docker run --device /dev/net/tun --cap-add NET_ADMIN)", err, hint)
	}
	unix.Close(fd)
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("faultbox lab needs the ip command (iproute2)")
	}
	return nil
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// progress draws one line on a terminal while Up waits; elsewhere nothing.
type progress struct {
	f     *os.File
	lab   string
	what  string
	start time.Time
	drawn bool
}

func newProgress(f *os.File, lab string) *progress {
	if f != nil {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
			f = nil
		}
	}
	return &progress{f: f, lab: lab, start: time.Now()}
}

func (p *progress) set(what string) { p.what = what; p.tick() }

func (p *progress) tick() {
	if p.f == nil {
		return
	}
	fmt.Fprintf(p.f, "\r\033[Klab %s: %s ... %.1fs", p.lab, p.what, time.Since(p.start).Seconds())
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.f, "\r\033[K")
		p.drawn = false
	}
}

// WriteSummary prints what Up made: hosts, addresses, profile, seed,
// capture.
func WriteSummary(w io.Writer, st *State) {
	fmt.Fprintf(w, "lab %s is up (device pid %d)\n", st.Name, st.Daemon.PID)
	for _, h := range st.Hosts {
		fmt.Fprintf(w, "  %-10s %-15s %-15s %s\n", h.Name, h.IPv4, h.IPv6, h.Namespace)
	}
	fmt.Fprintf(w, "profile %s, seed %d\n", st.Profile, st.Seed)
	if st.Capture != "" {
		fmt.Fprintf(w, "capture %s\n", st.Capture)
	}
	fmt.Fprintf(w, "run a command in a host:  faultbox lab exec --name %s %s -- CMD ...\n", st.Name, st.Hosts[0].Name)
}
