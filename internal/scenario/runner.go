package scenario

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// Options say how to run a scenario. The zero value runs it with its
// fault on, a random seed, a report in a new temporary directory, and
// removes the lab at the end.
type Options struct {
	Seed      *uint64 // nil: random
	ReportDir string  // "": a new directory under os.TempDir()
	KeepLab   bool    // leave the lab and its servers up for inspection
	// FaultOff runs the same scenario with its fault off (passthrough
	// profile, or the fix for scenarios whose fault is a server setting):
	// a sound scenario then says "not reproduced".
	FaultOff bool
	// Executable is the faultbox binary run as the lab's device and as
	// serve/proxy (default: this program).
	Executable string
	// Progress gets one updating line while the run waits, when it is a
	// terminal (normally os.Stderr).
	Progress *os.File
	// Out gets the report directory before the run starts and the hint to
	// remove a kept lab (default: discarded).
	Out io.Writer
}

// Result is a finished run.
type Result struct {
	Scenario *Scenario
	Report   *report.Report
	Dir      string // the report directory
	Lab      string // the lab's name
	Kept     bool   // the lab was left up (--keep-lab)
	Wall     time.Duration
}

// Exit statuses of `faultbox scenario run`.
const (
	ExitAsExpected = 0 // the outcome is what the scenario expects
	ExitUnexpected = 1 // it is not (e.g. "not reproduced" with the fault off)
	ExitError      = 2 // the run could not decide
)

// ExitCode is the run's exit status.
func (r *Result) ExitCode() int {
	switch {
	case r.Report.Outcome == report.Error:
		return ExitError
	case r.Report.Pass():
		return ExitAsExpected
	}
	return ExitUnexpected
}

// UnknownError is returned for a scenario name that is not registered.
type UnknownError struct{ Name string }

func (e *UnknownError) Error() string {
	return fmt.Sprintf("no scenario %q (known: %s)", e.Name, strings.Join(Names(), ", "))
}

// errBudget ends Drive when it overruns its scenario's budget.
var errBudget = errors.New("the scenario's time budget ran out")

// Run runs the scenario called name. Failures of the run itself (the lab,
// a server that does not start, Ctrl-C) give a Result whose outcome is
// report.Error, with the report written; the error is only for an unknown
// scenario or a report directory that cannot be made.
func Run(ctx context.Context, name string, o Options) (*Result, error) {
	s, ok := Lookup(name)
	if !ok {
		return nil, &UnknownError{name}
	}
	dir, err := reportDir(o.ReportDir, name)
	if err != nil {
		return nil, err
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	fmt.Fprintf(out, "scenario %s: report in %s\n", name, dir)
	r := &runner{s: s, o: o, dir: dir, out: out, start: time.Now()}
	r.rep = &report.Report{
		Scenario: s.Name, Description: s.Description, Expected: s.expect(),
		Kernel: report.KernelVersion(), Start: r.start, Profile: s.profileName(),
	}
	if o.FaultOff {
		r.rep.Scenario += " (fault off)"
		r.rep.Profile = "passthrough (fault off)"
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r.run(ctx)
	return &Result{Scenario: s, Report: r.rep, Dir: dir, Lab: r.lab, Kept: r.kept, Wall: time.Since(r.start)}, nil
}

func reportDir(dir, name string) (string, error) {
	if dir == "" {
		return os.MkdirTemp("", "faultbox-"+name+"-")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

// runner is one run in progress.
type runner struct {
	s     *Scenario
	o     Options
	dir   string
	out   io.Writer
	start time.Time
	rep   *report.Report
	lab   string
	kept  bool
	c     *Context
}

// run does everything and always leaves a written report.
func (r *runner) run(ctx context.Context) {
	ev, driveErr := r.drive(ctx)
	var v Verdict
	switch {
	case driveErr != nil:
		v = Verdict{Outcome: report.Error, Reason: driveErr.Error()}
	default:
		v = judge(r.s, ev)
	}
	r.fill(ev, v)
	if err := r.write(ev); err != nil {
		r.rep.Notes = append(r.rep.Notes, "writing the report: "+err.Error())
		fmt.Fprintf(r.out, "scenario %s: writing the report: %v\n", r.s.Name, err)
	}
}

// judge runs the scenario's Judge; a panic is an error outcome, not a crash.
func judge(s *Scenario, ev *Evidence) (v Verdict) {
	defer func() {
		if p := recover(); p != nil {
			v = Verdict{Outcome: report.Error, Reason: fmt.Sprintf("judging the evidence failed: %v\n%s", p, debug.Stack())}
		}
	}()
	v = s.Judge(ev)
	if v.Outcome == "" {
		v.Outcome = report.Error
		v.Reason = "the scenario's Judge returned no outcome"
	}
	return v
}

// drive builds the lab, runs Drive, collects the evidence and tears down.
func (r *runner) drive(ctx context.Context) (*Evidence, error) {
	ev := &Evidence{Start: r.start, Kernel: r.rep.Kernel, Sockets: map[string]*sockdiag.Series{}, Logs: map[string][]LogEvent{}}
	exe := r.o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return ev, fmt.Errorf("finding the faultbox binary: %w", err)
		}
	}
	seed, err := r.seed()
	if err != nil {
		return ev, err
	}
	r.rep.Seed = seed
	profile, err := r.profile()
	if err != nil {
		return ev, err
	}
	prog := newProgress(r.o.Progress, r.s.Name)
	defer prog.close()
	c, err := r.labUp(exe, seed, profile, prog)
	if err != nil {
		return ev, err
	}
	dctx, cancel := context.WithTimeoutCause(ctx, r.s.budget(), errBudget)
	defer cancel()
	c.ctx = dctx
	driveErr := r.sysctls()
	if driveErr == nil {
		driveErr = runDrive(r.s, c)
	}
	if driveErr == nil && ctx.Err() != nil {
		driveErr = fmt.Errorf("interrupted: %v", context.Cause(ctx))
	}
	if err := r.tearDown(ev, prog); err != nil && driveErr == nil {
		driveErr = err
	}
	r.readBack(ev)
	return ev, driveErr
}

// capturePath is where the device writes the run's capture.
func (r *runner) capturePath() string { return filepath.Join(r.dir, "capture.pcapng") }

// labUp brings up the run's lab with the profile it starts with and makes
// the Context Drive works with.
func (r *runner) labUp(exe string, seed uint64, profile string, prog *progress) (*Context, error) {
	r.lab = lab.UniqueName("sc")
	c := &Context{Scenario: r.s, Lab: r.lab, Seed: seed, Dir: r.dir, Exe: exe,
		start: r.start, fault: !r.o.FaultOff, prog: prog}
	r.c = c
	prog.set("the lab "+r.lab+" to come up", time.Now().Add(10*time.Second))
	_, err := lab.Up(lab.Options{Hosts: r.s.hosts(), Options: device.Options{Name: r.lab, Profile: profile, Seed: &seed,
		Capture: r.capturePath(), Executable: exe, Notes: r.out}})
	prog.set("", time.Time{})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	c.Step("scenario", "lab %s up (hosts %s), profile %s, seed %d", r.lab, strings.Join(r.s.hosts(), ", "), r.rep.Profile, seed)
	if !c.fault {
		c.Note("Fault off: the same scenario run without its fault, as a control; it must not reproduce the failure.")
	}
	return c, nil
}

// tearDown collects the evidence that goes with the lab and removes it
// (unless it is kept): the samplers stop before any process does, so that
// a socket vanishing when its server is killed is never taken for one the
// kernel removed. The error is lab down's.
func (r *runner) tearDown(ev *Evidence, prog *progress) error {
	c := r.c
	ev.Sockets = c.stopSamplers()
	prog.set("the teardown", time.Time{})
	defer prog.set("", time.Time{})
	ev.Events = r.events()
	r.checkDeviceLosses()
	if r.o.KeepLab {
		r.kept = true
		// The device flushes its capture every second; give it one.
		time.Sleep(1200 * time.Millisecond)
	} else {
		for _, line := range c.stopProcs() {
			c.Step("scenario", "%s", line)
		}
	}
	c.closeConns()
	if !r.kept {
		if _, err := lab.Down(r.lab); err != nil {
			return fmt.Errorf("lab down: %w", err)
		}
	}
	return nil
}

// readBack reads the evidence the run left in files: the capture and the
// processes' logs; and the clients' results.
func (r *runner) readBack(ev *Evidence) {
	c := r.c
	ev.Capture, ev.CaptureErr = report.ReadCapture(r.capturePath(), report.Filter{})
	for _, lf := range c.logs {
		evs, err := readLog(lf.path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			c.Note("log %s: %v", lf.name, err)
		}
		ev.Logs[lf.name] = evs
	}
	c.mu.Lock()
	ev.Clients = slices.Clone(c.clients)
	c.mu.Unlock()
}

// runDrive runs Drive; a panic is an error outcome, not a crash that
// leaves the lab behind.
func runDrive(s *Scenario, c *Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("drive panicked: %v\n%s", p, debug.Stack())
		}
	}()
	if err := s.Drive(c); err != nil {
		if errors.Is(context.Cause(c.ctx), errBudget) {
			return fmt.Errorf("%w (%v): %v", errBudget, s.budget(), err)
		}
		return err
	}
	return nil
}

func (r *runner) seed() (uint64, error) {
	if r.o.Seed != nil {
		return *r.o.Seed, nil
	}
	return device.RandomSeed(), nil
}

// profile returns what the lab starts with: the scenario's profile, its
// inline profile written to profile.yaml, or passthrough with the fault off.
func (r *runner) profile() (string, error) {
	switch {
	case r.o.FaultOff:
		return "passthrough", nil
	case r.s.ProfileYAML != "":
		p := filepath.Join(r.dir, "profile.yaml")
		return p, os.WriteFile(p, []byte(r.s.ProfileYAML), 0o644)
	case r.s.Profile != "":
		return r.s.Profile, nil
	}
	return "passthrough", nil
}

func (r *runner) sysctls() error {
	for _, sc := range r.s.Sysctls {
		if err := r.c.Sysctl(sc.Host, sc.Key, sc.Value, sc.Why); err != nil {
			return err
		}
	}
	return nil
}

// events fetches the device's event log, a bounded number of pages.
func (r *runner) events() []client.Event {
	var all []client.Event
	var from uint64
	for range 100 {
		evs, next, err := device.Events(r.lab, from)
		if err != nil {
			r.c.Note("device events: %v", err)
			break
		}
		all = append(all, evs...)
		if len(evs) == 0 || next == from {
			break
		}
		from = next
	}
	return all
}

// checkDeviceLosses notes packets the device lost on its own (its input
// queues overflowed): a reproduction should owe nothing to them.
func (r *runner) checkDeviceLosses() {
	st, err := device.GetStatus(r.lab)
	if err != nil {
		r.c.Note("device status: %v", err)
		return
	}
	if n := st.QueueDrops(); n > 0 {
		r.c.Note("Warning: %s", device.QueueDropsWarning(n))
	}
}

// fill puts the verdict and the evidence into the report.
func (r *runner) fill(ev *Evidence, v Verdict) {
	rep, c := r.rep, r.c
	rep.Outcome, rep.Reason, rep.Runs = v.Outcome, v.Reason, v.Runs
	rep.Duration = time.Since(r.start)
	var steps []report.Entry
	if c != nil {
		c.mu.Lock()
		steps = slices.Clone(c.steps)
		rep.Notes = append(rep.Notes, c.notes...)
		rep.Sysctls, rep.SysctlNote = sysctlReport(c.sysctls)
		c.mu.Unlock()
		rep.SampleInterval = r.s.sampleEvery()
	}
	rep.Timeline = append(steps, v.Timeline...)
	slices.SortStableFunc(rep.Timeline, func(a, b report.Entry) int { return cmp.Compare(a.At, b.At) })
	rep.Notes = append(rep.Notes, v.Notes...)
	if v.Results != nil {
		rep.Results = *v.Results
	} else {
		rep.Results = clientTable(ev.Clients, r.start)
	}
	rep.Distributions = v.Distributions
	rep.Ladder.Conns, rep.Ladder.Marks = v.Ladder, v.Marks
	rep.Ladder.MaxPackets = 300
	for host, sr := range ev.Sockets {
		for _, s := range sr.Samples {
			if s.State == sockdiag.Listen || (c != nil && c.preexisting[s.Key]) {
				continue
			}
			rep.Sockets = append(rep.Sockets, report.SocketSample{
				At: sr.Start.Add(s.T).Sub(r.start), Host: host, Local: s.Key.Src, Remote: s.Key.Dst,
				State: s.State.String(), Timer: s.Timer.String(), Retrans: int(s.Retrans),
				Unacked: int(s.Unacked), RTT: s.RTT,
			})
		}
	}
	for _, e := range ev.Events {
		rep.Events = append(rep.Events, e.Text)
	}
}

// sysctlReport renders the sysctls for the report: "host: key" → value,
// and a note with every reason.
func sysctlReport(scs []Sysctl) (map[string]string, string) {
	if len(scs) == 0 {
		return nil, ""
	}
	m := map[string]string{}
	var why []string
	for _, sc := range scs {
		m[hostLabel(sc.Host)+": "+sc.Key] = sc.Value
		why = append(why, fmt.Sprintf("%s=%s in %s: %s", sc.Key, sc.Value, hostLabel(sc.Host), sc.Why))
	}
	return m, "Set inside the lab's network namespaces only (the host's own settings are untouched), " +
		"to shorten kernel timers so the run takes seconds instead of minutes: " + strings.Join(why, "; ") + "."
}

// clientTable is the default table of client results.
func clientTable(rs []ClientResult, start time.Time) report.Table {
	t := report.Table{Columns: []string{"client", "arm", "connection", "start", "took", "status", "bytes", "error", "detail"}}
	for _, c := range rs {
		status := ""
		if c.Status != 0 {
			status = fmt.Sprint(c.Status)
		}
		e := c.Err
		if c.Kind != "" && c.Kind != KindOther {
			e = c.Kind + ": " + e
		}
		t.Rows = append(t.Rows, []string{c.Name, c.Arm, c.Local.String() + " → " + c.Remote.String(),
			fmt.Sprintf("%.3fs", c.Start.Sub(start).Seconds()), c.End.Sub(c.Start).Round(time.Millisecond).String(),
			status, fmt.Sprint(c.Bytes), e, c.Detail})
	}
	return t
}

// write writes the report and clients.json.
func (r *runner) write(ev *Evidence) error {
	if r.c != nil {
		r.rep.Capture = r.capturePath()
		if _, err := os.Stat(r.rep.Capture); err != nil {
			r.rep.Capture = ""
		}
	}
	var errs []error
	if b, err := json.MarshalIndent(ev.Clients, "", "  "); err == nil {
		if err := os.WriteFile(filepath.Join(r.dir, "clients.json"), append(b, '\n'), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, report.Write(r.dir, r.rep))
	return errors.Join(errs...)
}
