package deferaccept

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
	"github.com/faultbox/faultbox/internal/scenario"
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

// poolArm is one variant of a DX run.
type poolArm struct {
	Name   string // "A", "B", "C"
	Port   uint16 // the server's port, and the DX's in lb
	Defer  bool   // the server defers accept (when the fault is on)
	Check  bool   // the DX checks a pooled connection before reuse
	Change string // what differs, for the report
	Expect report.Outcome
}

// poolArms are the arms of a DX run, changeA..changeC saying what each
// runs: A the server with defer-accept and the DX as in the field, B the
// server without defer-accept, C with it and a DX that checks a pooled
// connection before reuse. A and B are expected to fail on this kernel.
func poolArms(changeA, changeB, changeC string) []poolArm {
	return []poolArm{
		{Name: "A", Port: 80, Defer: true, Expect: report.Reproduced, Change: changeA},
		{Name: "B", Port: 81, Expect: report.Reproduced, Change: changeB},
		{Name: "C", Port: 82, Defer: true, Check: true, Expect: report.NotReproduced, Change: changeC},
	}
}

// poolRun is one DX
type poolRun struct {
	Server   string          // "Apache 2.4", "nginx"
	Arms     []poolArm       // Arms[0] is the default configuration, the one under test
	Ages     []time.Duration // when requests go out, after the pools opened
	Deadline time.Duration   // each client request's own deadline
	Sample   time.Duration   // socket sampling interval in the server
	// Start starts the server of arm a with defer-accept on or off, its
	// documents in docroot, and returns it and one line describing its
	// configuration.
	Start func(c *scenario.Context, a poolArm, deferOn bool, docroot string) (*scenario.Proc, string, error)
	// Notes go under every verdict: what this server and kernel do
	// differently from the field report.
	Notes []string
}

// register registers the plan as scenario s: its hosts (client, lb,
// server), the juniper-dx profile, and the plan's Drive and Judge.
func (pl *poolRun) register(s *scenario.Scenario) {
	s.Hosts, s.Profile = []string{"client", "lb", "server"}, "juniper-dx"
	s.Drive = pl.drive
	s.Judge = func(e *scenario.Evidence) scenario.Verdict {
		v := pl.judge(e)
		v.Notes = append(v.Notes, pl.Notes...)
		return v
	}
	scenario.Register(s)
}

// poolSize is the DX's pool per backend: its default, as in the
// juniper-dx profile.
const poolSize = 6

func proxyName(a poolArm) string { return "dx-" + strings.ToLower(a.Name) }

// checkingDXProfile is the juniper-dx profile with check_before_reuse on: a
// DX that notices a pooled connection the server has closed.
const checkingDXProfile = `name: juniper-dx-check
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

func (pl *poolRun) drive(c *scenario.Context) error {
	docroot, err := scenario.Docroot([]byte("hello from the server behind the DX\n"))
	if err != nil {
		return err
	}
	defer os.RemoveAll(docroot)
	klog, err := c.KernelLog("server", kernelLog)
	if err != nil {
		return err
	}
	if err := klog.Netstat("start", deferCounters); err != nil {
		return err
	}
	if err := pl.startServers(c, klog, docroot); err != nil {
		return err
	}
	if err := c.Sample("server", sockdiag.Filter{}, pl.Sample); err != nil {
		return err
	}
	dxs, err := pl.startDXs(c)
	if err != nil {
		return err
	}
	// Each arm's requests are timed from its own pool's opening, so a DX
	// that starts late does not shift its connections' idle times.
	var wg sync.WaitGroup
	errs := make([]error, len(pl.Arms))
	for ai, a := range pl.Arms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[ai] = pl.armRequests(c, a, dxs[ai])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.Context().Err(); err != nil {
		return err
	}
	if err := klog.Netstat("end", deferCounters); err != nil {
		return err
	}
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

// startServers starts every arm's server, defer-accept on as the arm and
// the fault say, and logs its listener's TCP_DEFER_ACCEPT and
// configuration in the kernel log.
func (pl *poolRun) startServers(c *scenario.Context, klog *scenario.KernelLog, docroot string) error {
	for _, a := range pl.Arms {
		on := a.Defer && c.Fault()
		p, desc, err := pl.Start(c, a, on, docroot)
		if err != nil {
			return fmt.Errorf("arm %s: %w", a.Name, err)
		}
		if err := c.WaitListening("server", p.Name, p, int(a.Port)); err != nil {
			return err
		}
		logListener(c, klog, a.Name, p.PID, a.Port)
		klog.Write("arm", map[string]any{"arm": a.Name, "port": a.Port, "server": desc, "check_before_reuse": a.Check})
	}
	return nil
}

// startDXs starts every arm's DX (`faultbox proxy --profile juniper-dx`,
// or the checking one) in lb, in front of its server, and returns them
// in the order of the arms.
func (pl *poolRun) startDXs(c *scenario.Context) ([]*scenario.Proc, error) {
	var dxs []*scenario.Proc
	var checkProfile string
	for _, a := range pl.Arms {
		profile := "juniper-dx"
		if a.Check {
			if checkProfile == "" {
				var err error
				if checkProfile, err = c.WriteFile("juniper-dx-check.yaml", []byte(checkingDXProfile)); err != nil {
					return nil, err
				}
			}
			profile = checkProfile
		}
		name := proxyName(a)
		log := filepath.Join(c.Dir, name+".jsonl")
		p, err := c.StartLogged("lb", name, log, c.Exe, "proxy", "--profile", profile,
			"--listen", scenario.Addr("lb", int(a.Port)), "--backend", scenario.Addr("server", int(a.Port)), "--log", log)
		if err != nil {
			return nil, err
		}
		dxs = append(dxs, p)
	}
	return dxs, nil
}

// armRequests waits until arm a's DX has opened its pool and listens, then
// sends the plan's requests through it, each at its age after the opening.
func (pl *poolRun) armRequests(c *scenario.Context, a poolArm, dx *scenario.Proc) error {
	ok, err := c.WaitFor(dx.Name+" to open its pool", 10*time.Second, func() bool { return dx.LogEvents("open") >= poolSize })
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s did not open its %d pooled connections within 10s: %s", dx.Name, poolSize, dx.StderrTail())
	}
	t0 := time.Now()
	if err := c.WaitListening("lb", dx.Name, nil, int(a.Port)); err != nil {
		return err
	}
	c.StepAt(t0, "lb", "DX %s has opened its pool of %d connections with no request; requests follow at %s", a.Name, poolSize, agesText(pl.Ages))
	var wg sync.WaitGroup
	for i, age := range pl.Ages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Wait(fmt.Sprintf("request %d at +%s", i+1, scenario.Tenths(age)), time.Until(t0.Add(age))) == nil {
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
func (pl *poolRun) request(c *scenario.Context, a poolArm, n int) {
	c.RunClient(scenario.ClientResult{Name: fmt.Sprintf("request %d", n), Arm: a.Name}, scenario.Addr("lb", int(a.Port)), 2*time.Second, func(conn *net.TCPConn, r *scenario.ClientResult) {
		conn.SetDeadline(time.Now().Add(pl.Deadline))
		var err error
		r.Status, r.Bytes, err = scenario.Get(conn, bufio.NewReader(conn), "/", true, -1)
		r.SetErr(err)
	})
}
