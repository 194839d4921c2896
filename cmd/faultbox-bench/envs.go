package main

// The networks measured: a direct veth pair between two namespaces (the
// baseline) and faultbox labs. Each gives a way to run a command in its
// client or server host, the server's address, and the device's pid.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/lab"
)

type env interface {
	// Command runs args in host ("client" or "server").
	Command(ctx context.Context, host string, args ...string) *exec.Cmd
	ServerAddr() string
	// ClientPort is the port a client connects to for a server's port.
	ClientPort(port int) int
	// UDP reports whether UDP goes through (a TCP proxy does not carry it).
	UDP() bool
	DaemonPID() int // the device or proxy; 0: none
	Close() error
}

// cleanups run on every exit path, also after Ctrl-C, last registered first.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

var atExit cleanups

// run runs a command with a deadline and returns its error with its output.
func run(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// vethEnv is two fresh namespaces joined by a veth pair.
type vethEnv struct {
	ns map[string]string
}

func newVeth(ctx context.Context) (*vethEnv, error) {
	id := lab.UniqueName("")
	e := &vethEnv{ns: map[string]string{"client": "fbx-b-" + id + "-c", "server": "fbx-b-" + id + "-s"}}
	for _, ns := range e.ns {
		atExit.add(func() { exec.Command("ip", "netns", "del", ns).Run() })
		if _, err := run(ctx, 10*time.Second, "ip", "netns", "add", ns); err != nil {
			return e, err
		}
	}
	c, s := e.ns["client"], e.ns["server"]
	steps := [][]string{
		{"-n", c, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", s},
		{"-n", c, "addr", "add", "198.18.1.1/24", "dev", "veth0"},
		{"-n", s, "addr", "add", "198.18.1.2/24", "dev", "veth0"},
		{"-n", c, "link", "set", "lo", "up"},
		{"-n", s, "link", "set", "lo", "up"},
		{"-n", c, "link", "set", "veth0", "up"},
		{"-n", s, "link", "set", "veth0", "up"},
	}
	for _, args := range steps {
		if _, err := run(ctx, 10*time.Second, "ip", args...); err != nil {
			return e, err
		}
	}
	return e, nil
}

func (e *vethEnv) Command(ctx context.Context, host string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.ns[host]}, args...)...)
}
func (e *vethEnv) ServerAddr() string      { return "198.18.1.2" }
func (e *vethEnv) ClientPort(port int) int { return port }
func (e *vethEnv) UDP() bool               { return true }
func (e *vethEnv) DaemonPID() int          { return 0 }
func (e *vethEnv) Close() error {
	var first error
	for _, ns := range e.ns {
		if _, err := run(context.Background(), 10*time.Second, "ip", "netns", "del", ns); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// labEnv is a faultbox lab with hosts client and server.
type labEnv struct {
	faultbox, name string
	pid            int
}

func newLab(ctx context.Context, faultbox, profile string, more ...string) (*labEnv, error) {
	e := &labEnv{faultbox: faultbox, name: lab.UniqueName("b-")}
	atExit.add(func() { exec.Command(faultbox, "lab", "down", "--name", e.name).Run() })
	args := append([]string{"lab", "up", "--name", e.name, "--profile", profile}, more...)
	if _, err := run(ctx, 90*time.Second, faultbox, args...); err != nil {
		return e, err
	}
	st, err := device.ReadState(e.name)
	if err != nil || st.Device.PID <= 0 {
		return e, fmt.Errorf("lab %s: no device pid in its state (%v)", e.name, err)
	}
	e.pid = st.Device.PID
	return e, nil
}

func (e *labEnv) Command(ctx context.Context, host string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, e.faultbox, append([]string{"lab", "exec", "--name", e.name, host, "--"}, args...)...)
}
func (e *labEnv) ServerAddr() string      { return "198.18.0.2" }
func (e *labEnv) ClientPort(port int) int { return port }
func (e *labEnv) UDP() bool               { return true }
func (e *labEnv) DaemonPID() int          { return e.pid }
func (e *labEnv) Close() error {
	_, err := run(context.Background(), 60*time.Second, e.faultbox, "lab", "down", "--name", e.name)
	return err
}

// toxiEnv is the veth pair with Toxiproxy in the server's namespace: each
// server port p is also reachable through the proxy on p+10000. A TCP
// proxy terminates the connection, so this compares the cost of proxying
// (two sockets and a copy per byte) with faultbox's packet forwarding.
type toxiEnv struct {
	*vethEnv
	proxy *bg
}

const toxiOffset = 10000

func newToxiproxy(ctx context.Context, bin string, ports ...int) (*toxiEnv, error) {
	v, err := newVeth(ctx)
	e := &toxiEnv{vethEnv: v}
	if err != nil {
		return e, err
	}
	type proxy struct {
		Name     string `json:"name"`
		Listen   string `json:"listen"`
		Upstream string `json:"upstream"`
		Enabled  bool   `json:"enabled"`
	}
	var proxies []proxy
	for _, p := range ports {
		proxies = append(proxies, proxy{Name: fmt.Sprintf("p%d", p), Enabled: true,
			Listen:   fmt.Sprintf("%s:%d", v.ServerAddr(), p+toxiOffset),
			Upstream: fmt.Sprintf("%s:%d", v.ServerAddr(), p)})
	}
	cfg, err := os.CreateTemp("", "fbx-bench-toxiproxy-*.json")
	if err != nil {
		return e, err
	}
	atExit.add(func() { os.Remove(cfg.Name()) })
	if err := json.NewEncoder(cfg).Encode(proxies); err != nil {
		return e, err
	}
	cfg.Close()
	// Its API listens on the server namespace's loopback only.
	e.proxy, err = startBG(ctx, v, "server", bin, "-host", "127.0.0.1", "-port", "8474", "-config", cfg.Name())
	if err != nil {
		return e, err
	}
	for _, p := range ports {
		if err := waitListen(ctx, v, "server", "t", p+toxiOffset); err != nil {
			return e, fmt.Errorf("toxiproxy: %v: %s", err, e.proxy.out)
		}
	}
	return e, nil
}

func (e *toxiEnv) ClientPort(port int) int { return port + toxiOffset }
func (e *toxiEnv) UDP() bool               { return false }
func (e *toxiEnv) DaemonPID() int {
	if e.proxy == nil {
		return 0
	}
	return e.proxy.proc.PID
}
func (e *toxiEnv) Close() error {
	if e.proxy != nil {
		e.proxy.kill()
	}
	return e.vethEnv.Close()
}

// bg is a process running in a host in the background.
type bg struct {
	cmd  *exec.Cmd
	proc device.Proc // the process itself, as it wrote its pid: a reused pid is never signalled
	out  *bytes.Buffer
	done chan error
}

// startBG starts args in host; it records its own pid (whatever runs
// between it and us) and is killed by that pid at exit.
func startBG(ctx context.Context, e env, host string, args ...string) (*bg, error) {
	dir, err := os.MkdirTemp("", "fbx-bench-")
	if err != nil {
		return nil, err
	}
	atExit.add(func() { os.RemoveAll(dir) })
	pidFile := filepath.Join(dir, "pid")
	sh := append([]string{"sh", "-c", `echo $$ >"$0"; shift; exec "$@"`, pidFile, "-"}, args...)
	b := &bg{cmd: e.Command(context.Background(), host, sh...), out: &bytes.Buffer{}, done: make(chan error, 1)}
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	// Own process group: Ctrl-C reaches us, and we end the probes in order.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { b.done <- b.cmd.Wait() }()
	atExit.add(b.kill)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				b.proc, _ = device.ProcOf(pid) // gone already: the zero Proc is never signalled
				return b, nil
			}
		}
		select {
		case err := <-b.done:
			b.done <- err
			return nil, fmt.Errorf("%s in %s exited at once: %v: %s", args[0], host, err, b.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("%s in %s: no pid after 10s", args[0], host)
}

// wait waits up to d for the process to exit by itself.
func (b *bg) wait(d time.Duration) error {
	select {
	case err := <-b.done:
		b.done <- err
		return err
	case <-time.After(d):
		return fmt.Errorf("%s: still running after %v", b.cmd.Args, d)
	}
}

func (b *bg) kill() {
	b.proc.Signal(unix.SIGKILL)
	b.cmd.Process.Kill()
	b.wait(10 * time.Second)
}

// waitListen waits until something listens on port in host (proto t or u).
func waitListen(ctx context.Context, e env, host, proto string, port int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		out, err := e.Command(ctx, host, "ss", "-Hn"+proto+"l", fmt.Sprintf("sport = :%d", port)).Output()
		if err == nil && len(bytes.TrimSpace(out)) > 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("nothing listens on %s port %d in %s after 10s", proto, port, host)
}

// machineBusy is the CPU time all CPUs have spent not idle since boot, in
// seconds; 0 if /proc/stat is unreadable.
func machineBusy() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		fmt.Fprintf(os.Stderr, "   machine cpu: %v\n", err)
		return 0
	}
	busy, err := parseBusy(string(data))
	if err != nil {
		fmt.Fprintf(os.Stderr, "   machine cpu: %v\n", err)
	}
	return busy
}

// parseBusy reads the "cpu" line of /proc/stat: user nice system idle
// iowait irq softirq steal (guest time is already in user). Busy is all but
// idle and iowait.
func parseBusy(stat string) (float64, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: no cpu line")
	}
	var busy uint64
	for i := 1; i <= 8; i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %v", err)
		}
		if i != 4 && i != 5 {
			busy += v
		}
	}
	return float64(busy) / userHZ, nil
}

// userHZ is USER_HZ: /proc reports clock ticks of 1/100 s on Linux.
const userHZ = 100

// cpuSeconds is the user+system CPU time of pid and all its threads.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: the fields after
	// it start at the last ')', [0] is field 3 (state), utime is field 14
	// ([11]) and stime [12].
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unreadable", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return float64(ut+st) / userHZ, nil
}
