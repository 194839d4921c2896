package scenario

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Proc is a process started in a lab host. The runner stops it when Drive
// returns: SIGTERM to its process group, SIGKILL after a second.
type Proc struct {
	Name   string // unique in the run; names its files in the report
	Host   string
	PID    int
	Log    string // serve/proxy JSON log, if any
	Stdout string // file with its standard output
	Stderr string // file with its standard error

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Start runs argv in host's namespace in the background (`ip netns exec`,
// which also mounts the lab's /etc/hosts, as `faultbox lab exec` does), in a
// process group of its own, with its output in NAME.out and NAME.err in the
// report directory.
func (c *Context) Start(host, name string, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("start: no command")
	}
	c.mu.Lock()
	for _, p := range c.procs {
		if p.Name == name {
			c.mu.Unlock()
			return nil, fmt.Errorf("start: a process named %q already exists", name)
		}
	}
	c.mu.Unlock()
	p := &Proc{Name: name, Host: host, exited: make(chan struct{}),
		Stdout: filepath.Join(c.Dir, name+".out"), Stderr: filepath.Join(c.Dir, name+".err")}
	out, err := os.Create(p.Stdout)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	errf, err := os.Create(p.Stderr)
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.Namespace(host)}, argv...)...)
	cmd.Stdout, cmd.Stderr = out, errf
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, host, err)
	}
	p.cmd, p.PID = cmd, cmd.Process.Pid
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.Step(host, "started %s (pid %d): %s", name, p.PID, shortArgv(argv))
	return p, nil
}

// shortArgv renders argv for the timeline, with the faultbox binary's path
// shortened to its name.
func shortArgv(argv []string) string {
	a := append([]string(nil), argv...)
	a[0] = filepath.Base(a[0])
	return strings.Join(a, " ")
}

// Serve starts `faultbox serve` in host with its JSON log in NAME.jsonl
// (Evidence.Logs[NAME]) and returns once every --listen address is open.
func (c *Context) Serve(host, name string, flags ...string) (*Proc, error) {
	return c.ServeWith(nil, host, name, flags...)
}

// ServeWith is Serve with prefix (such as nice -n -10) before the command.
func (c *Context) ServeWith(prefix []string, host, name string, flags ...string) (*Proc, error) {
	logPath := filepath.Join(c.Dir, name+".jsonl")
	// A report directory used before holds the last run's log, whose
	// listen lines would end the wait below before this server listens.
	if err := os.Remove(logPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	argv := append(append(slices.Clone(prefix), c.Exe, "serve", "--log", logPath), flags...)
	p, err := c.StartLogged(host, name, logPath, argv...)
	if err != nil {
		return nil, err
	}
	want := max(1, strings.Count(" "+strings.Join(flags, " "), " --listen"))
	ok, err := c.WaitFor(name+" to listen", 5*time.Second, func() bool {
		return p.Exited() || countEvents(logPath, "listen") >= want
	})
	switch {
	case err != nil:
		return p, err
	case p.Exited():
		return p, fmt.Errorf("%s exited at once (%v): %s", name, p.err, p.StderrTail())
	case !ok:
		return p, fmt.Errorf("%s did not listen within 5s: %s", name, p.StderrTail())
	}
	return p, nil
}

// StartLogged is Start for a program that writes a JSON-lines log the
// evidence should hold (such as `faultbox proxy --log FILE`): logPath is
// read into Evidence.Logs[name] at the end.
func (c *Context) StartLogged(host, name, logPath string, argv ...string) (*Proc, error) {
	p, err := c.Start(host, name, argv...)
	if err != nil {
		return nil, err
	}
	p.Log = logPath
	c.mu.Lock()
	c.logs = append(c.logs, logFile{name, logPath})
	c.mu.Unlock()
	return p, nil
}

// CmdResult is a finished command.
type CmdResult struct {
	Stdout, Stderr string
	Code           int // exit status; -1 when killed or not started
	Start, End     time.Time
}

// Exec runs argv in host's namespace to completion, bounded by timeout and
// by the run's context.
func (c *Context) Exec(host string, timeout time.Duration, argv ...string) (CmdResult, error) {
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.Namespace(host)}, argv...)...)
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	r := CmdResult{Code: -1, Start: time.Now()}
	err := cmd.Run()
	r.End = time.Now()
	r.Stdout, r.Stderr = out.String(), errb.String()
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("%s in %s: %w after %v", filepath.Base(argv[0]), host, ctx.Err(), timeout)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return r, err
	}
	return r, nil
}

// stopProcs ends every process started, newest first: SIGTERM to its
// group, SIGKILL after a second. It returns what it did, for the log.
func (c *Context) stopProcs() []string {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	var done []string
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if p.Exited() {
			done = append(done, fmt.Sprintf("%s (pid %d) had exited: %v", p.Name, p.PID, exitText(p.err)))
			continue
		}
		syscall.Kill(-p.PID, syscall.SIGTERM) // our own group: Setpgid above
		select {
		case <-p.exited:
			done = append(done, fmt.Sprintf("%s (pid %d) stopped", p.Name, p.PID))
		case <-time.After(time.Second):
			syscall.Kill(-p.PID, syscall.SIGKILL)
			<-p.exited
			done = append(done, fmt.Sprintf("%s (pid %d) killed after 1s", p.Name, p.PID))
		}
	}
	return done
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// LogEvents counts the lines of the process's JSON log (StartLogged)
// whose event is ev, as far as it is written now.
func (p *Proc) LogEvents(ev string) int { return countEvents(p.Log, ev) }

// StderrTail is the last lines of the process's standard error, on one
// line: why it failed, for an error message.
func (p *Proc) StderrTail() string { return tailFile(p.Stderr, 5) }

// countEvents counts the JSON lines of a log whose event is ev.
func countEvents(path, ev string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	needle := []byte(`"event":"` + ev + `"`)
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), needle) {
			n++
		}
	}
	return n
}

// tailFile returns the last n lines of a file, on one line.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, " | ")
	if s == "" {
		return "(no output)"
	}
	return s
}
