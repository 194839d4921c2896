package e2e

// Hardening (issue 7): hostile traffic through a lab, nothing lost in
// passthrough, crash safety, hostile profiles and the control surface. The
// tests run in parallel, each with labs of its own; the floods come from
// hidden subcommands of faultbox-bench run inside the client host.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/device"
	fblab "github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/testenv"
	"github.com/faultbox/faultbox/tun"
	"golang.org/x/sys/unix"
)

var (
	benchOnce sync.Once
	benchBin  string
	benchErr  error
)

// faultboxBench builds cmd/faultbox-bench (the flood generators) once, next
// to the faultbox binary under test.
func faultboxBench(t *testing.T) string {
	t.Helper()
	benchOnce.Do(func() {
		benchBin = filepath.Join(filepath.Dir(faultbox), "faultbox-bench")
		if out, err := exec.Command("go", "build", "-o", benchBin, "../cmd/faultbox-bench").CombinedOutput(); err != nil {
			benchErr = fmt.Errorf("building faultbox-bench: %v: %s", err, out)
		}
	})
	if benchErr != nil {
		t.Fatal(benchErr)
	}
	return benchBin
}

// deviceStatus is the part of `lab status --json` these tests read.
type deviceStatus struct {
	Counters struct {
		In         uint64 `json:"in"`
		Out        uint64 `json:"out"`
		Dropped    uint64 `json:"dropped_by_behavior"`
		Injected   uint64 `json:"injected"`
		NoRoute    uint64 `json:"no_route"`
		Unreadable uint64 `json:"unreadable"`
		Malformed  uint64 `json:"malformed"`
		WriteDrops uint64 `json:"write_drops"`
	} `json:"counters"`
	Queued uint64 `json:"queued"`
	Flows  struct {
		Created  uint64 `json:"created"`
		Evicted  uint64 `json:"evicted"`
		Expired  uint64 `json:"expired"`
		Active   uint64 `json:"active"`
		Capacity uint64 `json:"capacity"`
	} `json:"flows"`
	FlowStates map[string]int `json:"flow_states"`
}

func (l *lab) deviceStatus() deviceStatus {
	l.t.Helper()
	r := fb(30*time.Second, "lab", "status", "--name", l.name, "--json")
	if r.Code != 0 {
		l.t.Fatalf("lab status --json: %s", r)
	}
	var st deviceStatus
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		l.t.Fatalf("lab status --json: %v\n%s", err, r.Stdout)
	}
	if st.Flows.Capacity == 0 {
		l.t.Fatalf("lab status --json has no flow table counters:\n%s", r.Stdout)
	}
	return st
}

// accounts checks that the device's counters account for every packet:
// in + injected = out + dropped + no_route + unreadable + queued + write_drops.
func (s deviceStatus) accounts() error {
	c := s.Counters
	in, out := c.In+c.Injected, c.Out+c.Dropped+c.NoRoute+c.Unreadable+s.Queued+c.WriteDrops
	if in != out {
		return fmt.Errorf("in %d + injected %d = %d, but out %d + dropped %d + no_route %d + unreadable %d + queued %d + write_drops %d = %d",
			c.In, c.Injected, in, c.Out, c.Dropped, c.NoRoute, c.Unreadable, s.Queued, c.WriteDrops, out)
	}
	return nil
}

// vmRSS returns the resident memory of pid in KiB.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("device pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return kb
			}
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// fileServerPy serves argv[1] on port argv[2] over both IP versions with a
// deep accept queue (http.server's is 5: a burst of parallel clients would
// meet SYN drops in the server, not in the device), one thread per request.
const fileServerPy = `import functools, http.server, socket, sys
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    request_queue_size = 1024
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
Server(("::", int(sys.argv[2])), functools.partial(Quiet, directory=sys.argv[1])).serve_forever()
`

// fileServer serves dir on port in the server host and returns when it listens.
func (l *lab) fileServer(dir string, port int) *proc {
	l.t.Helper()
	p := l.start("server", fmt.Sprintf("python3 -c '%s' %s %d", fileServerPy, dir, port))
	l.waitListen("server", "t", port)
	return p
}

// floodResult is what the generators print.
type floodResult struct {
	Sent    int     `json:"sent"`
	Resent  int     `json:"resent"`
	Seconds float64 `json:"seconds"`
	PPS     float64 `json:"pps"`
}

// flood runs a faultbox-bench generator in the client host.
func (l *lab) flood(args ...string) floodResult {
	l.t.Helper()
	out := l.mustExec(5*time.Minute, "client", append([]string{faultboxBench(l.t)}, args...)...)
	var r floodResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		l.t.Fatalf("%s: %v: %q", args[0], err, out)
	}
	return r
}

// download is a curl download of a random file from the server host at
// 1 MiB/s, running in the background while a test floods the device.
type download struct {
	curl *proc
	out  string // where curl writes it
	want string // its SHA-256
	size int64
}

// startDownload brings up a passthrough lab and starts a download of 64 MiB
// (~64 s: longer than a flood) from the server's deep-queued file server,
// returning once 1 MiB has arrived.
func startDownload(t *testing.T) (*lab, download) {
	t.Helper()
	l := startLab(t, "--profile", "passthrough")
	faultboxBench(t)
	dir := t.TempDir()
	d := download{out: filepath.Join(t.TempDir(), "blob"), size: 64 << 20}
	d.want = randomFile(t, dir, "blob", d.size)
	l.fileServer(dir, 80)
	d.curl = l.start("client", fmt.Sprintf("curl -4 -sS --fail --limit-rate 1M --max-time 280 -o %s http://server/blob", d.out))
	waitSize(t, d.out, 1<<20, 30*time.Second)
	return l, d
}

// finish waits for the download to end and checks it arrived whole.
func (d download) finish(t *testing.T) {
	t.Helper()
	if !d.curl.WaitGone(4 * time.Minute) {
		t.Fatalf("download not finished 4 min after it began")
	}
	if got, n := fileHash(t, d.out); got != d.want || n != d.size {
		log, _ := os.ReadFile(d.curl.log)
		t.Fatalf("download: %d bytes sha256 %s, want %d bytes %s; curl: %s", n, got, d.size, d.want, log)
	}
}

// TestHardening_SYNFlood1MTuplesMemoryBoundedLegitTransferCompletes: 1 M
// SYNs from distinct spoofed tuples (198.19.0.0/16, to a closed port of the
// server, whose RSTs the device has no route for) go through a passthrough
// lab while curl downloads at a limited rate. The flow table stays at its
// cap, evicting the oldest flows; the device's memory stops growing once
// the table is full (the second 600 k tuples add nothing); the download
// keeps moving during the flood, stays tracked, and arrives whole.
func TestHardening_SYNFlood1MTuplesMemoryBoundedLegitTransferCompletes(t *testing.T) {
	t.Parallel()
	start := time.Now()
	l, dl := startDownload(t)
	out := dl.out

	pid := l.deviceProc().PID
	rss0, st0, got0 := vmRSS(t, pid), l.deviceStatus(), size0(out)
	r1 := l.flood("syn-flood", "-dst", serverV4, "-dport", "9", "-first", "0", "-n", "400000")
	rss1, st1 := vmRSS(t, pid), l.deviceStatus()
	r2 := l.flood("syn-flood", "-dst", serverV4, "-dport", "9", "-first", "400000", "-n", "600000")
	rss2, st2, got2 := vmRSS(t, pid), l.deviceStatus(), size0(out)
	curlAlive := dl.curl.Alive()

	t.Logf("flood: 400k SYNs in %.1fs (%d resent after TUN queue drops), 600k in %.1fs (%d resent)", r1.Seconds, r1.Resent, r2.Seconds, r2.Resent)
	t.Logf("device VmRSS: %d KiB before, %d KiB after 400k tuples (%d flows, %d evicted), %d KiB after 1M",
		rss0, rss1, st1.Flows.Active, st1.Flows.Evicted-st0.Flows.Evicted, rss2)
	t.Logf("flows: created %d, evicted %d, expired %d, active %d of %d; states %v",
		st2.Flows.Created-st0.Flows.Created, st2.Flows.Evicted-st0.Flows.Evicted, st2.Flows.Expired-st0.Flows.Expired,
		st2.Flows.Active, st2.Flows.Capacity, st2.FlowStates)
	t.Logf("packets: in %d out %d no_route %d (the server's RSTs to spoofed sources)", st2.Counters.In-st0.Counters.In,
		st2.Counters.Out-st0.Counters.Out, st2.Counters.NoRoute-st0.Counters.NoRoute)

	created := st2.Flows.Created - st0.Flows.Created
	if created < 1_000_000 {
		t.Errorf("device created %d flows, want >= 1000000 (every distinct tuple)", created)
	}
	if st2.Flows.Active > st2.Flows.Capacity {
		t.Errorf("flow table holds %d flows, over its cap %d", st2.Flows.Active, st2.Flows.Capacity)
	}
	// Flows leave by eviction when the table is full, or by the 30 s
	// handshake timeout when the flood is slow; together at least all but
	// a table's worth.
	if gone := st2.Flows.Evicted - st0.Flows.Evicted + st2.Flows.Expired - st0.Flows.Expired; gone+st2.Flows.Capacity < created {
		t.Errorf("device evicted or expired %d of %d flows with a cap of %d", gone, created, st2.Flows.Capacity)
	}
	// A full table is ~60 MB (224 bytes a flow and its index); one that
	// kept every flow would need 224 MB for these 1 M.
	if grow := rss2 - rss0; grow > 128<<10 {
		t.Errorf("device grew by %d KiB over the flood, want < 128 MiB: memory is not bounded", grow)
	}
	if full := st1.Flows.Active == st1.Flows.Capacity; full && rss2-rss1 > 16<<10 {
		t.Errorf("device grew by %d KiB over the last 600k tuples with its table full, want < 16 MiB", rss2-rss1)
	}
	if got2-got0 < 1<<20 {
		t.Errorf("the download moved %d bytes during the flood, want >= 1 MiB", got2-got0)
	}
	// Every flood flow is syn-sent; the download is established, or closing
	// once the server has sent its last bytes and FIN into the buffers.
	if curlAlive && st2.FlowStates["established"]+st2.FlowStates["closing"] < 1 {
		t.Errorf("the download's flow is no longer tracked after the flood: %v", st2.FlowStates)
	}
	if err := st2.accounts(); err != nil {
		t.Errorf("counters: %v", err)
	}
	dl.finish(t)
	t.Logf("download: %d MiB at 1 MiB/s in %v, identical", dl.size>>20, time.Since(start).Round(time.Second))
}

// TestHardening_OutOfWindowFloodLeavesFlowAlive: 100 k segments claiming to
// belong to an established download (its own tuple, sequence numbers in the
// far half of the space, so no window reaches them) go through the device.
// It creates no flow for them and no memory; the flow stays established and
// the download arrives whole.
func TestHardening_OutOfWindowFloodLeavesFlowAlive(t *testing.T) {
	t.Parallel()
	l, dl := startDownload(t)
	out := dl.out
	ss := l.mustExec(10*time.Second, "client", "ss", "-Htn", "state", "established", "dport", "=", ":80")
	f := strings.Fields(ss)
	if len(f) < 3 || !strings.HasPrefix(f[2], clientV4+":") {
		t.Fatalf("cannot find the download's connection in ss: %q", ss)
	}
	local := f[2]

	pid := l.deviceProc().PID
	rss0, st0, got0 := vmRSS(t, pid), l.deviceStatus(), size0(out)
	r := l.flood("oow-flood", "-src", local, "-dst", serverV4+":80", "-n", "100000")
	rss1, st1, got1 := vmRSS(t, pid), l.deviceStatus(), size0(out)
	curlAlive := dl.curl.Alive()
	t.Logf("flood: 100k out-of-window segments on %s in %.1fs (%d resent after TUN queue drops)", local, r.Seconds, r.Resent)
	t.Logf("device VmRSS: %d KiB before, %d KiB after; flows created %d, active %d, states %v; download moved %d KiB meanwhile",
		rss0, rss1, st1.Flows.Created-st0.Flows.Created, st1.Flows.Active, st1.FlowStates, (got1-got0)>>10)

	if !curlAlive {
		t.Fatalf("the download ended before the flood did; it must be slower")
	}
	if st1.FlowStates["established"]+st1.FlowStates["closing"] < 1 {
		t.Errorf("the download's flow is no longer tracked as open in the device: %v", st1.FlowStates)
	}
	if c := st1.Flows.Created - st0.Flows.Created; c > 0 {
		t.Errorf("the flood of one tuple created %d flows", c)
	}
	if in := st1.Counters.In - st0.Counters.In; in < 100000 {
		t.Errorf("device read %d packets during the flood, want >= 100000", in)
	}
	if grow := rss1 - rss0; grow > 16<<10 {
		t.Errorf("device grew by %d KiB during the flood, want < 16 MiB", grow)
	}
	if err := st1.accounts(); err != nil {
		t.Errorf("counters: %v", err)
	}
	dl.finish(t)
}

// TestHardening_PassthroughLosesNothing: in passthrough, 1 GiB over IPv4
// and 1 GiB over IPv6 arrive byte-identical, so do 1000 short HTTP
// exchanges 50 at a time over both versions, and the device's counters
// account for every packet it read, with none dropped.
func TestHardening_PassthroughLosesNothing(t *testing.T) {
	t.Parallel()
	l := startLab(t, "--profile", "passthrough")
	dir := t.TempDir()
	const big = 1 << 30
	created := time.Now()
	wantBig := randomFile(t, dir, "big", big)
	t.Logf("1 GiB random file written in %v", time.Since(created).Round(time.Millisecond))
	const files = 20
	var want [files]string
	for i := range files {
		want[i] = randomFile(t, dir, fmt.Sprintf("f%d", i), int64(1000+i*9000)) // 1 kB to 172 kB
	}
	l.fileServer(dir, 8080)

	for _, v := range []string{"4", "6"} {
		start := time.Now()
		r := l.exec(5*time.Minute, "client", "bash", "-o", "pipefail", "-c",
			"curl -sS --fail -"+v+" --max-time 280 http://server:8080/big | sha256sum")
		el := time.Since(start)
		if r.Code != 0 {
			t.Fatalf("IPv%s 1 GiB: %s", v, r)
		}
		if got := strings.Fields(r.Stdout); len(got) == 0 || got[0] != wantBig {
			t.Errorf("IPv%s 1 GiB: sha256 %q, want %s", v, r.Stdout, wantBig)
		}
		t.Logf("IPv%s: 1 GiB identical in %v (%.2f Gbit/s)", v, el.Round(time.Millisecond), float64(big)*8/el.Seconds()/1e9)
	}

	out := t.TempDir()
	script := fmt.Sprintf(`seq 0 999 | xargs -P 50 -I{} bash -c 'i={}; curl -sS --fail --max-time 60 -$(( i %% 2 ? 6 : 4 )) -o %s/$i http://server:8080/f$(( i %% %d ))'`, out, files)
	start := time.Now()
	if r := l.exec(5*time.Minute, "client", "bash", "-c", script); r.Code != 0 {
		t.Errorf("1000 exchanges: %s", r)
	}
	el := time.Since(start)
	bad := 0
	for i := range 1000 {
		if got, _ := fileHashOrEmpty(filepath.Join(out, strconv.Itoa(i))); got != want[i%files] {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of 1000 exchanges did not arrive byte-identical", bad)
	}
	t.Logf("1000 exchanges, 50 in parallel, IPv4 and IPv6: %d identical in %v", 1000-bad, el.Round(time.Millisecond))

	st := l.deviceStatus()
	c := st.Counters
	t.Logf("device: in %d injected %d out %d dropped %d no_route %d unreadable %d malformed %d queued %d write_drops %d",
		c.In, c.Injected, c.Out, c.Dropped, c.NoRoute, c.Unreadable, c.Malformed, st.Queued, c.WriteDrops)
	if err := st.accounts(); err != nil {
		t.Errorf("counters: %v", err)
	}
	if c.Dropped != 0 || c.Unreadable != 0 || c.WriteDrops != 0 {
		t.Errorf("passthrough lost packets: dropped %d unreadable %d write_drops %d", c.Dropped, c.Unreadable, c.WriteDrops)
	}
	if qd := l.counter(l.status(), "queue_drops"); qd != 0 {
		t.Errorf("passthrough lost %.0f packets in the device's input queues", qd)
	}
	if c.In < 2*big/65536 {
		t.Errorf("device read %d packets, fewer than 2 GiB in 64 KiB super-packets", c.In)
	}
}

// A device that falls behind loses packets in its input queues, which no
// behavior dropped; status must count them and say so. Stopping the device
// makes it fall behind for sure: every datagram past a queue's worth is
// lost, and only those.
func TestHardening_StalledDeviceCountsItsQueueDrops(t *testing.T) {
	t.Parallel()
	l := startLab(t, "--profile", "passthrough")
	pid := l.deviceProc().PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stopping the device (pid %d): %v", pid, err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resuming the device (pid %d): %v", pid, err)
			}
		}
	}
	t.Cleanup(resume) // before lab down, which needs the device
	const sent = 6000
	l.mustExec(60*time.Second, "client", "bash", "-c",
		fmt.Sprintf("for i in $(seq %d); do echo x >/dev/udp/198.18.0.2/9; done", sent))
	resume()

	st := l.status()
	got := l.counter(st, "queue_drops")
	t.Logf("%d datagrams sent to the stopped device, %.0f lost in its queues", sent, got)
	if lo := float64(sent - tun.DefaultTxQueueLen); got < lo || got > sent {
		t.Errorf("queue_drops %.0f after %d datagrams into a stopped device's queue of %d, want %.0f-%d",
			got, sent, tun.DefaultTxQueueLen, lo, sent)
	}
	r := fb(30*time.Second, "lab", "status", "--name", l.name)
	if r.Code != 0 {
		t.Fatalf("lab status: %s", r)
	}
	if want := fmt.Sprintf("the device lost %.0f packets that no behavior dropped", got); !strings.Contains(r.Stdout, want) {
		t.Errorf("lab status does not warn %q:\n%s", want, r.Stdout)
	}
}

// fileHashOrEmpty is fileHash for a file that may be missing.
func fileHashOrEmpty(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return sha256Hex(data), nil
}

// TestHardening_SIGINTAndSIGTERMCleanUpWithin2s: the device process told to
// stop by a signal removes the whole lab by itself, processes in its hosts
// included, and is gone within 2 s.
func TestHardening_SIGINTAndSIGTERMCleanUpWithin2s(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			l := startLab(t, "--profile", "passthrough")
			sleeper := l.start("client", "sleep 300")
			dev := l.deviceProc()
			start := time.Now()
			if err := dev.Signal(sig); err != nil {
				t.Fatalf("%v to device %d: %v", sig, dev.PID, err)
			}
			if !dev.WaitGone(2 * time.Second) {
				t.Errorf("device %d still running 2s after %v", dev.PID, sig)
				dev.WaitGone(10 * time.Second)
			}
			el := time.Since(start)
			if !sleeper.WaitGone(time.Second) {
				t.Errorf("process %d in the client host survived the device's teardown", sleeper.PID)
			}
			assertNoTrace(t, l.name)
			t.Logf("%v: lab removed and device gone in %v", sig, el.Round(time.Millisecond))
		})
	}
}

// isolated is a private view of the directories labs live in: a process
// holding a mount namespace of its own with empty /run/netns, /etc/netns
// and /run/faultbox. `lab down --all` run there sees only the labs made
// there, never those of tests running beside it (or of anyone else).
type isolated struct {
	t   *testing.T
	pid int
}

func newIsolated(t *testing.T) *isolated {
	t.Helper()
	testenv.RequireNetAdmin(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Fatalf("nsenter and unshare (util-linux) are needed: %v", err)
	}
	for _, d := range []string{"/run/netns", "/etc/netns", "/run/faultbox"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		"mount -t tmpfs fbx-e2e /run/netns && mount -t tmpfs fbx-e2e /etc/netns && "+
			"mount -t tmpfs -o mode=0700 fbx-e2e /run/faultbox && echo ready && exec sleep 600")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s := &isolated{t: t, pid: cmd.Process.Pid}
	t.Cleanup(func() {
		// Whatever the test left: removed in the private view, then the
		// view itself goes with its last process.
		if r := s.fb(60*time.Second, "lab", "down", "--all"); r.Code != 0 {
			t.Errorf("cleanup: lab down --all in the private view: %s", r)
		}
		cmd.Process.Kill() // ours, by pid
		<-done
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if strings.TrimSpace(l) != "ready" {
			t.Fatalf("unshare: %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("unshare: no private view after 10s")
	}
	return s
}

// run runs a command in the private view.
func (s *isolated) run(timeout time.Duration, name string, args ...string) testenv.Result {
	return testenv.Run(timeout, "nsenter", append([]string{"-t", strconv.Itoa(s.pid), "-m", "--", name}, args...)...)
}

// fb runs the faultbox binary in the private view.
func (s *isolated) fb(timeout time.Duration, args ...string) testenv.Result {
	return s.run(timeout, faultbox, args...)
}

// netnsInode returns the inode of a named network namespace in the view.
func (s *isolated) netnsInode(ns string) uint64 {
	s.t.Helper()
	r := s.run(10*time.Second, "stat", "-L", "-c", "%i", "/run/netns/"+ns)
	ino, err := strconv.ParseUint(strings.TrimSpace(r.Stdout), 10, 64)
	if r.Code != 0 || err != nil {
		s.t.Fatalf("namespace %s: %s", ns, r)
	}
	return ino
}

// netnsUsers returns the processes whose network namespace has inode ino.
func netnsUsers(ino uint64) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && st.Ino == ino && running(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestHardening_DownAllAfterCrash: the device process dies without cleaning
// up — killed by SIGKILL, or by a panic (the test-only trigger
// FAULTBOX_DEBUG_PANIC_AFTER) — while a process runs in its client host.
// `lab down --all` then removes every namespace of the lab (nothing is left
// in them: no process, so no link or route either), its /etc/netns entries
// and runtime directory, and the process. It runs in a private view of
// /run/netns, /etc/netns and /run/faultbox, so --all cannot touch labs of
// other tests.
func TestHardening_DownAllAfterCrash(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"sigkill", "panic"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			iso := newIsolated(t)
			name := fblab.UniqueName("hd")
			up := []string{faultbox, "lab", "up", "--name", name, "--hosts", "client,lb,server"}
			if how == "panic" {
				up = append([]string{"FAULTBOX_DEBUG_PANIC_AFTER=4s"}, up...)
			}
			if r := iso.run(90*time.Second, "env", up...); r.Code != 0 {
				t.Fatalf("lab up: %s", r)
			}
			// A process in a host, started through the view like any other.
			pidFile := filepath.Join(t.TempDir(), "pid")
			sleeper := exec.Command("nsenter", "-t", strconv.Itoa(iso.pid), "-m", "--", faultbox, "lab", "exec", "--name", name,
				"client", "--", "sh", "-c", "echo $$ > "+pidFile+"; exec sleep 300")
			if err := sleeper.Start(); err != nil {
				t.Fatal(err)
			}
			sleeperDone := make(chan error, 1)
			go func() { sleeperDone <- sleeper.Wait() }()
			var sp device.Proc
			t.Cleanup(func() {
				sp.Signal(unix.SIGKILL) // ours, by pid and start time
				sleeper.Process.Kill()
				<-sleeperDone
			})
			for deadline := time.Now().Add(10 * time.Second); sp.PID == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if b, err := os.ReadFile(pidFile); err == nil {
					if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
						sp = procOf(pid)
					}
				}
			}
			if sp.PID == 0 {
				t.Fatal("no process started in the client host")
			}
			var state device.State
			r := iso.run(10*time.Second, "cat", "/run/faultbox/"+name+"/state.json")
			if err := json.Unmarshal([]byte(r.Stdout), &state); err != nil || state.Device.PID <= 0 {
				t.Fatalf("state.json: %v: %s", err, r)
			}
			hosts, err := fblab.Hosts(&state)
			if err != nil || len(hosts) != 3 {
				t.Fatalf("state.json: %d hosts (%v): %s", len(hosts), err, r)
			}
			inodes := map[string]uint64{}
			for _, h := range hosts {
				inodes[h.Namespace] = iso.netnsInode(h.Namespace)
			}

			dev := state.Device
			if how == "sigkill" {
				if err := dev.Signal(unix.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			if !dev.WaitGone(15 * time.Second) {
				t.Fatalf("device %d (%s) still running", dev.PID, how)
			}
			if how == "panic" {
				log := iso.run(10*time.Second, "cat", "/run/faultbox/"+name+"/device.log").Stdout
				if !strings.Contains(log, "panic: FAULTBOX_DEBUG_PANIC_AFTER") {
					t.Fatalf("the device did not die of the test panic; device.log:\n%s", log)
				}
			}
			// The crash left the lab behind: something for --all to do.
			if list := iso.run(10*time.Second, "ip", "netns", "list").Stdout; !strings.Contains(list, "fbx-"+name+"-client") {
				t.Fatalf("after the crash no namespace of the lab is left (%q): the device cleaned up after all?", list)
			}
			if !sp.Alive() {
				t.Fatalf("the process in the client host died with the device")
			}

			r = iso.fb(60*time.Second, "lab", "down", "--all")
			if r.Code != 0 {
				t.Fatalf("lab down --all: %s", r)
			}
			t.Logf("lab down --all after %s: %s", how, strings.Join(strings.Fields(r.Stdout), " "))
			if !sp.WaitGone(5 * time.Second) {
				t.Errorf("process %d in the client host survived lab down --all", sp.PID)
			}
			if list := iso.run(10*time.Second, "ip", "netns", "list").Stdout; strings.Contains(list, "fbx-"+name) {
				t.Errorf("namespaces left: %s", list)
			}
			if ls := iso.run(10*time.Second, "ls", "-A", "/etc/netns", "/run/faultbox").Stdout; strings.Contains(ls, name) {
				t.Errorf("/etc/netns or /run/faultbox entries left: %s", ls)
			}
			for ns, ino := range inodes {
				if users := netnsUsers(ino); len(users) > 0 {
					t.Errorf("namespace %s (inode %d) is still held by processes %v", ns, ino, users)
				}
			}
			for _, pid := range procsNaming(name) {
				t.Errorf("process %d naming the lab left", pid)
			}
			if links, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(links), name) {
				t.Errorf("links naming the lab in the root namespace: %s", links)
			}
		})
	}
}

// TestHardening_HostileProfilesRefusedNothingCreated: lab up with a YAML
// bomb, nesting beyond reason, a file over the size limit, a device file
// or a FIFO as its profile fails at once with exit status 2 and a clear
// error, and creates nothing.
func TestHardening_HostileProfilesRefusedNothingCreated(t *testing.T) {
	t.Parallel()
	testenv.RequireNetAdmin(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var bomb strings.Builder
	bomb.WriteString("name: bomb\nsources:\n  - &a0 lol\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&bomb, "  - &a%d [%s]\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", "))
	}
	bomb.WriteString("behaviors: []\n")
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, path, want string }{
		{"yaml-bomb", write("bomb.yaml", bomb.String()), "aliases expand to more than"},
		{"deep-nesting", write("deep.yaml", "name: deep\nbehaviors: "+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+"\n"), "nested deeper than 32 levels"},
		{"self-referencing-anchor", write("anchors.yaml", "name: a\nsources: &x ["+strings.Repeat("*x, ", 10)+"1]\nbehaviors: []\n"), "nested deeper than"},
		{"over-1MiB", write("huge.yaml", "name: huge\nbehaviors: []\n"+strings.Repeat("# padding padding padding padding\n", 40000)), "at most"},
		{"dev-zero", "/dev/zero", "not a regular file"},
		{"fifo", fifo, "not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := fblab.UniqueName("hi")
			t.Cleanup(func() { fb(60*time.Second, "lab", "down", "--name", name) })
			start := time.Now()
			r := fb(30*time.Second, "lab", "up", "--name", name, "--profile", c.path)
			el := time.Since(start)
			if r.Code != 2 {
				t.Errorf("exit %d, want 2: %s", r.Code, r)
			}
			if !strings.Contains(r.Stderr, c.want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 3 {
				t.Errorf("error does not say %q in a few lines: %s", c.want, r.Stderr)
			}
			if el > 5*time.Second {
				t.Errorf("refusing took %v", el)
			}
			assertNoTrace(t, name)
			t.Logf("refused in %v: %s", el.Round(time.Millisecond), firstLine(r.Stderr))
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// TestHardening_ControlSocketIsUnixOnly0600: what controls a running device
// is a unix socket of mode 0600 in a 0700 runtime directory, and the device
// has no TCP or UDP socket, listening or not, in any namespace.
func TestHardening_ControlSocketIsUnixOnly0600(t *testing.T) {
	t.Parallel()
	l := startLab(t, "--profile", "passthrough")
	dir := filepath.Join("/run/faultbox", l.name)
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("runtime directory %s: %v, want a directory of mode 0700 (%v)", dir, modeOf(fi), err)
	}
	sock := filepath.Join(dir, "control.sock")
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket %s: %v, want a unix socket of mode 0600 (%v)", sock, modeOf(fi), err)
	}

	pid := l.deviceProc().PID
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	socks := map[string]bool{} // inode -> true
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			socks[strings.TrimSuffix(ino, "]")] = true
		}
	}
	// The check must be able to see a socket: the control socket is one.
	unix, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
	sawControl := false
	for _, line := range strings.Split(string(unix), "\n") {
		if f := strings.Fields(line); len(f) >= 8 && f[len(f)-1] == sock && socks[f[6]] {
			sawControl = true
		}
	}
	if !sawControl {
		t.Fatalf("the device's fds (%d sockets) do not include %s", len(socks), sock)
	}
	tables := map[string]string{}
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6"} {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, name))
		tables["root "+name] = string(data)
		for _, host := range []string{"client", "server"} {
			tables[host+" "+name] = l.exec(10*time.Second, host, "cat", "/proc/net/"+name).Stdout
		}
	}
	// The check must be able to see the tables: an unreadable one is empty.
	for _, where := range []string{"root", "client", "server"} {
		for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
			if tables[where+" "+name] == "" {
				t.Errorf("%s /proc/net/%s: unreadable", where, name)
			}
		}
	}
	for where, table := range tables {
		for _, line := range strings.Split(table, "\n")[1:] {
			if f := strings.Fields(line); len(f) >= 10 && socks[f[9]] {
				t.Errorf("the device has an IP socket (%s): %s", where, line)
			}
		}
	}
	if out, err := exec.Command("ss", "-Htulpn").Output(); err != nil {
		t.Errorf("ss -Htulpn: %v", err)
	} else if strings.Contains(string(out), fmt.Sprintf("pid=%d,", pid)) {
		t.Errorf("ss shows the device listening:\n%s", out)
	}
	t.Logf("device pid %d: %d sockets, all unix; %s mode %v in %s mode 0700", pid, len(socks), filepath.Base(sock), modeOf(fi), dir)
}

func modeOf(fi os.FileInfo) os.FileMode {
	if fi == nil {
		return 0
	}
	return fi.Mode()
}
