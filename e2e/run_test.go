package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/flow"
	fblab "github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/netns"
	"github.com/faultbox/faultbox/internal/testenv"
)

// faultbox run is tested as a user would start it on a host, but the
// "host" is a namespace the test creates (hostSide), so that no test
// touches the machine's own routes, rules, sysctls or nft tables: `ip
// netns exec HOST faultbox run ...` makes it the host side. Behind it, an
// "internet" namespace with a web server has no route to the runs'
// addresses, so answers come back only through the masquerade; the host
// side's resolver listens on its loopback, as systemd-resolved's stub
// does, where the command's own namespace cannot reach it.

// The internet's server, and the name the host side's resolver gives it.
var (
	runServer4 = netip.MustParseAddr("198.18.77.2")
	runServer6 = netip.MustParseAddr("2001:db8:77::2")
	runHost4   = netip.MustParseAddr("198.18.77.1") // the host side's uplink
	runHost6   = netip.MustParseAddr("2001:db8:77::1")
)

const (
	runServerName = "server.fbx.test"
	runServerPort = 8080
	runHostPort   = 8081 // a server on the host side itself
	runResolver   = "127.0.0.53"
)

// hostSide is a namespace standing for the host, with the internet behind
// it.
type hostSide struct {
	t        *testing.T
	ns       string // the host side
	internet string
	queries  atomic.Int64 // DNS queries its resolver answered
	// via runs a command on the host side: ip netns exec NS, after
	// nsenter into a private view (newIsolated) if the host side is in one.
	via []string
	// root is where this test finds the host side's /run: "" or the
	// private view's root.
	root string
}

// newHostSide builds the host side. forwarding: whether it forwards
// (net.ipv4.ip_forward and net.ipv6.conf.all.forwarding in that namespace).
func newHostSide(t *testing.T, forwarding bool) *hostSide {
	t.Helper()
	h := &hostSide{t: t, ns: testenv.LoopbackNetns(t, "runh"), internet: testenv.LoopbackNetns(t, "runi")}
	h.via = []string{"ip", "netns", "exec", h.ns}
	testenv.IP(t, h.ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", h.internet)
	testenv.IP(t, h.ns, "addr", "add", runHost4.String()+"/24", "dev", "up0")
	testenv.IP(t, h.ns, "addr", "add", runHost6.String()+"/64", "dev", "up0", "nodad")
	testenv.IP(t, h.internet, "addr", "add", runServer4.String()+"/24", "dev", "up1")
	testenv.IP(t, h.internet, "addr", "add", runServer6.String()+"/64", "dev", "up1", "nodad")
	testenv.IP(t, h.ns, "link", "set", "up0", "up")
	testenv.IP(t, h.internet, "link", "set", "up1", "up")
	if forwarding {
		err := testenv.InNetns(h.ns, func() error {
			for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
				if err := os.WriteFile(f, []byte("1\n"), 0); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The host side's /etc/resolv.conf, as ip netns exec shows it there.
	etc := filepath.Join(fblab.NetnsEtc, h.ns)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	resolv := "nameserver " + runResolver + "\noptions edns0 trust-ad\nsearch fbx.test\n"
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(resolv), 0o644); err != nil {
		t.Fatal(err)
	}
	h.serveDNS()
	h.serveHTTP(h.internet, netip.AddrPortFrom(netip.IPv6Unspecified(), runServerPort))
	h.serveHTTP(h.ns, netip.AddrPortFrom(runHost4, runHostPort))
	// The first packets between two fresh namespaces wait for neighbour
	// discovery; get that out of the way of timed fetches.
	for _, a := range []netip.Addr{runServer4, runServer6} {
		if r := testenv.Run(10*time.Second, "ip", "netns", "exec", h.ns, "ping", "-c1", "-W5", a.String()); r.Code != 0 {
			t.Fatalf("host side -> %s: %s", a, r)
		}
	}
	return h
}

// serveDNS answers A and AAAA queries for runServerName on the host
// side's loopback, NXDOMAIN for any other name.
func (h *hostSide) serveDNS() {
	var pc net.PacketConn
	err := testenv.InNetns(h.ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp", net.JoinHostPort(runResolver, "53"))
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if answer, err := answerDNS(buf[:n]); err == nil {
				h.queries.Add(1)
				pc.WriteTo(answer, from)
			}
		}
	}()
}

func answerDNS(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	hdr, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	known := strings.EqualFold(q.Name.String(), runServerName+".")
	rh := dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true, RecursionDesired: hdr.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch {
	case known && q.Type == dnsmessage.TypeA:
		err = b.AResource(rr, dnsmessage.AResource{A: runServer4.As4()})
	case known && q.Type == dnsmessage.TypeAAAA:
		err = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: runServer6.As16()})
	}
	if err != nil {
		return nil, err
	}
	return b.Finish()
}

// serveHTTP serves, in namespace ns on at: GET /blob?n=N, N bytes; POST
// /upload, "got N" for a body of N bytes.
func (h *hostSide) serveHTTP(ns string, at netip.AddrPort) {
	var ln net.Listener
	err := testenv.InNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", at.String())
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(make([]byte, n))
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	h.t.Cleanup(func() { srv.Close() })
}

// newIsolatedHostSide is a host side alone (no internet, no resolver, no
// forwarding) in a private view of /run/netns and /run/faultbox, for
// tests of --all commands: they see this test's runs only.
func newIsolatedHostSide(t *testing.T) (*hostSide, *isolated) {
	t.Helper()
	iso := newIsolated(t)
	h := &hostSide{t: t, ns: fblab.UniqueName("fbx-t-runv-"), root: "/proc/" + strconv.Itoa(iso.pid) + "/root"}
	h.via = []string{"nsenter", "-t", strconv.Itoa(iso.pid), "-m", "--", "ip", "netns", "exec", h.ns}
	if r := iso.run(10*time.Second, "ip", "netns", "add", h.ns); r.Code != 0 {
		t.Fatalf("ip netns add in the private view: %s", r)
	}
	t.Cleanup(func() { // before the view goes, with its /run/netns
		if r := iso.run(10*time.Second, "ip", "netns", "del", h.ns); r.Code != 0 {
			t.Errorf("ip netns del %s in the private view: %s", h.ns, r)
		}
	})
	if r := iso.run(10*time.Second, "ip", "-n", h.ns, "link", "set", "lo", "up"); r.Code != 0 {
		t.Fatal(r)
	}
	return h, iso
}

// path is where this test finds a path of the host side's filesystem view.
func (h *hostSide) path(p string) string { return h.root + p }

// run runs faultbox run args... on the host side and waits for it.
func (h *hostSide) run(timeout time.Duration, args ...string) testenv.Result {
	return testenv.Run(timeout, h.via[0], append(append(h.via[1:], faultbox, "run"), args...)...)
}

// started is a faultbox run going on in the background.
type started struct {
	t    *testing.T
	h    *hostSide
	name string
	cmd  *exec.Cmd // ip netns exec (nsenter), which execs faultbox: its pid is faultbox's
	done chan struct{}
	errs *os.File // its stderr
}

// start starts faultbox run --name name args... on the host side and
// returns once the command printed "started" (so the device is ready). It
// kills it when the test ends if it still runs.
func (h *hostSide) start(t *testing.T, name string, args ...string) *started {
	t.Helper()
	s := &started{t: t, h: h, name: name, done: make(chan struct{})}
	s.cmd = exec.Command(h.via[0], append(append(h.via[1:], faultbox, "run", "--name", name), args...)...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A file, not a pipe: the command may outlive faultbox (SIGKILL) and
	// keep stderr open.
	if s.errs, err = os.CreateTemp(t.TempDir(), "stderr"); err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.errs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		io.Copy(io.Discard, stdout)
	}()
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		s.errs.Close()
	})
	select {
	case l := <-line:
		if strings.TrimSpace(l) != "started" {
			<-s.done
			t.Fatalf("faultbox run %s: %q instead of started; stderr:\n%s", name, l, s.stderr())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("faultbox run %s: the command did not start within 30s; stderr:\n%s", name, s.stderr())
	}
	return s
}

func (s *started) stderr() string {
	data, _ := os.ReadFile(s.errs.Name())
	return string(data)
}

// wait waits for faultbox run to end and returns its exit status.
func (s *started) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		s.t.Fatalf("faultbox run %s still runs after %v; stderr:\n%s", s.name, d, s.stderr())
		return -1
	}
}

// runInfo is what a run's state says about it.
type runInfo struct {
	device  device.Proc
	command device.Proc // the command's first process
	netns   netns.ID    // the command's namespace
}

// info reads the run's state.json.
func (s *started) info() runInfo {
	s.t.Helper()
	data, err := os.ReadFile(s.h.path(filepath.Join(device.Dir(s.name), "state.json")))
	if err != nil {
		s.t.Fatal(err)
	}
	var st device.State
	if err := json.Unmarshal(data, &st); err != nil {
		s.t.Fatal(err)
	}
	var rec struct {
		Process device.Proc `json:"process"`
		Netns   netns.ID    `json:"netns"`
	}
	if err := json.Unmarshal(st.Placement, &rec); err != nil {
		s.t.Fatal(err)
	}
	if !st.Device.Alive() || !rec.Process.Alive() || rec.Netns == (netns.ID{}) {
		s.t.Fatalf("run %s: device %+v, command %+v, namespace %v: want both running", s.name, st.Device, rec.Process, rec.Netns)
	}
	return runInfo{device: st.Device, command: rec.Process, netns: rec.Netns}
}

// assertGone checks that nothing of run name is left: its runtime
// directory, device, processes in its command's namespace (if info), its
// nft table, interfaces, addresses and routes on the host side.
func (h *hostSide) assertGone(t *testing.T, name string, info *runInfo) {
	t.Helper()
	if _, err := os.Stat(h.path(device.Dir(name))); err == nil {
		t.Errorf("run %s: %s is left", name, device.Dir(name))
	}
	if info != nil {
		if !info.device.WaitGone(5 * time.Second) {
			t.Errorf("run %s: device pid %d is left", name, info.device.PID)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			pids, _ := netns.Pids(info.netns)
			if len(pids) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("run %s: processes left in the command's namespace: %v", name, pids)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, table := range h.nftTables(t) {
		if strings.HasPrefix(table, "faultbox-run-") {
			t.Errorf("run %s: nft table inet %s is left on the host side", name, table)
		}
	}
	for _, args := range [][]string{{"-o", "link"}, {"-o", "addr"}, {"route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"}} {
		out := testenv.Run(10*time.Second, "nsenter", append([]string{"--net=" + h.path(netns.Path(h.ns)), "--", "ip"}, args...)...)
		if out.Code != 0 {
			t.Fatalf("ip %v: %s", args, out)
		}
		for _, line := range strings.Split(out.Stdout, "\n") {
			if strings.Contains(line, "fbxrun") || strings.Contains(line, "198.19.") || strings.Contains(line, "2001:db8:fb:") {
				t.Errorf("run %s: left on the host side (ip %s): %s", name, strings.Join(args, " "), line)
			}
		}
	}
}

// nftTables lists the host side's inet tables.
func (h *hostSide) nftTables(t *testing.T) []string {
	t.Helper()
	fd, err := unix.Open(h.path(netns.Path(h.ns)), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("nft tables on the host side: %v", err)
	}
	var names []string
	for _, tab := range tables {
		names = append(names, tab.Name)
	}
	return names
}

// The gprs profile's link (profiles/builtin/gprs.yaml): 250 ms each way,
// 50 kbit/s toward the client (the command), 20 kbit/s from it. Its
// random outages come, with seed 12, first 337 s after the first packet
// (the outage's own source, PCG(12, 1), draws an exponential time of mean
// 2 minutes: 2.81 of them), long after these fetches; its 1.5 % loss may
// cost a retransmission, which the bounds allow.
const (
	gprsOneWay  = 250 * time.Millisecond
	gprsDown    = 50_000 // bit/s
	gprsUp      = 20_000
	gprsSeed    = "12"
	tcpSegment  = 1448 // payload of a 1500-byte packet with TCP timestamps
	tcpOverhead = 52   // its IP and TCP headers

	// About as many bytes as curl's requests and the server's response
	// headers take.
	getHeaders, postHeaders, respHeaders = 100, 160, 150
)

// onWire is how many bytes n bytes of TCP payload take as packets.
func onWire(n int) int { return n + (n+tcpSegment-1)/tcpSegment*tcpOverhead }

// serialise is how long n bytes of payload take at rate bit/s.
func serialise(n, rate int) time.Duration {
	return time.Duration(float64(onWire(n)*8) / float64(rate) * float64(time.Second))
}

// gprsFetch is what the link model says an HTTP exchange takes: the
// handshake and the request/response each cost a round trip, plus the
// request's bytes at the uplink's rate and the response's at the
// downlink's (both counted with headers; the handshake's and ACKs'
// few bytes are left out).
func gprsFetch(request, response int) time.Duration {
	return 4*gprsOneWay + serialise(request, gprsUp) + serialise(response, gprsDown)
}

// curlWrites makes curl print the fetch's time and HTTP status.
var curlWrites = []string{"-sS", "--max-time", "60", "-o", "/dev/null", "-w", "%{time_total} %{http_code}"}

// timed runs a command that prints curl's time and status (curlWrites) in
// a run with profile and returns the time.
func (h *hostSide) timed(t *testing.T, profile string, cmd ...string) time.Duration {
	t.Helper()
	name := fblab.UniqueName("tr")
	args := append([]string{"--name", name, "--profile", profile, "--seed", gprsSeed, "--"}, cmd...)
	r := h.run(90*time.Second, args...)
	if r.Code != 0 {
		t.Fatalf("faultbox run %s: %s", strings.Join(args, " "), r)
	}
	h.assertGone(t, name, nil)
	var secs float64
	var code int
	if _, err := fmt.Sscan(r.Stdout, &secs, &code); err != nil || code != 200 {
		t.Fatalf("curl printed %q (%v), want its time and 200", r.Stdout, err)
	}
	return time.Duration(secs * float64(time.Second))
}

// TestRun_GPRSFetchTakesWhatTheLinkModelSays: `faultbox run --profile
// gprs -- curl` against a server beyond the host side takes what the gprs
// link model says, over IPv4 and IPv6, downloads at the downlink's rate
// and uploads at the uplink's. The bounds: 0.5 s below the model (the
// jitter's sum over four one-way trips has a standard deviation of
// 100 ms) and 3 s above it (a lost segment's recovery, a loaded CPU).
func TestRun_GPRSFetchTakesWhatTheLinkModelSays(t *testing.T) {
	h := newHostSide(t, true)
	// The download takes 3.3 s at 50 kbit/s; HTTP headers add about as
	// many bytes as these.
	const size = 20000
	check := func(t *testing.T, got, model time.Duration) {
		t.Helper()
		t.Logf("took %v; the link model says %v", got.Round(time.Millisecond), model.Round(time.Millisecond))
		if got < model-500*time.Millisecond || got > model+3*time.Second {
			t.Errorf("took %v, want %v within -0.5 s/+3 s", got.Round(time.Millisecond), model.Round(time.Millisecond))
		}
	}
	download := func(server netip.Addr) []string {
		url := fmt.Sprintf("http://%s/blob?n=%d", netip.AddrPortFrom(server, runServerPort), size)
		return append(append([]string{"curl"}, curlWrites...), url)
	}
	t.Run("passthrough", func(t *testing.T) {
		if got := h.timed(t, "passthrough", download(runServer4)...); got > 1500*time.Millisecond {
			t.Errorf("took %v through passthrough, want well under the gprs model", got)
		}
	})
	for _, server := range []netip.Addr{runServer4, runServer6} {
		t.Run("download over IPv"+map[bool]string{true: "4", false: "6"}[server.Is4()], func(t *testing.T) {
			check(t, h.timed(t, "gprs", download(server)...), gprsFetch(getHeaders, size+respHeaders))
		})
	}
	t.Run("upload over IPv4", func(t *testing.T) {
		const body = 6000 // 2.5 s at 20 kbit/s
		url := fmt.Sprintf("http://%s/upload", netip.AddrPortFrom(runServer4, runServerPort))
		// No "Expect: 100-continue": curl would wait for it a second.
		script := fmt.Sprintf("head -c %d /dev/zero | curl -H Expect: --data-binary @- %s %s", body, shellQuote(curlWrites), url)
		check(t, h.timed(t, "gprs", "sh", "-c", script), gprsFetch(postHeaders+body, respHeaders))
	})
}

// shellQuote quotes args for sh.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestRun_ResolvesNamesThroughTheHostsResolver: the host side's
// resolv.conf names a resolver on its loopback, out of the command's
// reach; names resolve all the same, over IPv4 and IPv6, through the
// device's forwarder, and the host side's resolver is the one that
// answered.
func TestRun_ResolvesNamesThroughTheHostsResolver(t *testing.T) {
	h := newHostSide(t, true)
	name := fblab.UniqueName("tr")
	url := fmt.Sprintf("http://%s:%d/blob?n=100", runServerName, runServerPort)
	script := strings.Join([]string{
		"cat /etc/resolv.conf",
		"getent ahostsv4 " + runServerName,
		"getent ahostsv6 " + runServerName,
		"curl -sS -4 -o /dev/null -w '%{remote_ip} %{size_download}\\n' " + url,
		"curl -sS -6 -o /dev/null -w '%{remote_ip} %{size_download}\\n' " + url,
		"! getent hosts unknown.fbx.test", // the resolver's NXDOMAIN comes through
	}, " && ")
	r := h.run(60*time.Second, "--name", name, "--profile", "passthrough", "--", "sh", "-c", script)
	if r.Code != 0 {
		t.Fatalf("faultbox run: %s", r)
	}
	for _, want := range []string{
		"nameserver 198.19.", // the host side, not its loopback
		"search fbx.test",    // kept from the host's
		runServer4.String() + "     STREAM " + runServerName,
		runServer6.String() + "  STREAM " + runServerName,
		runServer4.String() + " 100\n",
		runServer6.String() + " 100\n",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.Stdout)
		}
	}
	if strings.Contains(r.Stdout, runResolver) {
		t.Errorf("the command's resolv.conf names the host side's loopback:\n%s", r.Stdout)
	}
	if h.queries.Load() == 0 {
		t.Error("the host side's resolver answered no query")
	}
	h.assertGone(t, name, nil)
}

// TestRun_PassesTheExitStatusAndNeedsNoIPRoute2: the command's exit
// status is faultbox run's, 128 + the signal if one killed it; faultbox
// runs with no ip command in its PATH (iproute2 is not needed).
func TestRun_PassesTheExitStatusAndNeedsNoIPRoute2(t *testing.T) {
	h := newHostSide(t, true)
	for script, want := range map[string]int{"exit 0": 0, "exit 3": 3, "kill -TERM $$": 128 + 15} {
		name := fblab.UniqueName("tr")
		r := testenv.Run(60*time.Second, "ip", "netns", "exec", h.ns, "env", "PATH=/nonexistent",
			faultbox, "run", "--name", name, "--profile", "passthrough", "--", "/bin/sh", "-c", script)
		if r.Code != want {
			t.Errorf("%s: faultbox run exited %d, want %d: %s", script, r.Code, want, r)
		}
		h.assertGone(t, name, nil)
	}
}

// TestRun_SignalsGoToTheCommandAndTheRunIsRemoved: SIGINT and SIGTERM
// sent to faultbox run reach the command, whose status is faultbox's, and
// then everything goes, also a process the command left in another
// session (which no signal to its group reaches).
func TestRun_SignalsGoToTheCommandAndTheRunIsRemoved(t *testing.T) {
	h := newHostSide(t, true)
	for _, c := range []struct {
		sig    unix.Signal
		script string
		want   int
	}{
		{unix.SIGINT, "setsid sleep 300 & echo started; exec sleep 300", 128 + 2},
		{unix.SIGTERM, "trap 'exit 7' TERM; setsid sleep 300 & echo started; while :; do sleep 0.1; done", 7},
	} {
		name := fblab.UniqueName("tr")
		s := h.start(t, name, "--profile", "passthrough", "--", "sh", "-c", c.script)
		info := s.info()
		if err := s.cmd.Process.Signal(c.sig); err != nil {
			t.Fatal(err)
		}
		if got := s.wait(30 * time.Second); got != c.want {
			t.Errorf("%v: faultbox run exited %d, want %d; stderr:\n%s", c.sig, got, c.want, s.stderr())
		}
		h.assertGone(t, name, &info)
	}
}

// TestRun_AfterSIGKILLTheNextRunRemovesWhatWasLeft: faultbox run killed by
// SIGKILL (alone, or with its device) leaves its run behind; the next
// faultbox run removes all of it and works.
func TestRun_AfterSIGKILLTheNextRunRemovesWhatWasLeft(t *testing.T) {
	h := newHostSide(t, true)
	for _, alsoDevice := range []bool{false, true} {
		t.Run(map[bool]string{false: "faultbox", true: "faultbox and its device"}[alsoDevice], func(t *testing.T) {
			name := fblab.UniqueName("tr")
			s := h.start(t, name, "--profile", "passthrough", "--", "sh", "-c", "echo started; exec sleep 300")
			info := s.info()
			if err := s.cmd.Process.Signal(unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			s.wait(10 * time.Second)
			if alsoDevice {
				if err := info.device.Signal(unix.SIGKILL); err != nil || !info.device.WaitGone(5*time.Second) {
					t.Fatalf("SIGKILL device %d: %v", info.device.PID, err)
				}
			}
			if !info.command.Alive() || !strings.Contains(strings.Join(h.nftTables(t), " "), "faultbox-run-"+name) {
				t.Fatalf("nothing left to remove: command alive %v, nft tables %v", info.command.Alive(), h.nftTables(t))
			}
			next := fblab.UniqueName("tr")
			if r := h.run(60*time.Second, "--name", next, "--profile", "passthrough", "--", "curl", "-sS", "-o", "/dev/null",
				fmt.Sprintf("http://%s/blob?n=1", netip.AddrPortFrom(runServer4, runServerPort))); r.Code != 0 {
				t.Fatalf("the next faultbox run: %s", r)
			}
			if !info.command.WaitGone(5 * time.Second) {
				t.Errorf("the killed run's command %d survived the next run", info.command.PID)
			}
			h.assertGone(t, name, &info)
			h.assertGone(t, next, nil)
		})
	}
}

// TestRun_BadInputIsAClearErrorAndChangesNothing: each mistake exits
// with a message that says what is wrong, and leaves nothing behind.
func TestRun_BadInputIsAClearErrorAndChangesNothing(t *testing.T) {
	h := newHostSide(t, true)
	taken := fblab.UniqueName("tr")
	first := h.start(t, taken, "--profile", "passthrough", "--", "sh", "-c", "echo started; exec sleep 300")
	for _, c := range []struct {
		what string
		args []string
		code int
		says string
	}{
		{"no command", []string{"--profile", "passthrough"}, 2, "no command to run"},
		{"no profile", []string{"--", "true"}, 2, "--profile is required"},
		{"unknown profile", []string{"--profile", "no-such-profile", "--", "true"}, 2, "no-such-profile: no such built-in profile or file"},
		{"unknown command", []string{"--profile", "passthrough", "--", "fbx-no-such-command"}, 2, "fbx-no-such-command: command not found"},
		{"bad name", []string{"--name", "Bad_Name", "--profile", "passthrough", "--", "true"}, 2, `name "Bad_Name"`},
		{"name in use", []string{"--name", taken, "--profile", "passthrough", "--", "true"}, 2, "run " + strconv.Quote(taken) + " is already up"},
		{"capture in a missing directory", []string{"--profile", "passthrough", "--capture", "/nonexistent/c.pcapng", "--", "true"}, 2, "directory /nonexistent does not exist"},
	} {
		r := h.run(60*time.Second, c.args...)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.says) {
			t.Errorf("%s: exit %d, want %d saying %q: %s", c.what, r.Code, c.code, c.says, r)
		}
		if strings.Contains(r.Stderr, "goroutine ") || strings.Contains(r.Stderr, "panic") {
			t.Errorf("%s: a stack trace: %s", c.what, r)
		}
	}
	// Without privileges: a clear error, not a failure half-way.
	r := testenv.Run(60*time.Second, "ip", "netns", "exec", h.ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		faultbox, "run", "--profile", "passthrough", "--", "true")
	if r.Code != 1 || !strings.Contains(r.Stderr, "faultbox run needs root") {
		t.Errorf("without privileges: %s", r)
	}
	names, _ := device.Names()
	for _, n := range names {
		st, err := device.ReadState(n)
		var rec struct {
			HostPath string `json:"host_netns_path"`
		}
		if err == nil && st.KindOf() == device.KindRun && json.Unmarshal(st.Placement, &rec) == nil && rec.HostPath == netns.Path(h.ns) && n != taken {
			t.Errorf("a bad faultbox run left run %s", n)
		}
	}
	if tables := h.nftTables(t); len(tables) != 1 {
		t.Errorf("nft tables on the host side: %v, want the first run's only", tables)
	}
	// The first run was not disturbed.
	if r := testenv.Run(10*time.Second, "kill", "-TERM", strconv.Itoa(first.cmd.Process.Pid)); r.Code != 0 {
		t.Fatal(r)
	}
	if got := first.wait(30 * time.Second); got != 128+15 {
		t.Errorf("the first run ended %d, want 143 (its sleep killed by the SIGTERM passed on)", got)
	}
}

// TestRun_WarnsWhenTheHostSideDoesNotForward: with forwarding off on the
// host side, faultbox run says so and what it means, changes nothing, and
// the command reaches the host side's own addresses but no other host.
func TestRun_WarnsWhenTheHostSideDoesNotForward(t *testing.T) {
	h := newHostSide(t, false)
	name := fblab.UniqueName("tr")
	script := fmt.Sprintf("curl -sS -o /dev/null -w '%%{http_code}\\n' http://%s/blob?n=10 && ! curl -sS --max-time 2 -o /dev/null http://%s/blob?n=10",
		netip.AddrPortFrom(runHost4, runHostPort), netip.AddrPortFrom(runServer4, runServerPort))
	r := h.run(60*time.Second, "--name", name, "--profile", "passthrough", "--", "sh", "-c", script)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "200" {
		t.Fatalf("the host side's own server, then not the internet's: %s", r)
	}
	for _, want := range []string{"IPv4 forwarding is off here (net.ipv4.ip_forward=0)", "IPv6 forwarding is off here"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, r.Stderr)
		}
	}
	for _, f := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding"} {
		r := testenv.Run(10*time.Second, "ip", "netns", "exec", h.ns, "cat", "/proc/sys/net/"+f)
		if strings.TrimSpace(r.Stdout) != "0" {
			t.Errorf("%s on the host side is now %q", f, r.Stdout)
		}
	}
	h.assertGone(t, name, nil)
}

// TestRun_Nests: a faultbox run inside a faultbox run has the outer run's
// namespace as its host side; the command inside reaches the internet and
// resolves names through both.
func TestRun_Nests(t *testing.T) {
	h := newHostSide(t, true)
	outer, inner := fblab.UniqueName("tr"), fblab.UniqueName("tr")
	url := fmt.Sprintf("http://%s:%d/blob?n=1000", runServerName, runServerPort)
	r := h.run(90*time.Second, "--name", outer, "--profile", "passthrough", "--",
		faultbox, "run", "--name", inner, "--profile", "passthrough", "--",
		"curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url)
	if r.Code != 0 || r.Stdout != "1000" {
		t.Fatalf("nested runs: %s", r)
	}
	h.assertGone(t, outer, nil)
	h.assertGone(t, inner, nil)
}

// TestRun_DetachAllRemovesKilledRuns: `faultbox detach --all` removes what
// a faultbox run killed by SIGKILL left, alone or with its device, as the
// next run would; a run that is still going is left alone. In a private
// view of /run/faultbox and /run/netns, so that --all sees this test's
// runs only.
func TestRun_DetachAllRemovesKilledRuns(t *testing.T) {
	h, iso := newIsolatedHostSide(t)
	t.Cleanup(func() { iso.fb(60*time.Second, "detach", "--all") }) // what a failure left, before the view goes
	sleep := []string{"--profile", "passthrough", "--", "sh", "-c", "echo started; exec sleep 300"}
	killed := h.start(t, fblab.UniqueName("tr"), sleep...)
	withDevice := h.start(t, fblab.UniqueName("tr"), sleep...)
	going := h.start(t, fblab.UniqueName("tr"), sleep...)
	infos := map[*started]runInfo{killed: killed.info(), withDevice: withDevice.info(), going: going.info()}
	for _, s := range []*started{killed, withDevice} {
		if err := s.cmd.Process.Signal(unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		s.wait(10 * time.Second)
	}
	if dev := infos[withDevice].device; dev.Signal(unix.SIGKILL) != nil || !dev.WaitGone(5*time.Second) {
		t.Fatalf("SIGKILL device %d failed", dev.PID)
	}
	tables := strings.Join(h.nftTables(t), " ")
	for _, s := range []*started{killed, withDevice} {
		if !infos[s].command.Alive() || !strings.Contains(tables, "faultbox-run-"+s.name) {
			t.Fatalf("run %s: nothing left to remove: command alive %v, nft tables %v", s.name, infos[s].command.Alive(), tables)
		}
	}

	r := iso.fb(60*time.Second, "detach", "--all")
	if r.Code != 0 {
		t.Fatalf("detach --all: %s", r)
	}
	t.Logf("detach --all: %s", r.Stdout)
	tables = strings.Join(h.nftTables(t), " ")
	for _, s := range []*started{killed, withDevice} {
		if !strings.Contains(r.Stdout, "removed run "+s.name+" (") {
			t.Errorf("detach --all does not say it removed run %s: %s", s.name, r)
		}
		if info := infos[s]; !info.command.WaitGone(5 * time.Second) {
			t.Errorf("run %s: its command %d survived detach --all", s.name, info.command.PID)
		}
		if _, err := os.Stat(h.path(device.Dir(s.name))); err == nil {
			t.Errorf("run %s: %s is left", s.name, device.Dir(s.name))
		}
		if strings.Contains(tables, "faultbox-run-"+s.name) {
			t.Errorf("run %s: its nft table is left: %s", s.name, tables)
		}
	}
	if strings.Contains(r.Stdout, going.name) {
		t.Errorf("detach --all removed the run still going: %s", r)
	}
	if info := going.info(); info != infos[going] {
		t.Errorf("the run still going changed: %+v, was %+v", info, infos[going])
	}
	if err := going.cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := going.wait(30 * time.Second); got != 128+15 {
		t.Errorf("the run still going ended %d, want 143; stderr:\n%s", got, going.stderr())
	}
	// Now that no run is left on the host side, nothing of any may be there.
	for s, info := range infos {
		h.assertGone(t, s.name, &info)
	}
	if r := iso.fb(60*time.Second, "detach", "--all"); r.Code != 0 || !strings.Contains(r.Stdout, "nothing to remove") {
		t.Errorf("a second detach --all: %s", r)
	}
}

// TestRun_StatusAndApplyByName: while it runs, a run is a device like a
// lab or an attach: `faultbox status --name N` shows it (kind, command,
// profile), with none of the device's start-up probes among its flows a
// second after the start, and `faultbox apply --name N` switches its
// profile under the running command: a fetch from the host side that
// passthrough let through at once takes what the gprs link model says
// once gprs is applied.
func TestRun_StatusAndApplyByName(t *testing.T) {
	h := newHostSide(t, true)
	dir := t.TempDir()
	const size = 20000
	fetch := "curl " + shellQuote(curlWrites) + fmt.Sprintf(" http://%s/blob?n=%d", netip.AddrPortFrom(runHost4, runHostPort), size)
	waitFor := func(file string) string { // bounded: 60 s
		return fmt.Sprintf("for i in $(seq 1200); do [ -e %s/%s ] && break; sleep 0.05; done", dir, file)
	}
	script := fmt.Sprintf("echo started && %[2]s && %[3]s > %[1]s/before.tmp && mv %[1]s/before.tmp %[1]s/before && %[4]s && %[3]s > %[1]s/after",
		dir, waitFor("go1"), fetch, waitFor("go2"))
	name := fblab.UniqueName("tr")
	s := h.start(t, name, "--profile", "passthrough", "--seed", gprsSeed, "--", "sh", "-c", script)
	info := s.info()
	signal := func(file string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, file), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	type status struct {
		Kind      string        `json:"kind"`
		Placement string        `json:"placement"`
		Source    string        `json:"profile_source"`
		Flows     flow.Counters `json:"flows"`
	}
	statusOf := func() status {
		t.Helper()
		r := fb(30*time.Second, "status", "--name", name, "--json")
		var st status
		if err := json.Unmarshal([]byte(r.Stdout), &st); r.Code != 0 || err != nil {
			t.Fatalf("faultbox status --name %s --json: %v: %s", name, err, r)
		}
		return st
	}
	time.Sleep(time.Second) // a start-up probe's packet still on its way would arrive by now
	if st := statusOf(); st.Kind != "run" || st.Source != "passthrough" || !strings.Contains(st.Placement, `command "sh -c`) {
		t.Errorf("status: %+v, want a run of sh -c with passthrough", st)
	} else if st.Flows.Created != 0 || st.Flows.Active != 0 {
		t.Errorf("status before the command sent anything: flows %+v, want none (the start-up probes are not counted)", st.Flows)
	}
	if r := fb(30*time.Second, "status", "--name", name); r.Code != 0 || !strings.Contains(r.Stdout, name) {
		t.Errorf("faultbox status --name %s: %s", name, r)
	}
	signal("go1")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "before")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fetch under passthrough did not end within 60 s; stderr:\n%s", s.stderr())
		}
	}
	if r := fb(30*time.Second, "apply", "--name", name, "gprs", "--seed", gprsSeed); r.Code != 0 || !strings.Contains(r.Stdout, "profile gprs applied") {
		t.Fatalf("faultbox apply --name %s gprs: %s", name, r)
	}
	if st := statusOf(); st.Source != "gprs" {
		t.Errorf("status after apply: profile %q, want gprs", st.Source)
	}
	signal("go2")
	if got := s.wait(60 * time.Second); got != 0 {
		t.Fatalf("the command exited %d; stderr:\n%s", got, s.stderr())
	}
	took := func(file string) time.Duration {
		t.Helper()
		data, _ := os.ReadFile(filepath.Join(dir, file))
		var secs float64
		var code int
		if _, err := fmt.Sscan(string(data), &secs, &code); err != nil || code != 200 {
			t.Fatalf("curl printed %q (%v) %s, want its time and 200", data, err, file)
		}
		return time.Duration(secs * float64(time.Second))
	}
	before, after, model := took("before"), took("after"), gprsFetch(getHeaders, size+respHeaders)
	t.Logf("fetch under passthrough %v, after apply gprs %v; the gprs link model says %v",
		before.Round(time.Millisecond), after.Round(time.Millisecond), model.Round(time.Millisecond))
	if before > 1500*time.Millisecond {
		t.Errorf("took %v under passthrough, want well under the gprs model", before)
	}
	if after < model-500*time.Millisecond || after > model+3*time.Second {
		t.Errorf("took %v after apply gprs, want %v within -0.5 s/+3 s", after.Round(time.Millisecond), model.Round(time.Millisecond))
	}
	h.assertGone(t, name, &info)
}

// TestRun_ServesTheAPIOnTCPWithItsToken: a run serves the control API as
// a lab or an attach does. With --api on the host side's loopback,
// faultbox run prints where and the bearer token once (on stderr, which
// is the command's too), keeps the token in api.token (0600), and over
// TCP its status says it is the run; a wrong token gets 401.
func TestRun_ServesTheAPIOnTCPWithItsToken(t *testing.T) {
	h := newHostSide(t, true)
	name := fblab.UniqueName("tr")
	s := h.start(t, name, "--profile", "passthrough", "--api", "127.0.0.1:0", "--", "sh", "-c", "echo started; exec sleep 300")
	info := s.info()
	var addr, token string
	for _, l := range strings.Split(s.stderr(), "\n") {
		if rest, ok := strings.CutPrefix(l, "api http://"); ok {
			fmt.Sscanf(strings.ReplaceAll(rest, ",", " "), "%s (bearer token %s", &addr, &token)
		}
	}
	addr = strings.TrimSuffix(addr, "/v1/")
	if !strings.HasPrefix(addr, "127.0.0.1:") || len(token) != 64 {
		t.Fatalf("faultbox run --api printed address %q, token %q; want 127.0.0.1:PORT and a token; stderr:\n%s", addr, token, s.stderr())
	}
	if kept, err := os.ReadFile(h.path(device.TokenPath(name))); err != nil || strings.TrimSpace(string(kept)) != token {
		t.Errorf("api.token holds %q (%v), want the printed token", kept, err)
	}
	if fi, err := os.Stat(h.path(device.TokenPath(name))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("api.token: %v %v, want mode 0600", fi, err)
	}
	curl := func(token string) testenv.Result {
		return testenv.Run(30*time.Second, h.via[0], append(h.via[1:], "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}",
			"-H", "Authorization: Bearer "+token, "http://"+addr+"/v1/status")...)
	}
	r := curl(token)
	i := strings.LastIndexByte(r.Stdout, '\n')
	body, code := r.Stdout[:max(i, 0)], r.Stdout[i+1:]
	var st struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
		API  string `json:"api"`
	}
	if r.Code != 0 || code != "200" || json.Unmarshal([]byte(body), &st) != nil || st.Name != name || st.Kind != "run" || st.API != addr {
		t.Errorf("GET /v1/status over TCP with the token: %s; want 200 with run %s, api %s", r, name, addr)
	}
	if r := curl("guess"); r.Code != 0 || !strings.HasSuffix(r.Stdout, "\n401") {
		t.Errorf("GET /v1/status over TCP with a wrong token: %s; want 401", r)
	}
	if err := s.cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := s.wait(30 * time.Second); got != 128+15 {
		t.Errorf("faultbox run exited %d after SIGTERM, want 143; stderr:\n%s", got, s.stderr())
	}
	h.assertGone(t, name, &info)
}
