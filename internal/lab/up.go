package lab

import (
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

	"github.com/faultbox/faultbox/internal/device"
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
	// CPUs the device runs on (device.ParseCPUs); none: any. One CPU of its own
	// spares it migrations and cache misses (docs/benchmarks.md has what
	// that gains).
	CPUs []int
	// BusyPoll keeps the device polling this long after its last packet
	// before it sleeps (engine.Config.BusyPoll). Up to device.SharedBusyPoll it
	// may share the CPUs: a reply that comes back within it costs no
	// wake-up. Longer keeps a CPU busy under any traffic and needs CPUs;
	// so does engine.PollAlways, a device that never sleeps. 0: off.
	BusyPoll time.Duration
	// API, if set, is a TCP address (host:port) where the device also
	// serves its control API, with a bearer token; a non-loopback one
	// needs APIAllowRemote.
	API            string
	APIAllowRemote bool

	// Timeout bounds the wait for the device to be ready and traffic to
	// flow (10 s).
	Timeout time.Duration
	// Executable is the faultbox binary run as the device (this one).
	Executable string
	// Progress, when a terminal, gets a progress line while Up waits.
	Progress *os.File
	// Notes gets remarks such as leftovers removed before starting.
	Notes io.Writer
}

// Up creates a lab and returns when traffic flows through its device. On
// any failure it removes what it created, and the error includes the end
// of the device's log.
func Up(o Options) (*device.State, error) {
	o.setDefaults()
	st, exe, err := o.plan()
	if err != nil {
		return nil, err
	}
	hosts, _ := Hosts(st)
	if err := device.Claim(st, func() ([]string, error) { return removeDead(o.Name) }, o.Notes); err != nil {
		return nil, err
	}
	// From here on, a failure or an interrupt removes the lab again.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	pr := newProgress(o.Progress, o.Name)
	defer pr.done()
	if err := start(st, hosts, exe, o.Timeout, sigc, pr); err != nil {
		pr.done()
		log := device.LogTail(o.Name, 15)
		if _, derr := Down(o.Name); derr != nil {
			err = fmt.Errorf("%w (removing the lab again: %v)", err, derr)
		}
		return nil, fmt.Errorf("lab %s: %w\n%s:\n%s", o.Name, err, filepath.Base(device.LogPath(o.Name)), indent(log))
	}
	return st, nil
}

func (o *Options) setDefaults() {
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
}

// plan checks everything Up was asked for and the machine it runs on, and
// returns the lab's first state and the binary to run as its device. It
// creates nothing.
func (o *Options) plan() (*device.State, string, error) {
	hosts, err := Plan(o.Name, o.Hosts)
	if err != nil {
		return nil, "", err
	}
	if o.MTU < MinMTU || o.MTU > MaxMTU {
		return nil, "", device.InputErrorf("mtu %d: want %d to %d (every host has an IPv6 address)", o.MTU, MinMTU, MaxMTU)
	}
	if err := device.CheckCPUs(o.CPUs); err != nil {
		return nil, "", err
	}
	if err := device.CheckBusyPoll(o.BusyPoll, o.CPUs); err != nil {
		return nil, "", err
	}
	if o.API != "" {
		if err := device.CheckAPIAddr(o.API, o.APIAllowRemote); err != nil {
			return nil, "", err
		}
	}
	if err := CheckPrivileges(); err != nil {
		return nil, "", err
	}
	if err := checkTools(); err != nil {
		return nil, "", err
	}
	p, err := profiles.Load(o.Profile)
	if err != nil {
		return nil, "", err
	}
	if _, err := p.Chain(0, Resolver(hosts)); err != nil {
		return nil, "", err
	}
	st := &device.State{Name: o.Name, Kind: device.KindLab, MTU: o.MTU, CPUs: o.CPUs, BusyPoll: o.BusyPoll,
		API: o.API, APIAllowRemote: o.APIAllowRemote, Created: time.Now().UTC()}
	if err := st.Configure(record{Hosts: hosts}, o.Profile, p, o.Seed, o.Capture); err != nil {
		return nil, "", err
	}
	exe, err := device.Executable(o.Executable)
	if err != nil {
		return nil, "", err
	}
	return st, exe, nil
}

// start creates the hosts' namespaces, starts the device and waits until
// traffic flows through it.
func start(st *device.State, hosts []Host, exe string, timeout time.Duration, sigc <-chan os.Signal, pr *progress) error {
	pr.set("creating namespaces")
	hostsFile := HostsFile(st.Name, hosts)
	for _, h := range hosts {
		if err := interrupted(sigc); err != nil {
			return err
		}
		if err := createHost(h, hostsFile); err != nil {
			return err
		}
	}
	pr.set("starting the device")
	exited, err := device.Start(st, exe)
	if err != nil {
		return err
	}
	pr.set("waiting for traffic to flow")
	return device.WaitReady(st.Name, exited, sigc, timeout, pr.tick)
}

func interrupted(sigc <-chan os.Signal) error {
	select {
	case sig := <-sigc:
		return fmt.Errorf("interrupted (%v) while starting", sig)
	default:
		return nil
	}
}

// removeDead removes what a dead lab of that name left, if anything.
func removeDead(lab string) ([]string, error) {
	if _, err := os.Stat(device.Dir(lab)); err != nil {
		if nss, _ := labNamespaces(lab); len(nss) == 0 {
			return nil, nil
		}
	}
	return Down(lab)
}

// CheckPrivileges returns a clear error unless this process may create
// namespaces and TUN devices.
func CheckPrivileges() error {
	if device.HasCaps(device.CapNetAdmin, device.CapSysAdmin) {
		return nil
	}
	return errors.New("faultbox lab needs root: it creates network namespaces and TUN devices (CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo")
}

// checkTools returns a clear error unless the lab can be made here.
func checkTools() error {
	if err := device.CheckTUN(); err != nil {
		return err
	}
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
func WriteSummary(w io.Writer, st *device.State) error {
	hosts, err := Hosts(st)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "lab %s is up (device pid %d)\n", st.Name, st.Device.PID)
	for _, h := range hosts {
		fmt.Fprintf(w, "  %-10s %-15s %-15s %s\n", h.Name, h.IPv4, h.IPv6, h.Namespace)
	}
	fmt.Fprintf(w, "profile %s, seed %d\n", st.Profile, st.Seed)
	if st.Capture != "" {
		fmt.Fprintf(w, "capture %s\n", st.Capture)
	}
	if st.API != "" {
		if err := device.WriteAPISummary(w, st); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "run a command in a host:  faultbox lab exec --name %s %s -- CMD ...\n", st.Name, hosts[0].Name)
	return nil
}
