package scenario

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// The Juniper DX runs (dx-defer-accept with Apache, dx-defer-accept-nginx):
// one lab with client, lb and server; per arm one server instance on its
// own port of the server host and one `faultbox proxy --profile
// juniper-dx` in lb on the same port in front of it. Each DX opens its
// pool of 6 connections at once, with no request; the client then sends a
// few requests through each DX at fixed times ("light traffic"). Requests
// are taken least recently used first, so request i lands on pooled
// connection i, idle for about ages[i]. Everything the judge says comes
// from the capture, the proxy logs, the clients and the kernel counters.

// dxArm is one variant of a DX run.
type dxArm struct {
	Name   string // "A", "B", "C"
	Port   uint16 // the server's port, and the DX's in lb
	Defer  bool   // the server defers accept (when the fault is on)
	Check  bool   // the DX checks a pooled connection before reuse
	Change string // what differs, for the report
	Expect report.Outcome
}

// dxArms are the arms of a DX run, changeA..changeC saying what each
// runs: A the server with defer-accept and the DX as in the field, B the
// server without defer-accept, C with it and a DX that checks a pooled
// connection before reuse. A and B are expected to fail on this kernel.
func dxArms(changeA, changeB, changeC string) []dxArm {
	return []dxArm{
		{Name: "A", Port: 80, Defer: true, Expect: report.Reproduced, Change: changeA},
		{Name: "B", Port: 81, Expect: report.Reproduced, Change: changeB},
		{Name: "C", Port: 82, Defer: true, Check: true, Expect: report.NotReproduced, Change: changeC},
	}
}

// dxPlan is one DX scenario.
type dxPlan struct {
	Server   string          // "Apache 2.4", "nginx"
	Arms     []dxArm         // Arms[0] is the default configuration, the one under test
	Ages     []time.Duration // when requests go out, after the pools opened
	Deadline time.Duration   // each client request's own deadline
	Sample   time.Duration   // socket sampling interval in the server
	// Start starts the server of arm a with defer-accept on or off, its
	// documents in docroot, and returns it and one line describing its
	// configuration.
	Start func(c *Context, a dxArm, deferOn bool, docroot string) (*Proc, string, error)
	// Notes go under every verdict: what this server and kernel do
	// differently from the field report.
	Notes []string
}

// register registers the plan as scenario s: its hosts (client, lb,
// server), the juniper-dx profile, and the plan's Drive and Judge.
func (pl *dxPlan) register(s *Scenario) {
	s.Hosts, s.Profile = []string{"client", "lb", "server"}, "juniper-dx"
	s.Drive = pl.drive
	s.Judge = func(e *Evidence) Verdict {
		v := pl.judge(e)
		v.Notes = append(v.Notes, pl.Notes...)
		return v
	}
	Register(s)
}

const (
	dxPool      = 6 // the DX default, as the juniper-dx profile
	dxKernelLog = "kernel-server"
)

func dxProxyName(a dxArm) string { return "dx-" + strings.ToLower(a.Name) }

// dxCheckProfile is the juniper-dx profile with check_before_reuse on: a
// DX that notices a pooled connection the server has closed.
const dxCheckProfile = `name: juniper-dx-check
description: >-
  The built-in juniper-dx profile with check_before_reuse on: before a
  pooled connection carries a request, the DX peeks at it and replaces it
  if the server has closed it.
behaviors: []
proxy:
  mode: juniper-dx
  pool_size: 6
  order: lru
  min_idle: 0s
  warm_interval: 1s
  check_before_reuse: true
  empty_reply: true
`

func (pl *dxPlan) drive(c *Context) error {
	// The servers' workers run as an unprivileged user, which cannot reach
	// the report directory (0700, or under a test's 0700 TempDir): their
	// documents are in a directory of their own, removed when Drive ends.
	docroot, err := os.MkdirTemp("", "fbx-dx-docroot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(docroot)
	if err := os.Chmod(docroot, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(docroot, "index.html"), []byte("hello from the server behind the DX\n"), 0o644); err != nil {
		return err
	}
	klog, err := newKernelLog(c, "server", dxKernelLog)
	if err != nil {
		return err
	}
	if err := snapshotNetstat(c, klog, "server", "start"); err != nil {
		return err
	}
	for _, a := range pl.Arms {
		on := a.Defer && c.Fault()
		p, desc, err := pl.Start(c, a, on, docroot)
		if err != nil {
			return fmt.Errorf("arm %s: %w", a.Name, err)
		}
		if err := waitListening(c, "server", p.Name, p, int(a.Port)); err != nil {
			return err
		}
		logListener(c, klog, a.Name, p.PID, a.Port)
		klog.write("arm", map[string]any{"arm": a.Name, "port": a.Port, "server": desc, "check_before_reuse": a.Check})
	}
	if err := c.Sample("server", sockdiag.Filter{}, pl.Sample); err != nil {
		return err
	}
	var checkProfile string
	for _, a := range pl.Arms {
		profile := "juniper-dx"
		if a.Check {
			if checkProfile == "" {
				if checkProfile, err = c.WriteFile("juniper-dx-check.yaml", []byte(dxCheckProfile)); err != nil {
					return err
				}
			}
			profile = checkProfile
		}
		name := dxProxyName(a)
		log := filepath.Join(c.Dir, name+".jsonl")
		if _, err := c.StartLogged("lb", name, log, c.Exe, "proxy", "--profile", profile,
			"--listen", Addr("lb", int(a.Port)), "--backend", Addr("server", int(a.Port)), "--log", log); err != nil {
			return err
		}
	}
	// Each arm's requests are timed from its own pool's opening, so a DX
	// that starts late does not shift its connections' idle times.
	var wg sync.WaitGroup
	errs := make([]error, len(pl.Arms))
	for ai, a := range pl.Arms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[ai] = pl.armRequests(c, a)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.Context().Err(); err != nil {
		return err
	}
	if err := snapshotNetstat(c, klog, "server", "end"); err != nil {
		return err
	}
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

// armRequests waits until arm a's DX has opened its pool and listens, then
// sends the plan's requests through it, each at its age after the opening.
func (pl *dxPlan) armRequests(c *Context, a dxArm) error {
	name := dxProxyName(a)
	log := filepath.Join(c.Dir, name+".jsonl")
	ok, err := c.WaitFor(name+" to open its pool", 10*time.Second, func() bool { return countEvents(log, "open") >= dxPool })
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s did not open its %d pooled connections within 10s: %s", name, dxPool, tailFile(filepath.Join(c.Dir, name+".err"), 5))
	}
	t0 := time.Now()
	if err := waitListening(c, "lb", name, nil, int(a.Port)); err != nil {
		return err
	}
	c.StepAt(t0, "lb", "DX %s has opened its pool of %d connections with no request; requests follow at %s", a.Name, dxPool, agesText(pl.Ages))
	var wg sync.WaitGroup
	for i, age := range pl.Ages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Wait(fmt.Sprintf("request %d at +%s", i+1, secs1(age)), time.Until(t0.Add(age))) == nil {
				pl.request(c, a, i+1)
			}
		}()
	}
	wg.Wait()
	return nil
}

func agesText(ages []time.Duration) string {
	var s []string
	for _, a := range ages {
		s = append(s, fmt.Sprintf("+%gs", a.Seconds()))
	}
	return strings.Join(s, ", ")
}

// request sends one GET through arm a's DX and records what came back.
func (pl *dxPlan) request(c *Context, a dxArm, n int) {
	c.runClient(ClientResult{Name: fmt.Sprintf("request %d", n), Arm: a.Name}, Addr("lb", int(a.Port)), 2*time.Second, func(conn *net.TCPConn, r *ClientResult) {
		conn.SetDeadline(time.Now().Add(pl.Deadline))
		var err error
		r.Status, r.Bytes, err = Get(conn, bufio.NewReader(conn), "/", true, -1)
		r.SetErr(err)
	})
}
