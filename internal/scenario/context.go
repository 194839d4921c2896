package scenario

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// Context is what Drive works with: the lab, the run's settings, and
// helpers that start processes and clients, sample sockets, wait with
// progress and record the timeline. Everything it starts is stopped by the
// runner when Drive returns, also on error or Ctrl-C. Its methods are safe
// for concurrent use by Drive's goroutines.
type Context struct {
	Scenario *Scenario
	Lab      string // the lab's name
	Seed     uint64
	Dir      string // the report directory: logs and profiles go here
	Exe      string // the faultbox binary (for serve, proxy)

	ctx   context.Context
	start time.Time
	fault bool
	prog  *progress

	mu       sync.Mutex
	steps    []report.Entry
	notes    []string
	sysctls  []Sysctl
	procs    []*Proc
	conns    []net.Conn
	samplers []*sampler
	clients  []ClientResult
	logs     []logFile

	preexisting map[sockdiag.Key]bool // sockets open when sampling began
}

type sampler struct {
	host string
	s    *sockdiag.Sampler
}

type logFile struct{ name, path string }

// Context returns the run's context: done on Ctrl-C or when the budget
// runs out.
func (c *Context) Context() context.Context { return c.ctx }

// Fault reports whether the fault is on. Scenarios whose fault is not the
// device profile (a server flag, say) switch it off themselves; the
// profile is switched off by the runner.
func (c *Context) Fault() bool { return c.fault }

// Step records a timeline entry now. actor: client, server, device,
// scenario, or a name such as "client 3".
func (c *Context) Step(actor, format string, args ...any) {
	c.StepAt(time.Now(), actor, format, args...)
}

// StepAt records a timeline entry at t.
func (c *Context) StepAt(t time.Time, actor, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, report.Entry{At: t.Sub(c.start), Actor: actor, Text: fmt.Sprintf(format, args...)})
}

// Note adds a line under the report's verdict.
func (c *Context) Note(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

// Addr returns "IP:port" of a well-known lab host (client, server, lb).
func Addr(host string, port int) string {
	v4, _, ok := lab.HostAddrs(host)
	if !ok {
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	return netip.AddrPortFrom(v4, uint16(port)).String()
}

// AddrPort is Addr as a netip.AddrPort (the zero value for other hosts).
func AddrPort(host string, port int) netip.AddrPort {
	v4, _, _ := lab.HostAddrs(host)
	return netip.AddrPortFrom(v4, uint16(port))
}

// Addr6 returns "[IPv6]:port" of a well-known lab host, for scenarios
// that run over both IP versions.
func Addr6(host string, port int) string { return AddrPort6(host, port).String() }

// AddrPort6 is Addr6 as a netip.AddrPort (the zero value for other hosts).
func AddrPort6(host string, port int) netip.AddrPort {
	_, v6, _ := lab.HostAddrs(host)
	return netip.AddrPortFrom(v6, uint16(port))
}

// Namespace is the network namespace of a lab host.
func (c *Context) Namespace(host string) string { return lab.Namespace(c.Lab, host) }

// Sysctl sets key=value inside host's namespace (every host when host is
// "") with `ip netns exec NS sysctl -w`, and records it with why.
func (c *Context) Sysctl(host, key, value, why string) error {
	hosts := []string{host}
	if host == "" {
		hosts = c.Scenario.hosts()
	}
	for _, h := range hosts {
		out, err := exec.CommandContext(c.ctx, "ip", "netns", "exec", c.Namespace(h), "sysctl", "-w", key+"="+value).CombinedOutput()
		if err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %v: %s", key, value, h, err, strings.TrimSpace(string(out)))
		}
	}
	c.mu.Lock()
	c.sysctls = append(c.sysctls, Sysctl{Host: host, Key: key, Value: value, Why: why})
	c.mu.Unlock()
	c.Step("scenario", "sysctl %s=%s in %s: %s", key, value, hostLabel(host), why)
	return nil
}

// SegmentsOnly makes host's kernel hand its port MTU-sized segments only
// (gso_max_segs 1 on fbx0), instead of 64 KiB GSO super-packets. The
// capture then holds one record per wire segment, so a ladder of a bulk
// transfer stays readable and exact. Call it before the connections open.
func (c *Context) SegmentsOnly(host string) error {
	out, err := exec.CommandContext(c.ctx, "ip", "-n", c.Namespace(host), "link", "set", "dev", lab.HostInterface, "gso_max_segs", "1").CombinedOutput()
	if err != nil {
		return fmt.Errorf("gso_max_segs 1 on %s: %v: %s", host, err, strings.TrimSpace(string(out)))
	}
	c.Step("scenario", "%s sends MTU-sized segments only (gso_max_segs 1 on %s), so the capture shows every segment", host, lab.HostInterface)
	return nil
}

func hostLabel(h string) string {
	if h == "" {
		return "every host"
	}
	return h
}

// WriteFile writes a file into the report directory (a profile, a server
// configuration) and returns its absolute path.
func (c *Context) WriteFile(name string, data []byte) (string, error) {
	p := filepath.Join(c.Dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// Wait sleeps for d, showing what it waits for on a terminal. It returns
// early with an error when the run is interrupted.
func (c *Context) Wait(what string, d time.Duration) error {
	c.prog.set(what, time.Now().Add(d))
	defer c.prog.set("", time.Time{})
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, context.Cause(c.ctx))
	}
}

// WaitFor polls cond every 10 ms until it holds or timeout passes, showing
// what it waits for on a terminal. It reports whether cond held; the error
// is set only when the run was interrupted.
func (c *Context) WaitFor(what string, timeout time.Duration, cond func() bool) (bool, error) {
	deadline := time.Now().Add(timeout)
	c.prog.set(what, deadline)
	defer c.prog.set("", time.Time{})
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-t.C:
		case <-c.ctx.Done():
			return false, fmt.Errorf("waiting for %s: %w", what, context.Cause(c.ctx))
		}
	}
}

// Sample starts sampling host's TCP sockets that pass f every interval (0:
// the scenario's SampleEvery) until Drive returns; the series is evidence
// (Evidence.Sockets[host]) and the report's socket chart. Listening
// sockets are left out of the chart. One sampler per host.
func (c *Context) Sample(host string, f sockdiag.Filter, interval time.Duration) error {
	if interval <= 0 {
		interval = c.Scenario.sampleEvery()
	}
	c.mu.Lock()
	for _, s := range c.samplers {
		if s.host == host {
			c.mu.Unlock()
			return fmt.Errorf("sample %s: already sampling that host", host)
		}
	}
	c.mu.Unlock()
	s, err := sockdiag.NewSampler(c.Namespace(host), f, interval, 0)
	if err != nil {
		return fmt.Errorf("sample %s: %w", host, err)
	}
	// Sockets open before now (the lab's own probe connections) are left
	// out of the report's chart.
	pre, _ := sockdiag.Dump(c.Namespace(host), f)
	c.mu.Lock()
	c.samplers = append(c.samplers, &sampler{host: host, s: s})
	if c.preexisting == nil {
		c.preexisting = map[sockdiag.Key]bool{}
	}
	for _, k := range pre {
		c.preexisting[k.Key()] = true
	}
	c.mu.Unlock()
	// The first sample is taken at once, in the sampler's goroutine: let
	// it land before traffic starts.
	return c.Wait("the first socket sample", interval+5*time.Millisecond)
}

// Sockets dumps host's TCP sockets that pass f now (for Drive's waits;
// evidence comes from Sample).
func (c *Context) Sockets(host string, f sockdiag.Filter) ([]sockdiag.Socket, error) {
	return sockdiag.Dump(c.Namespace(host), f)
}

// WaitListening waits until host has a listening socket on every port;
// p, if not nil, is the process that should open them (its exit ends the
// wait, its stderr explains).
func (c *Context) WaitListening(host, what string, p *Proc, ports ...int) error {
	ok, err := c.WaitFor(what+" to listen", 10*time.Second, func() bool {
		if p != nil && p.Exited() {
			return true
		}
		socks, err := c.Sockets(host, sockdiag.Filter{States: sockdiag.StateMask(sockdiag.Listen)})
		if err != nil {
			return false
		}
		for _, port := range ports {
			if !slices.ContainsFunc(socks, func(s sockdiag.Socket) bool { return int(s.Src.Port()) == port }) {
				return false
			}
		}
		return true
	})
	exited := p != nil && p.Exited()
	if err != nil || ok && !exited {
		return err
	}
	why := "(see the *.err files in the report)"
	if p != nil {
		why = p.StderrTail()
	}
	if exited {
		return fmt.Errorf("%s exited at once: %s", what, why)
	}
	return fmt.Errorf("%s did not listen on %v within 10s: %s", what, ports, why)
}

// Record adds a client's result to the evidence.
func (c *Context) Record(r ClientResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients = append(c.clients, r)
}

// stopSamplers ends sampling and returns the series by host.
func (c *Context) stopSamplers() map[string]*sockdiag.Series {
	c.mu.Lock()
	ss := c.samplers
	c.samplers = nil
	c.mu.Unlock()
	out := map[string]*sockdiag.Series{}
	for _, s := range ss {
		sr := s.s.Stop()
		out[s.host] = &sr
	}
	return out
}
