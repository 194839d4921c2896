package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTransfer_50MBIdenticalOverIPv4AndIPv6_NoDrops: curl in the client
// fetches a 50 MB body from Python's http.server in the server through the
// device, by name over IPv4 and IPv6 and by IPv6 literal. Every body is
// byte-identical and the device counted no drops, by behaviors or by full
// TUN queues; its ports carried at least the bodies.
func TestTransfer_50MBIdenticalOverIPv4AndIPv6_NoDrops(t *testing.T) {
	for _, mode := range deviceModes() {
		t.Run(mode.name, func(t *testing.T) { transfer50MB(t, mode.args) })
	}
}

// deviceModes are the ways a device runs: as it chooses, and busy-polling
// on a CPU of its own (the last one).
func deviceModes() []struct {
	name string
	args []string
} {
	return []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"busy-poll", []string{"--cpus", strconv.Itoa(runtime.NumCPU() - 1), "--busy-poll", "1ms"}},
	}
}

func transfer50MB(t *testing.T, args []string) {
	l := startLab(t, append([]string{"--profile", "passthrough"}, args...)...)
	const size = 50 << 20
	srv := t.TempDir()
	want := randomFile(t, srv, "blob", size)
	l.httpServer(srv, 8080)

	out := t.TempDir()
	fetches := []struct{ name, flag, url string }{
		{"ipv4-name", "-4", "http://server:8080/blob"},
		{"ipv6-name", "-6", "http://server:8080/blob"},
		{"ipv6-literal", "-g", "http://[" + serverV6 + "]:8080/blob"},
	}
	for _, f := range fetches {
		path := filepath.Join(out, f.name)
		start := time.Now()
		l.mustExec(120*time.Second, "client", "curl", "-sS", "--fail", "--max-time", "100",
			f.flag, "-o", path, f.url)
		got, n := fileHash(t, path)
		if got != want || n != size {
			t.Errorf("%s: got %d bytes sha256 %s, want %d bytes %s", f.name, n, got, size, want)
		}
		el := time.Since(start)
		t.Logf("%s: %d MB in %v (%.2f Gbit/s incl. curl start)", f.name, n>>20, el.Round(time.Millisecond),
			float64(n)*8/el.Seconds()/1e9)
	}

	st := l.status()
	if d := l.counter(st, "dropped_by_behavior"); d != 0 {
		t.Errorf("device dropped %v packets by behavior, want 0", d)
	}
	if d := l.counter(st, "write_drops"); d != 0 {
		t.Errorf("device counted %v write drops (full TUN queue), want 0", d)
	}
	// The bodies went through the device: its ports wrote at least them.
	if w := l.counter(st, "write_bytes"); w < 3*size {
		t.Errorf("device ports wrote %v bytes, want >= %d (3 bodies)", w, 3*size)
	}
}

// pacedServer serves argv[1] to every connection on port argv[2] (both
// families) as an HTTP response, 64 KiB every 50 ms (~1.3 MB/s): a steady
// transfer whose progress can be watched, unlike curl --limit-rate, which
// reads in bursts and then pauses.
const pacedServer = `import os, socket, sys, threading, time
path, port = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
def serve(c):
    with c, open(path, "rb") as f:
        c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        while True:
            b = f.read(65536)
            if not b:
                return
            c.sendall(b)
            time.sleep(0.05)
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
s.listen(16)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
`

// TestApply_MidTransferKeepsConnection: a steady download through the
// device survives switching profiles under it: to block-port-81 (not its
// port), to a profile file inspecting every TCP segment, and back to
// passthrough. The transfer keeps moving after each switch, the body
// arrives whole, and the profile did change each time.
func TestApply_MidTransferKeepsConnection(t *testing.T) {
	l := startLab(t, "--profile", "passthrough")
	const size = 16 << 20 // ~13 s at the server's pace
	srv := t.TempDir()
	want := randomFile(t, srv, "blob", size)
	l.start("server", fmt.Sprintf("python3 -c '%s' %s 80", pacedServer, filepath.Join(srv, "blob")))
	l.waitListen("server", "t", 80)

	logProfile := filepath.Join(t.TempDir(), "log-all-tcp.yaml")
	if err := os.WriteFile(logProfile, []byte(`name: log-all-tcp
description: log every TCP segment (an e2e fixture)
sources: ["e2e test"]
behaviors:
  - type: log
    match: {protocol: tcp}
    every: 1000
`), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "blob")
	curl := l.start("client", fmt.Sprintf("curl -sS --fail --max-time 60 -o %s http://server/blob", out))
	waitSize(t, out, 1<<20, 20*time.Second)

	for _, p := range []struct{ arg, name string }{
		{"block-port-81", "block-port-81"},
		{logProfile, "log-all-tcp"},
		{"passthrough", "passthrough"},
	} {
		l.apply(p.arg)
		if got := stringsAt(l.status(), "profile"); !contains(got, p.name) {
			t.Errorf("after lab apply %s, status profile %q, want %q", p.arg, got, p.name)
		}
		before := size0(out)
		time.Sleep(time.Second)
		if after := size0(out); after <= before {
			t.Errorf("after lab apply %s: transfer stalled at %d bytes", p.arg, after)
		}
	}
	if !curl.Alive() {
		t.Fatalf("the transfer ended before the last profile change was checked; it must be slower")
	}

	if !curl.WaitGone(60 * time.Second) {
		t.Fatalf("curl did not finish in 60s")
	}
	got, n := fileHash(t, out)
	if got != want || n != size {
		log, _ := os.ReadFile(curl.log)
		t.Fatalf("got %d bytes sha256 %s, want %d bytes %s; curl: %s", n, got, size, want, log)
	}
	if d := l.counter(l.status(), "dropped_by_behavior"); d != 0 {
		t.Errorf("device dropped %v packets by behavior, want 0 (the transfer is on port 80)", d)
	}
}

func size0(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// waitSize waits until path holds at least n bytes.
func waitSize(t *testing.T, path string, n int64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for size0(path) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d bytes after %v, want %d", path, size0(path), d, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}
