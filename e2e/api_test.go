package e2e

// The control API end to end: the Go client and its labtest helper from a
// test, curl on the unix socket as docs/api.md shows it, bad requests
// while traffic flows, and a real Prometheus scraping the TCP endpoint.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/client/labtest"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// apiLab starts a lab the way users' tests do, with labtest and the binary
// under test, and returns it with the helpers of these tests.
func apiLab(t *testing.T, args ...string) (*labtest.Lab, *lab) {
	t.Helper()
	testenv.RequireNetAdmin(t)
	c := labtest.Start(t, labtest.Options{Binary: faultbox, Args: args})
	return c, &lab{t: t, name: c.Name}
}

// pacedDownload serves a random file of size bytes from the server host at
// ~1.3 MB/s (pacedServer), starts curl fetching it in the client host and
// returns curl, where it writes, and the file's SHA-256, once the first
// MiB arrived.
func pacedDownload(t *testing.T, l *lab, size int64) (curl *proc, out, sum string) {
	t.Helper()
	srv := t.TempDir()
	sum = randomFile(t, srv, "blob", size)
	l.start("server", fmt.Sprintf("python3 -c '%s' %s 80", pacedServer, filepath.Join(srv, "blob")))
	l.waitListen("server", "t", 80)
	out = filepath.Join(t.TempDir(), "blob")
	curl = l.start("client", fmt.Sprintf("curl -sS --fail --max-time 120 -o %s http://server/blob", out))
	waitSize(t, out, 1<<20, 30*time.Second)
	return curl, out, sum
}

// moving fails the test unless the download at out grows within 3 s.
func moving(t *testing.T, out, after string) {
	t.Helper()
	before := size0(out)
	deadline := time.Now().Add(3 * time.Second)
	for size0(out) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("after %s the transfer stalled at %d bytes", after, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// intact waits for curl to finish and checks the download's SHA-256.
func intact(t *testing.T, curl *proc, out, want string, size int64) {
	t.Helper()
	if !curl.WaitGone(120 * time.Second) {
		t.Fatal("curl did not finish in 120s")
	}
	if got, n := fileHash(t, out); got != want || n != size {
		log, _ := os.ReadFile(curl.log)
		t.Fatalf("got %d bytes sha256 %s, want %d bytes %s; curl: %s", n, got, size, want, log)
	}
}

// TestAPI_GoClientChangesTheChainUnderATransfer: from a Go test, a whole
// profile is applied and single behaviors are added, patched and removed
// while a download runs: it keeps moving and arrives intact.
func TestAPI_GoClientChangesTheChainUnderATransfer(t *testing.T) {
	c, l := apiLab(t)
	ctx := context.Background()
	const size = 8 << 20 // ~6.5 s at the server's pace
	curl, out, sum := pacedDownload(t, l, size)

	rough := "name: rough\nbehaviors:\n  - type: delay\n    delay: 3ms\n    jitter: 1ms\n  - type: loss\n    p: 0.5%\n"
	p, err := c.Apply(ctx, []byte(rough), client.ApplyOptions{Source: "rough.yaml"})
	if err != nil || p.Name != "rough" || p.Source != "rough.yaml" {
		t.Fatalf("apply: %+v %v", p, err)
	}
	moving(t, out, "applying rough")
	if _, err := c.AddBehavior(ctx, client.Spec{Type: "delay", Name: "lag", Params: client.Params{"delay": "20ms"}}); err != nil {
		t.Fatal(err)
	}
	moving(t, out, "adding a 20ms delay")
	if b, err := c.PatchBehavior(ctx, "lag", client.Params{"delay": "5ms"}); err != nil || b.Counters.Delayed == 0 {
		t.Fatalf("patch: %+v %v (want the delays counted before kept)", b, err)
	}
	moving(t, out, "patching it to 5ms")
	fs, err := c.Flows(ctx, client.Busiest, 1)
	if err != nil || len(fs) != 1 || fs[0].Server.Port() != 80 || fs[0].ServerEnd.Bytes < 1<<20 || fs[0].State != "established" {
		t.Fatalf("busiest flow %+v %v: want the download", fs, err)
	}
	if err := c.RemoveBehavior(ctx, "lag"); err != nil {
		t.Fatal(err)
	}
	moving(t, out, "removing it")
	if _, err := c.ApplyBuiltin(ctx, "passthrough", client.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if !curl.Alive() {
		t.Fatal("the download ended before the last change; it must be slower")
	}
	intact(t, curl, out, sum, size)
}

// pingRTTs pings dst from host n times and returns the round trips,
// sorted.
func pingRTTs(l *lab, host, dst string, n int) []time.Duration {
	l.t.Helper()
	out := l.mustExec(60*time.Second, host, "ping", "-n", "-c", strconv.Itoa(n), "-i", "0.2", "-W", "5", dst)
	var rtts []time.Duration
	for _, m := range regexp.MustCompile(`time=([0-9.]+) ms`).FindAllStringSubmatch(out, -1) {
		ms, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, time.Duration(ms*float64(time.Millisecond)))
	}
	if len(rtts) != n {
		l.t.Fatalf("ping %s from %s: %d answers of %d:\n%s", dst, host, len(rtts), n, out)
	}
	slices.Sort(rtts)
	return rtts
}

// TestAPI_GoClientAddsADelayAndRemovesIt: a delay added from a Go test
// shows in the round trip, a patch changes it, and after its removal the
// round trip is back. Each way gets the delay, so the round trip has at
// least twice it; the upper bounds leave room for a busy machine.
func TestAPI_GoClientAddsADelayAndRemovesIt(t *testing.T) {
	c, l := apiLab(t)
	ctx := context.Background()
	base := pingRTTs(l, "client", serverV4, 5)
	if _, err := c.AddBehavior(ctx, client.Spec{Type: "delay", Name: "slow", Params: client.Params{"delay": "40ms"}}); err != nil {
		t.Fatal(err)
	}
	with := pingRTTs(l, "client", serverV4, 7)
	if _, err := c.PatchBehavior(ctx, "slow", client.Params{"delay": "15ms"}); err != nil {
		t.Fatal(err)
	}
	patched := pingRTTs(l, "client", serverV4, 7)
	if err := c.RemoveBehavior(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	without := pingRTTs(l, "client", serverV4, 7)
	t.Logf("ping RTT min/median: before %v/%v, +40ms each way %v/%v, patched to 15ms %v/%v, removed %v/%v",
		base[0], base[len(base)/2], with[0], with[3], patched[0], patched[3], without[0], without[3])
	if with[0] < 80*time.Millisecond || with[3] > 80*time.Millisecond+60*time.Millisecond {
		t.Errorf("with 40ms each way: RTTs %v, want a minimum of 80ms and a median within 60ms of it", with)
	}
	if patched[0] < 30*time.Millisecond || patched[3] > 30*time.Millisecond+40*time.Millisecond {
		t.Errorf("patched to 15ms each way: RTTs %v, want a minimum of 30ms and a median within 40ms of it", patched)
	}
	if without[3] > 20*time.Millisecond {
		t.Errorf("after the removal: RTTs %v, want a median under 20ms", without)
	}
	st, err := c.Status(ctx)
	if err != nil || len(st.Behaviors) != 1 || st.Behaviors[0].Type != "passthrough" || st.Counters.Delayed != 28 || st.Version != 4 {
		t.Fatalf("status after: behaviors %+v delayed %d version %d %v (want 28 delayed: 7+7 pings each way)",
			st.Behaviors, st.Counters.Delayed, st.Version, err)
	}
}

// unixHTTP is an HTTP client of a lab's control socket.
func unixHTTP(name string) *http.Client {
	sock := filepath.Join(device.Dir(name), "control.sock")
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

// call sends a request and returns the status and body; for an error,
// the body is the error's text.
func call(t *testing.T, hc *http.Client, method, url, ctype, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e struct{ Error string }
	if resp.StatusCode >= 400 && json.Unmarshal(data, &e) == nil && e.Error != "" {
		return resp.StatusCode, e.Error
	}
	return resp.StatusCode, string(data)
}

// TestAPI_BadInputChangesNothingWhileTrafficFlows: malformed JSON, unknown
// fields, a body over 1 MiB, an unknown behavior, a wrong token and
// concurrent PUTs each get a clear 4xx (or, for the PUTs, apply whole),
// while a download runs on: it arrives intact, nothing is half-applied,
// and the counters account for every packet.
func TestAPI_BadInputChangesNothingWhileTrafficFlows(t *testing.T) {
	c, l := apiLab(t, "--api", "127.0.0.1:0")
	ctx := context.Background()
	const size = 6 << 20
	curl, out, sum := pacedDownload(t, l, size)
	hc := unixHTTP(l.name)
	const base = "http://faultbox"
	before, err := c.Profile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := "name: big\nbehaviors: []\n" + strings.Repeat("# padding\n", 110000)
	for _, b := range []struct {
		name, method, path, ctype, body string
		code                            int
		text                            string
	}{
		{"malformed JSON", "PUT", "/v1/profile", "application/json", `{"name": "x", "behaviors": [}`, 400, "malformed JSON: line 1, column 29"},
		{"unknown profile key", "PUT", "/v1/profile", "application/json", `{"name": "x", "behaviors": [], "colour": "red"}`, 400, `unknown key "colour"`},
		{"unknown parameter", "POST", "/v1/behaviors", "application/json", `{"type": "delay", "dealy": "5ms"}`, 400, `unknown parameter "dealy"; did you mean "delay"?`},
		{"body over 1 MiB", "PUT", "/v1/profile", "application/yaml", big, 413, "over 1048576 bytes"},
		{"unknown behavior", "POST", "/v1/behaviors", "application/json", `{"type": "latency", "latency": "5ms"}`, 400, `unknown behavior "latency"`},
		{"bad value", "POST", "/v1/behaviors", "application/json", "{\"type\": \"delay\",\n \"delay\": \"-5ms\"}", 400, `request:2: behavior (delay): delay:`},
	} {
		code, body := call(t, hc, b.method, base+b.path, b.ctype, b.body)
		if code != b.code || !strings.Contains(body, b.text) {
			t.Errorf("%s: %d %s, want %d with %q", b.name, code, body, b.code, b.text)
		}
		moving(t, out, b.name)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"", "Bearer wrong"} {
		code, body := call(t, &http.Client{Timeout: 20 * time.Second}, "PUT", "http://"+st.API+"/v1/profile?builtin=block-port-81", "", "", "Authorization", tok)
		if code != 401 || !strings.Contains(body, "bearer token") {
			t.Errorf("TCP with authorization %q: %d %s, want 401", tok, code, body)
		}
	}
	after, err := c.Profile(ctx)
	if err != nil || *after != *before {
		t.Fatalf("the refused requests changed the profile:\n%+v\n%+v", before, after)
	}

	// Concurrent PUTs: each applies whole or is refused with 409.
	docs := make([]string, 6)
	codes := make([]int, len(docs))
	var wg sync.WaitGroup
	for i := range docs {
		docs[i] = fmt.Sprintf("name: p%d\nbehaviors:\n  - type: log\n    name: log%d\n    every: 1000\n", i, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = call(t, hc, "PUT", base+"/v1/profile", "application/yaml", docs[i])
		}()
	}
	wg.Wait()
	applied := 0
	for i, code := range codes {
		switch code {
		case 200:
			applied++
		case 409:
		default:
			t.Errorf("concurrent PUT %d: %d", i, code)
		}
	}
	p, err := c.Profile(ctx)
	if err != nil || applied == 0 || p.Version != before.Version+uint64(applied) || !slices.Contains(docs, p.YAML) {
		t.Fatalf("after concurrent PUTs %v: %+v %v", codes, p, err)
	}
	if bs, _ := c.Behaviors(ctx); len(bs) != 1 || bs[0].Name != "log"+strings.TrimPrefix(p.Name, "p") {
		t.Fatalf("the chain %+v is not the profile %s's", bs, p.Name)
	}
	moving(t, out, "concurrent PUTs")
	intact(t, curl, out, sum, size)
	ds := l.deviceStatus()
	if err := ds.accounts(); err != nil || ds.Counters.Dropped != 0 {
		t.Fatalf("counters: %v, dropped by behavior %d", err, ds.Counters.Dropped)
	}
}

// TestAPI_DocsCurlExamples runs docs/api.md's curl examples, in order,
// against a lab: each must succeed, and together they must call every
// route. The socket and capture paths are the test's.
func TestAPI_DocsCurlExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Missing(t, "curl")
	}
	_, l := apiLab(t)
	pcap := filepath.Join(t.TempDir(), "lab.pcapng")
	sock := "/run/faultbox/" + l.name + "/"
	if device.RunDir != "/run/faultbox" {
		t.Fatalf("the docs name /run/faultbox; the devices run in %s", device.RunDir)
	}
	st, err := device.ReadState(l.name) // its device, to see the shutdown example end it
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := curlBlocks(string(data))
	calls := map[string]bool{}
	for _, b := range blocks {
		for _, c := range curlCalls(b) {
			calls[c] = true
		}
	}
	for _, want := range []string{"GET /v1/status", "GET /v1/profile", "PUT /v1/profile", "GET /v1/behaviors", "POST /v1/behaviors",
		"GET /v1/behaviors/NAME", "PATCH /v1/behaviors/NAME", "DELETE /v1/behaviors/NAME", "GET /v1/flows", "GET /v1/events",
		"GET /v1/capture", "POST /v1/capture", "DELETE /v1/capture", "POST /v1/shutdown", "GET /metrics"} {
		if !calls[want] {
			t.Errorf("docs/api.md has no curl example of %s (it has %v)", want, calls)
		}
	}
	for _, b := range blocks {
		script := strings.NewReplacer("/run/faultbox/default/", sock, "/tmp/lab.pcapng", pcap).Replace(b)
		// Any HTTP error fails the example, as it would the reader.
		r := testenv.Run(30*time.Second, "sh", "-ec", "curl() { command curl --fail-with-body \"$@\"; }\n"+script)
		if r.Code != 0 || strings.Contains(r.Stdout, `"error"`) {
			t.Fatalf("docs/api.md example failed:\n%s\n%s", script, r)
		}
		if strings.Contains(b, "-X DELETE http://faultbox/v1/capture") {
			if fi, err := os.Stat(pcap); err != nil || fi.Size() == 0 {
				t.Errorf("the capture example wrote no %s: %v", pcap, err)
			}
		}
	}
	t.Logf("ran %d example blocks of docs/api.md, calling %d routes", len(blocks), len(calls))
	// The last example shuts the device down: the lab goes away.
	if !st.Device.WaitGone(15 * time.Second) {
		t.Errorf("the device still runs 15s after the shutdown example")
	}
}

// curlBlocks returns the ```sh blocks of a Markdown text that begin with
// curl on the unix socket: the examples meant to be run as they are.
func curlBlocks(md string) []string {
	var out []string
	for _, part := range strings.Split(md, "```sh\n")[1:] {
		b, _, _ := strings.Cut(part, "```")
		if strings.HasPrefix(b, "curl -s --unix-socket ") {
			out = append(out, b)
		}
	}
	return out
}

// curlCalls returns the calls the curl commands of a block make, as
// "METHOD /path" with behavior names as NAME.
func curlCalls(block string) []string {
	var out []string
	joined := strings.ReplaceAll(block, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		method := "GET"
		if m := regexp.MustCompile(`-X (\w+)`).FindStringSubmatch(line); m != nil {
			method = m[1]
		}
		u := regexp.MustCompile(`http://faultbox(/[^ '?]*)`).FindStringSubmatch(line)
		if u == nil {
			continue
		}
		path := regexp.MustCompile(`^/v1/behaviors/[^/]+$`).ReplaceAllString(u[1], "/v1/behaviors/NAME")
		out = append(out, method+" "+path)
	}
	return out
}

// TestAPI_PrometheusScrapesTheDevice: a real Prometheus server, in a
// namespace of the test's own, scrapes the lab device's TCP API with the
// bearer token, and a query through its HTTP API returns faultbox's packet
// counter. The device listens on the machine's loopback, which the
// namespace cannot reach: the test relays the scrape's connections from
// the namespace's loopback to it.
func TestAPI_PrometheusScrapesTheDevice(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Missing(t, "prometheus (Debian package prometheus; scripts/deps.sh installs it)")
	}
	c, l := apiLab(t, "--api", "127.0.0.1:0")
	ctx := context.Background()
	pingRTTs(l, "client", serverV4, 5) // traffic to count
	st, err := c.Status(ctx)
	if err != nil || st.API == "" || st.Counters.In == 0 {
		t.Fatalf("status: api %q, counters %+v, %v", st.API, st.Counters, err)
	}
	token, err := os.ReadFile(device.TokenPath(l.name))
	if err != nil {
		t.Fatal(err)
	}

	ns := testenv.LoopbackNetns(t, "prom")
	relay(t, ns, "127.0.0.1:9100", st.API)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, token, 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: faultbox
    static_configs: [{targets: ["127.0.0.1:9100"]}]
    authorization: {type: Bearer, credentials_file: %s}
`, tokenFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, prom, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:9090")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(unix.SIGTERM) // ours, by the pid exec gave us (ip netns exec execs prometheus)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	want := st.Counters.In
	query := "http://127.0.0.1:9090/api/v1/query?query=faultbox_packets_in_total"
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r := testenv.Run(10*time.Second, "ip", "netns", "exec", ns, "curl", "-s", query)
		last = r.Stdout
		// {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[1733539200.1,"12"]}]}}
		if m := regexp.MustCompile(`"__name__":"faultbox_packets_in_total".*"value":\[[0-9.]+,"([0-9]+)"\]`).FindStringSubmatch(last); m != nil {
			got, _ := strconv.ParseUint(m[1], 10, 64)
			if got >= want && got > 0 {
				t.Logf("Prometheus: faultbox_packets_in_total = %d (status said %d before)", got, want)
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	log, _ := os.ReadFile(logPath)
	t.Fatalf("no faultbox_packets_in_total >= %d from Prometheus in 60s; last answer %s\nprometheus log:\n%s", want, last, tail(string(log), 20))
}

// relay accepts connections on addr inside namespace ns and joins each to
// a connection to target, dialled from this (the machine's) namespace.
func relay(t *testing.T, ns, addr, target string) {
	t.Helper()
	var ln net.Listener
	if err := testenv.InNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer in.Close()
				out, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				// One scrape, one exchange: bounded by a deadline either way.
				in.SetDeadline(time.Now().Add(30 * time.Second))
				out.SetDeadline(time.Now().Add(30 * time.Second))
				go func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
				io.Copy(in, out)
			}()
		}
	}()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestAPI_AttachServesTheSameAPI: an attach (a container's namespace here)
// serves the same API as a lab: from Go, a delay added toward the server
// shows in a TCP connect and goes with its removal; over TCP with the
// token printed once; and its event log reads the same way.
func TestAPI_AttachServesTheSameAPI(t *testing.T) {
	t.Parallel()
	l := newDockerNet(t)
	l.start("server", "python3 -m http.server --bind :: --directory "+t.TempDir()+" 8000")
	l.waitListen("server", "t", 8000)
	dkAttach(l, "--pid", pidIn(l, "client"), "--to", dkServer4, "--api", "127.0.0.1:0")
	c, err := client.Dial(l.name)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil || st.Kind != "attach" || st.API == "" {
		t.Fatalf("status: kind %q api %q %v", st.Kind, st.API, err)
	}
	before := connectRTT(l, "client", dkServer4, 8000, 3)
	if _, err := c.AddBehavior(ctx, client.Spec{Type: "delay", Name: "slow", Params: client.Params{"delay": "20ms"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddBehavior(ctx, client.Spec{Type: "log", Match: &client.Match{TCPFlags: []string{"syn"}}}); err != nil {
		t.Fatal(err)
	}
	with := connectRTT(l, "client", dkServer4, 8000, 3)
	if err := c.RemoveBehavior(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	after := connectRTT(l, "client", dkServer4, 8000, 3)
	t.Logf("connect: %v before, %v with 20ms each way, %v after the removal", before, with, after)
	if with < 40*time.Millisecond || with > 100*time.Millisecond || after > 20*time.Millisecond {
		t.Errorf("connect %v with the delay (want 40-100ms), %v after it (want under 20ms)", with, after)
	}
	token, err := os.ReadFile(device.TokenPath(l.name))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := client.DialTCP(st.API, strings.TrimSpace(string(token))).Behaviors(ctx)
	if err != nil || len(bs) != 2 || bs[1].Name != "log" {
		t.Fatalf("behaviors over TCP: %+v %v", bs, err)
	}
	r := fb(30*time.Second, "events", "--name", l.name)
	if r.Code != 0 || strings.Count(r.Stdout, " log ") < 3 {
		t.Fatalf("faultbox events: %s\nwant the logged SYNs", r)
	}
}
