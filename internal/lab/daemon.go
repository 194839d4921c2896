package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faultbox/faultbox/internal/capture"
	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/profiles"
	"github.com/faultbox/faultbox/tun"
)

// daemon is the device of one lab: its ports, engine, capture and control
// socket.
type daemon struct {
	state   *State
	log     *log.Logger
	started time.Time

	devs    []tun.Port // opened, whether or not the engine owns them yet
	eng     *engine.Engine
	capture *capture.Writer
	ln      net.Listener
	stop    chan struct{} // closed to stop the capture flusher
	wg      sync.WaitGroup

	mu      sync.Mutex // guards source, seed, failure and state writes
	source  string
	seed    uint64
	failure string

	shutdownOnce sync.Once
	shutdown     chan struct{}
}

// RunDaemon runs lab's device until SIGINT, SIGTERM or a shutdown request,
// then removes the whole lab: processes in its namespaces, the namespaces,
// their /etc files and the runtime directory. It logs to stderr, which
// `lab up` points at daemon.log. If setting up fails it releases only what
// it opened and returns the error; `lab up` reads the log and removes the
// rest.
func RunDaemon(name string) error {
	// Take the signals before anything else so that a SIGTERM during setup
	// still ends in a clean teardown.
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)

	st, err := ReadState(name)
	if err != nil {
		return fmt.Errorf("lab %s: %w", name, err)
	}
	if st.Daemon, err = ProcOf(os.Getpid()); err != nil {
		return err // state.json is rewritten on apply: it must name us
	}
	d := &daemon{
		state:    st,
		log:      log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds),
		started:  time.Now(),
		source:   st.Profile,
		seed:     st.Seed,
		stop:     make(chan struct{}),
		shutdown: make(chan struct{}),
	}
	d.log.Printf("lab %s: device starting (pid %d)", name, os.Getpid())
	if err := d.setup(); err != nil {
		d.log.Printf("setup failed: %v", err)
		d.closeDevice()
		return err
	}
	go d.serve()
	d.log.Printf("ready: profile %s, seed %d", d.source, d.seed)
	debugPanicAfter(d.log) // test-only: FAULTBOX_DEBUG_PANIC_AFTER
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
		d.log.Printf("%v: tearing the lab down", sig)
	case <-d.shutdown:
		d.log.Printf("shutdown requested: tearing the lab down")
	}
	start := time.Now()
	d.teardown()
	d.log.Printf("lab %s removed in %s", name, time.Since(start).Round(time.Millisecond))
	return nil
}

// setup opens the ports, starts the engine, checks that traffic flows and
// then installs the profile's chain, opens the capture and listens on the
// control socket.
func (d *daemon) setup() error {
	st := d.state
	p, err := profiles.Load(st.Profile)
	if err != nil {
		return err
	}
	chain, err := p.Chain(st.Seed, Resolver(st.Hosts))
	if err != nil {
		return err
	}
	cfg := engine.Config{OnFailure: func(err error) {
		d.log.Printf("device failure: %v", err)
		d.mu.Lock()
		d.failure = err.Error()
		d.mu.Unlock()
	}}
	if st.Capture != "" {
		names := make([]string, len(st.Hosts))
		for i, h := range st.Hosts {
			names[i] = h.Name
		}
		w, err := capture.Create(st.Capture, names, 0)
		if err != nil {
			return err
		}
		d.capture = w
		cfg.Capture = w // only when non-nil: a nil *Writer in the interface is not "no capture"
	}
	cfg.BusyPoll = st.BusyPoll
	d.eng = engine.New(cfg)
	for _, h := range st.Hosts {
		if err := quietIPv6(h.Namespace); err != nil {
			d.log.Printf("%s: %v (carrying on: the kernel's router solicitations will show as no-route)", h.Namespace, err)
		}
		dev, err := tun.Open(tun.Options{Name: Device, NetNS: h.Namespace, MTU: st.MTU, Offload: true})
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		d.devs = append(d.devs, dev)
		if err := addressHost(h); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		if err := d.eng.AddPort(h.Name, dev, h.Prefixes()); err != nil {
			return err
		}
		d.log.Printf("host %s: %s in %s, %s %s, mtu %d, offload %s", h.Name, dev.Name(), h.Namespace, h.IPv4, h.IPv6, dev.MTU(), onOff(dev.Offloads()))
	}
	d.eng.Start()
	// Prove the wiring with the engine's initial passthrough chain, so that
	// a profile that drops or delays everything cannot fail `lab up`.
	if err := probeAll(st.Hosts, d.log); err != nil {
		return err
	}
	d.eng.SetChain(chain)
	if d.capture != nil {
		d.wg.Add(1)
		go d.flushCapture()
	}
	os.Remove(socketPath(st.Name))
	ln, err := net.Listen("unix", socketPath(st.Name))
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	d.ln = ln
	if err := os.Chmod(socketPath(st.Name), 0o600); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// flushCapture writes the capture to disk every second, so a reader sees
// packets without waiting for the lab to go down.
func (d *daemon) flushCapture() {
	defer d.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			if err := d.capture.Flush(); err != nil {
				d.log.Printf("capture: %v", err)
				return
			}
		}
	}
}

// closeDevice stops the control socket, the engine (closing its ports, which
// removes the interfaces) and the capture.
func (d *daemon) closeDevice() {
	if d.ln != nil {
		d.ln.Close()
	}
	close(d.stop)
	if d.eng != nil {
		if err := d.eng.Close(); err != nil {
			d.log.Printf("engine: %v", err)
		}
	}
	for _, dev := range d.devs {
		dev.Close() // no-op for ports the engine closed
	}
	d.wg.Wait()
	if d.capture != nil {
		if err := d.capture.Close(); err != nil {
			d.log.Printf("capture: %v", err)
		} else {
			d.log.Printf("capture: %d packets in %s", d.capture.Packets(), d.state.Capture)
		}
	}
}

// teardown removes the whole lab. Namespaces are removed in parallel: each
// may have processes to kill.
func (d *daemon) teardown() {
	d.closeDevice()
	var wg sync.WaitGroup
	for _, h := range d.state.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			removed, err := removeNetns(h.Namespace)
			if err != nil {
				d.log.Printf("%s: %v", h.Namespace, err)
			}
			if len(removed) > 0 {
				d.log.Printf("removed %s", strings.Join(removed, ", "))
			}
		}()
	}
	wg.Wait()
	if err := os.RemoveAll(Dir(d.state.Name)); err != nil {
		d.log.Printf("%v", err)
	}
}

// serve answers the control socket until it is closed.
func (d *daemon) serve() {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		go d.handle(c)
	}
}

func (d *daemon) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req Request
	var resp *Response
	// A profile is at most 1 MiB; JSON escaping can double it.
	if err := json.NewDecoder(io.LimitReader(c, 4<<20)).Decode(&req); err != nil {
		resp = &Response{Error: "bad request: " + err.Error()}
	} else {
		resp = d.do(req)
	}
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		d.log.Printf("control: %s: %v", req.Op, err)
	}
	if req.Op == "shutdown" && resp.Error == "" {
		d.shutdownOnce.Do(func() { close(d.shutdown) })
	}
}

func (d *daemon) do(req Request) *Response {
	switch req.Op {
	case "status":
		return &Response{Status: d.status()}
	case "events":
		evs, next := d.eng.Events(req.From)
		recs := make([]EventRecord, len(evs))
		for i, e := range evs {
			recs[i] = EventRecord{Event: e, Text: e.String()}
		}
		return &Response{Events: recs, Next: next}
	case "apply":
		return d.apply(req)
	case "shutdown":
		return &Response{}
	}
	return &Response{Error: fmt.Sprintf("unknown request %q", req.Op)}
}

// apply swaps the engine's chain. The engine keeps its flow table and delay
// lines, so open connections carry on under the new profile.
func (d *daemon) apply(req Request) *Response {
	fail := func(err error) *Response { return &Response{Error: err.Error()} }
	var p *profiles.Profile
	var err error
	switch {
	case req.YAML != "":
		p, err = profiles.Parse(req.Profile, []byte(req.YAML))
	case slices.Contains(profiles.Builtin(), req.Profile):
		p, err = profiles.Load(req.Profile)
	default:
		// The daemon opens no file a client names: files come as text.
		err = fmt.Errorf("apply: %q is not a built-in profile and no profile text was sent", req.Profile)
	}
	if err != nil {
		return fail(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	seed := d.seed
	switch {
	case req.Seed != nil:
		seed = *req.Seed
	case p.Seed != nil:
		seed = *p.Seed
	}
	chain, err := p.Chain(seed, Resolver(d.state.Hosts))
	if err != nil {
		return fail(err)
	}
	d.eng.SetChain(chain)
	d.source, d.seed = req.Profile, seed
	d.state.Profile, d.state.Seed = req.Profile, seed
	if err := WriteState(d.state); err != nil {
		d.log.Printf("apply: %v", err)
	}
	d.log.Printf("applied profile %s (%s), seed %d", p.Name, req.Profile, seed)
	return &Response{Profile: p.Name, Seed: seed}
}

func (d *daemon) status() *Status {
	d.mu.Lock()
	st := &Status{
		Lab:           d.state.Name,
		PID:           os.Getpid(),
		Started:       d.started,
		UptimeSeconds: time.Since(d.started).Seconds(),
		Hosts:         d.state.Hosts,
		Source:        d.source,
		MTU:           d.state.MTU,
		CPUs:          d.state.CPUs,
		BusyPoll:      d.state.BusyPoll.String(),
		Capture:       d.state.Capture,
		Failure:       d.failure,
	}
	d.mu.Unlock()
	if d.capture != nil {
		st.CapturePackets = d.capture.Packets()
	}
	st.Status = d.eng.Status()
	return st
}
