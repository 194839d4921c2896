package e2e

// Helpers that drive the faultbox binary's lab CLI: a lab per test, commands
// and background servers in its hosts, its status. Every command runs with
// a deadline; everything a test starts is removed in t.Cleanup, in reverse
// order (servers first, then the lab).

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/device"
	fblab "github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// Lab host addresses, the same in every lab (README.md, Quick start).
const (
	clientV4 = "198.18.0.1"
	serverV4 = "198.18.0.2"
	clientV6 = "2001:db8::1"
	serverV6 = "2001:db8::2"
)

// fb runs the faultbox binary.
func fb(timeout time.Duration, args ...string) testenv.Result {
	return testenv.Run(timeout, faultbox, args...)
}

// lab is one running lab, owned by one test. The same helpers drive a
// network of namespaces a test built itself (netns: fbx-NAME-HOST, run in
// with ip netns exec), such as the one attach is tested on.
type lab struct {
	t     *testing.T
	name  string
	netns bool
}

// command is argv that runs cmd in host.
func (l *lab) command(host string, cmd ...string) []string {
	if l.netns {
		return append([]string{"ip", "netns", "exec", mbNS(l, host)}, cmd...)
	}
	return append([]string{faultbox, "lab", "exec", "--name", l.name, host, "--"}, cmd...)
}

// startLab brings up a lab with `faultbox lab up --name N args...` and takes
// it down when the test ends (also when lab up failed half-way).
func startLab(t *testing.T, args ...string) *lab {
	t.Helper()
	testenv.RequireNetAdmin(t)
	l := &lab{t: t, name: fblab.UniqueName("e2")}
	t.Cleanup(func() {
		if r := fb(60*time.Second, "lab", "down", "--name", l.name); r.Code != 0 {
			t.Errorf("lab down --name %s: %s", l.name, r)
		}
	})
	up := append([]string{"lab", "up", "--name", l.name}, args...)
	if r := fb(90*time.Second, up...); r.Code != 0 {
		t.Fatalf("faultbox %s: %s", strings.Join(up, " "), r)
	}
	return l
}

// exec runs a command in host and returns its result; it does not fail the
// test, so tests can check commands that must fail.
func (l *lab) exec(timeout time.Duration, host string, cmd ...string) testenv.Result {
	argv := l.command(host, cmd...)
	return testenv.Run(timeout, argv[0], argv[1:]...)
}

// mustExec runs a command in host and fails the test unless it exits 0.
func (l *lab) mustExec(timeout time.Duration, host string, cmd ...string) string {
	l.t.Helper()
	r := l.exec(timeout, host, cmd...)
	if r.Code != 0 {
		l.t.Fatalf("lab exec %s -- %s: %s", host, strings.Join(cmd, " "), r)
	}
	return r.Stdout
}

// apply switches the lab's profile.
func (l *lab) apply(profile string) {
	l.t.Helper()
	if r := fb(30*time.Second, "lab", "apply", "--name", l.name, profile); r.Code != 0 {
		l.t.Fatalf("lab apply %s: %s", profile, r)
	}
}

// status returns `lab status --json`, decoded generically so the tests read
// counters by their JSON names wherever the status nests them.
func (l *lab) status() any {
	l.t.Helper()
	r := fb(30*time.Second, "lab", "status", "--name", l.name, "--json")
	if r.Code != 0 {
		l.t.Fatalf("lab status --json: %s", r)
	}
	var v any
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		l.t.Fatalf("lab status --json: %v\n%s", err, r.Stdout)
	}
	return v
}

// numbers returns every number stored under key anywhere in v.
func numbers(v any, key string) []float64 {
	var out []float64
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if f, ok := x.(float64); ok && k == key {
				out = append(out, f)
			}
			out = append(out, numbers(x, key)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, numbers(x, key)...)
		}
	}
	return out
}

// stringsAt returns every string stored under key anywhere in v.
func stringsAt(v any, key string) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == key {
				out = append(out, s)
			}
			out = append(out, stringsAt(x, key)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, stringsAt(x, key)...)
		}
	}
	return out
}

// counter sums every number under key in the status, failing the test if
// the status has none: a renamed counter must not pass as zero.
func (l *lab) counter(st any, key string) float64 {
	l.t.Helper()
	ns := numbers(st, key)
	if len(ns) == 0 {
		l.t.Fatalf("lab status --json has no %q", key)
	}
	var sum float64
	for _, n := range ns {
		sum += n
	}
	return sum
}

// deviceProc is the lab's device process, as its state file names it (pid and
// start time).
func (l *lab) deviceProc() device.Proc {
	l.t.Helper()
	st, err := device.ReadState(l.name)
	if err != nil {
		l.t.Fatalf("lab %s state: %v", l.name, err)
	}
	if st.Device.PID <= 0 {
		l.t.Fatalf("lab %s state names no device process: %+v", l.name, st.Device)
	}
	return st.Device
}

// proc is a process started in a lab host in the background.
type proc struct {
	device.Proc        // the process in the host (its pid written by itself)
	log         string // its stdout and stderr
}

// start runs shell command line in host in the background (`sh -c`), and
// kills it by pid when the test ends. The process records its own pid,
// whatever lab exec does between it and us.
func (l *lab) start(host, line string) *proc {
	l.t.Helper()
	dir := l.t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	p := &proc{log: filepath.Join(dir, "log")}
	logf, err := os.Create(p.log)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	argv := l.command(host, "sh", "-c", fmt.Sprintf("echo $$ > %s; exec %s", pidFile, line))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start %s in %s: %v", line, host, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	l.t.Cleanup(func() {
		p.Signal(unix.SIGKILL) // ours, by pid and start time
		cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			l.t.Errorf("lab exec %s -- %s: not gone 10s after SIGKILL", host, line)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				p.Proc = procOf(pid)
				return p
			}
		}
		select {
		case err := <-done:
			done <- err // for the cleanup's wait
			out, _ := os.ReadFile(p.log)
			l.t.Fatalf("%s in %s exited at once: %v: %s", line, host, err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	l.t.Fatalf("%s in %s: no pid after 15s", line, host)
	return nil
}

// waitOutput waits until the process printed a line starting with prefix
// and returns it.
func (p *proc) waitOutput(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(p.log)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, prefix) {
				return strings.TrimSpace(line)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line after %v; output: %s", prefix, timeout, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitListen waits until a socket listens on port (proto "t" tcp, "u" udp)
// inside host, asking the host's kernel, not the network.
func (l *lab) waitListen(host, proto string, port int) {
	l.t.Helper()
	filter := fmt.Sprintf("sport = :%d", port)
	deadline := time.Now().Add(15 * time.Second)
	var last testenv.Result
	for time.Now().Before(deadline) {
		last = l.exec(5*time.Second, host, "ss", "-Hn"+proto+"l", filter)
		if last.Code == 0 && strings.TrimSpace(last.Stdout) != "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("nothing listens on %s port %d in %s after 15s: %s", proto, port, host, last)
}

// serve starts `faultbox serve` on port of the server host (both families)
// with extra flags, its JSON event log in a file of the test's, and
// returns the log's path when it listens.
func (l *lab) serve(port int, flags ...string) string {
	l.t.Helper()
	log := filepath.Join(l.t.TempDir(), "serve.jsonl")
	l.start("server", fmt.Sprintf("%s serve --listen [::]:%d --log %s %s", faultbox, port, log, strings.Join(flags, " ")))
	l.waitListen("server", "t", port)
	return log
}

// httpServer serves dir on port in the server host (Python's http.server,
// on every address of both families) and returns when it listens.
func (l *lab) httpServer(dir string, port int) *proc {
	l.t.Helper()
	p := l.start("server", fmt.Sprintf("python3 -m http.server --bind :: --directory %s %d", dir, port))
	l.waitListen("server", "t", port)
	return p
}

// randomFile writes size random bytes to dir/name and returns its SHA-256.
func randomFile(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// jsonLines decodes every line of a JSON-lines file, failing the test on
// one that does not decode: a malformed line must not pass as zeros.
func jsonLines[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// fileHash returns the SHA-256 of a file and its size.
func fileHash(t *testing.T, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// procOf names the running process pid by pid and start time; a pid
// already gone gets start time 0, which names no process: it is not alive
// and is never signalled.
func procOf(pid int) device.Proc {
	p, err := device.ProcOf(pid)
	if err != nil {
		return device.Proc{PID: pid}
	}
	return p
}

// running reports whether pid is a live (not zombie) process.
func running(pid int) bool { return procOf(pid).Alive() }

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
