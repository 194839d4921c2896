// Package device is faultbox's device process: its TUN ports, the engine
// between them, the capture and the control socket, from start to
// teardown. Where the ports go is not its business: a Placement decides
// that (a lab's namespaces, an attached namespace, a command's namespace)
// and undoes it, so lab, attach and run share one device, one status, one
// apply and one way down.
//
// Every device has a runtime directory RunDir/NAME (0700) holding
// state.json (State: its kind and what undoing its placement needs),
// control.sock (the control API, internal/api), device.log and, when the
// API also serves TCP, api.token. A command that creates a device
// (Launch) writes state.json and re-executes the faultbox binary as the
// device process, which reads it (Run).
package device

import (
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/api"
	"github.com/faultbox/faultbox/internal/capture"
	"github.com/faultbox/faultbox/internal/control"
	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/profiles"
	"github.com/faultbox/faultbox/tun"
)

// Port is one of the device's ports as a placement opened it.
type Port struct {
	Name      string         // the engine's name for it: a lab host, "app", "world"
	Namespace string         // where its interface is, as the user knows it
	Dev       tun.Port       // the open TUN interface
	Prefixes  []netip.Prefix // the destinations the engine sends to it
}

// Placement puts a device's ports into the network and takes them out
// again.
type Placement interface {
	// Place opens the ports and wires them in: interfaces, addresses,
	// routes, rules. What it opened is closed by the device even if it
	// fails.
	Place(lg *log.Logger) ([]Port, error)
	// Check proves that traffic crosses the started device. It runs before
	// the profile is installed and must leave nothing behind: no packet in
	// flight, no open connection.
	Check(lg *log.Logger) error
	// Resolver resolves the host names a profile's matches may use.
	Resolver() behaviors.Resolver
	// Describe is one line for status: what the device sits in front of.
	Describe() string
	// Remove undoes the placement once the ports are closed; also after a
	// failed Place.
	Remove(lg *log.Logger)
}

// PlaceFunc makes the placement a state records.
type PlaceFunc func(st *State) (Placement, error)

// Device is one running device. Its controller answers the control API
// (profile, behaviors, flows, events, capture); the device adds its own
// facts to the status and stops on a shutdown request.
type Device struct {
	*control.Controller

	state   *State
	place   Placement
	log     *log.Logger
	started time.Time

	ports     []Port // opened, whether or not the engine owns them yet
	eng       *engine.Engine
	api       *api.Server
	listeners []listener
	apiAddr   string // where the TCP API listens, if it does

	mu      sync.Mutex // guards failure and state writes
	failure string

	shutdownOnce sync.Once
	shutdown     chan struct{}
}

// Run is the device process of the device called name: it opens the
// device (Open) and serves its control socket until SIGINT, SIGTERM or a
// shutdown request; then it closes it (Close). It logs to stderr, which
// the launcher points at device.log. If setting up fails it undoes what it
// did and returns the error.
func Run(name string, placeFor PlaceFunc) error {
	// Take the signals before anything else so that a SIGTERM during setup
	// still ends in a clean teardown.
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)

	d, err := Open(name, placeFor, log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds))
	if err != nil {
		return err
	}
	debugPanicAfter(d.log) // test builds only (debugpanic.go)
	if path := os.Getenv("FAULTBOX_CPUPROFILE"); path != "" {
		// For performance work: profile the device until teardown.
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
	}

	select {
	case sig := <-sigc:
		d.log.Printf("%v: shutting down", sig)
	case <-d.shutdown:
		d.log.Printf("shutdown requested")
	}
	d.Close()
	return nil
}

// Open runs the device called name in this process: it places and opens
// its ports, proves that traffic flows, installs the profile and serves
// the control API, until Close. If setting up fails it undoes what it did
// and returns the error.
func Open(name string, placeFor PlaceFunc, lg *log.Logger) (*Device, error) {
	d, err := newDevice(name, placeFor, lg)
	if err != nil {
		return nil, err
	}
	d.log.Printf("%s %s: device starting (pid %d)", d.state.KindOf(), name, os.Getpid())
	if err := d.setup(); err != nil {
		d.log.Printf("setup failed: %v", err)
		d.closePorts()
		d.place.Remove(d.log)
		return nil, err
	}
	d.serve()
	d.log.Printf("ready: profile %s, seed %d", d.state.Profile, d.state.Seed)
	return d, nil
}

// Close stops the control API and the engine, closes the ports, undoes
// the placement and removes the runtime directory.
func (d *Device) Close() {
	start := time.Now()
	d.closePorts()
	d.place.Remove(d.log)
	if err := os.RemoveAll(Dir(d.state.Name)); err != nil {
		d.log.Printf("%v", err)
	}
	d.log.Printf("%s %s removed in %s", d.state.KindOf(), d.state.Name, time.Since(start).Round(time.Millisecond))
}

// newDevice reads the state of the device called name and makes its
// placement.
func newDevice(name string, placeFor PlaceFunc, lg *log.Logger) (*Device, error) {
	st, err := ReadState(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if st.Device, err = ProcOf(os.Getpid()); err != nil {
		return nil, err // state.json is rewritten on apply: it must name us
	}
	d := &Device{
		state:    st,
		log:      lg,
		started:  time.Now(),
		shutdown: make(chan struct{}),
	}
	if d.place, err = placeFor(st); err != nil {
		return nil, err
	}
	return d, nil
}

// setup builds the engine, places and opens the ports, checks that traffic
// flows and then installs the profile's chain and listens for the control
// API.
func (d *Device) setup() error {
	st := d.state
	p, err := profiles.Load(st.Profile)
	if err != nil {
		return err
	}
	if _, err := p.Chain(st.Seed, d.place.Resolver()); err != nil {
		return err // before anything is placed
	}
	if d.ports, err = d.place.Place(d.log); err != nil {
		return err
	}
	cfg := engine.Config{BusyPoll: st.BusyPoll, OnFailure: func(err error) {
		d.log.Printf("device failure: %v", err)
		d.mu.Lock()
		d.failure = err.Error()
		d.mu.Unlock()
	}}
	var w *capture.Writer
	if st.Capture != "" {
		names := make([]string, len(d.ports))
		for i, p := range d.ports {
			names[i] = p.Name
		}
		if w, err = capture.Create(st.Capture, names, 0); err != nil {
			return err
		}
		cfg.Capture = w // only when non-nil: a nil *Writer in the interface is not "no capture"
	}
	d.eng = engine.New(cfg)
	d.Controller = control.New(control.Config{Engine: d.eng, Resolve: d.place.Resolver(), Applied: d.applied, Log: d.log})
	if w != nil {
		d.AdoptCapture(w, st.Capture) // flushed every second, closed at the end
	}
	for _, p := range d.ports {
		if err := d.eng.AddPort(p.Name, p.Dev, p.Prefixes); err != nil {
			return err
		}
		d.log.Printf("port %s: %s in %s, %v, mtu %d, offload %s", p.Name, p.Dev.Name(), p.Namespace, p.Prefixes, p.Dev.MTU(), onOff(p.Dev.Offloads()))
	}
	d.eng.Start()
	// Prove the wiring with the engine's initial passthrough chain, so that
	// a profile that drops or delays everything cannot fail the start; then
	// count from zero, so that the user's traffic is all the profile and
	// the counters ever see.
	if err := d.place.Check(d.log); err != nil {
		return err
	}
	seed := st.Seed
	if _, err := d.Apply(control.ApplyRequest{Profile: p, Source: st.Profile, Seed: &seed, Wait: true, Fresh: true}); err != nil {
		return err
	}
	return d.listen()
}

// applied records the profile now in force in state.json.
func (d *Device) applied(source string, seed uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state.Profile, d.state.Seed = source, seed
	if err := WriteState(d.state); err != nil {
		d.log.Printf("apply: %v", err)
	}
}

// closePorts stops the control API, the engine (closing its ports, which
// removes the interfaces) and the capture.
func (d *Device) closePorts() {
	if d.api != nil {
		d.api.Close()
	}
	for _, l := range d.listeners {
		l.ln.Close() // if serve never took it
	}
	if d.eng != nil {
		if err := d.eng.Close(); err != nil {
			d.log.Printf("engine: %v", err)
		}
	}
	for _, p := range d.ports {
		p.Dev.Close() // no-op for ports the engine closed
	}
	if d.Controller != nil && d.Capture().Active {
		d.StopCapture() // logs how many packets it wrote
	}
}

// Shutdown asks the device to stop; Run then tears it down.
func (d *Device) Shutdown() {
	d.shutdownOnce.Do(func() { close(d.shutdown) })
}

// ShutdownRequested is closed once a shutdown was asked for.
func (d *Device) ShutdownRequested() <-chan struct{} { return d.shutdown }

// Status is the device's status: its own facts and the controller's.
func (d *Device) Status() (*client.Status, error) {
	st := d.Controller.Status()
	st.Name, st.Kind, st.Placement = d.state.Name, string(d.state.KindOf()), d.place.Describe()
	st.PID, st.Started, st.UptimeSeconds = os.Getpid(), d.started, time.Since(d.started).Seconds()
	st.MTU, st.CPUs, st.BusyPoll, st.API = d.state.MTU, d.state.CPUs, FormatBusyPoll(d.state.BusyPoll), d.apiAddr
	st.Namespaces = map[string]string{}
	for _, p := range d.ports {
		st.Namespaces[p.Name] = p.Namespace
	}
	d.mu.Lock()
	st.Failure = d.failure
	d.mu.Unlock()
	return st, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
