package e2e

// The scenarios of docs/field-failures.md run end to end through the CLI,
// as a user runs them: `faultbox scenario run NAME --report DIR --json`. Each
// must exit 0 with verdict.json saying "reproduced", in under 30 s, and
// leave no lab behind; run with its fault off, one must say "not
// reproduced" and exit 1. FAULTBOX_SCENARIO_REPEAT=5 runs each 5 times in a
// row (the acceptance check; not in CI). The tests are parallel and
// mostly wait on kernel timers: -parallel 8 runs them all at once (the
// default is the number of CPUs).
//
//	go test ./e2e/ -run Scenario -v -parallel 8

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/faultbox/faultbox/internal/testenv"
)

// scenarioWall is the wall-time bound of one run (the limit).
const scenarioWall = 30 * time.Second

// scenarioRun is one finished `faultbox scenario run`.
type scenarioRun struct {
	testenv.Result
	Dir     string
	Wall    time.Duration
	Lab     string
	Verdict scenarioVerdict
}

type scenarioVerdict struct {
	Scenario string `json:"scenario"`
	Outcome  string `json:"outcome"`
	Expected string `json:"expected"`
	Reason   string `json:"reason"`
	Pass     bool   `json:"pass"`
	Seed     uint64 `json:"seed"`
	Kernel   string `json:"kernel"`
	Runs     []struct {
		Name    string `json:"name"`
		Outcome string `json:"outcome"`
		Reason  string `json:"reason"`
	} `json:"runs"`
	Timeline []struct {
		At    int64  `json:"t_ns"`
		Actor string `json:"actor"`
		Text  string `json:"text"`
	} `json:"timeline"`
	Sysctls     map[string]string `json:"sysctls"`
	CaptureFile string            `json:"capture_file"`
}

var labNameRE = regexp.MustCompile(`lab (sc[0-9a-f]{6}) up`)

// runScenario runs one scenario through the CLI with --json and a report
// directory of the test's, and checks what every run must do: verdict.json
// on stdout equal to the file, report.html written, the lab removed.
func runScenario(t *testing.T, name string, args ...string) scenarioRun {
	t.Helper()
	return runScenarioIn(t, t.TempDir(), name, args...)
}

// runScenarioIn is runScenario with the report in dir.
func runScenarioIn(t *testing.T, dir, name string, args ...string) scenarioRun {
	t.Helper()
	testenv.RequireNetAdmin(t)
	argv := append([]string{"scenario", "run", name, "--report", dir, "--json"}, args...)
	start := time.Now()
	r := scenarioRun{Result: fb(3*scenarioWall, argv...), Dir: dir}
	r.Wall = time.Since(start)
	if m := labNameRE.FindStringSubmatch(r.Stderr); m != nil {
		r.Lab = m[1]
		t.Cleanup(func() { fb(60*time.Second, "lab", "down", "--name", r.Lab) }) // in case the run left it
	}
	if r.Code != 0 && r.Code != 1 {
		t.Fatalf("faultbox %s: %s", strings.Join(argv, " "), r)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &r.Verdict); err != nil {
		t.Fatalf("scenario %s --json: stdout is not the verdict: %v\n%s", name, err, r)
	}
	file, err := os.ReadFile(filepath.Join(dir, "verdict.json"))
	if err != nil || strings.TrimSpace(string(file)) != strings.TrimSpace(r.Stdout) {
		t.Errorf("scenario %s: --json output differs from verdict.json (%v)", name, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "report.html")); err != nil || fi.Size() < 1000 {
		t.Errorf("scenario %s: report.html missing or tiny: %v", name, err)
	}
	if strings.ContainsAny(r.Stderr, "\r\x1b") {
		t.Errorf("scenario %s: progress drawn on stderr although it is not a terminal: %q", name, r.Stderr)
	}
	if r.Lab == "" {
		t.Errorf("scenario %s: no lab name in its output:\n%s", name, r.Stderr)
	} else {
		assertNoTrace(t, r.Lab)
	}
	t.Logf("%s: exit %d in %s: %s: %s", name, r.Code, r.Wall.Round(time.Millisecond), r.Verdict.Outcome, r.Verdict.Reason)
	return r
}

// mustReproduce runs a scenario with its fault on and checks it exits 0
// with "reproduced", within the wall-time bound.
func mustReproduce(t *testing.T, name string) scenarioRun {
	t.Helper()
	return mustReproduceIn(t, t.TempDir(), name)
}

func mustReproduceIn(t *testing.T, dir, name string) scenarioRun {
	t.Helper()
	r := runScenarioIn(t, dir, name)
	if r.Code != 0 || r.Verdict.Outcome != "reproduced" || !r.Verdict.Pass {
		t.Fatalf("scenario %s: exit %d, outcome %q (pass %v), want 0 and reproduced: %s\n%s",
			name, r.Code, r.Verdict.Outcome, r.Verdict.Pass, r.Verdict.Reason, r.Stderr)
	}
	if r.Wall > scenarioWall {
		t.Errorf("scenario %s took %s, over the %s bound", name, r.Wall.Round(time.Millisecond), scenarioWall)
	}
	if r.Verdict.CaptureFile == "" {
		t.Errorf("scenario %s: the report has no capture", name)
	}
	if r.Verdict.Seed == 0 || r.Verdict.Kernel == "" {
		t.Errorf("scenario %s: seed %d, kernel %q: both must be recorded", name, r.Verdict.Seed, r.Verdict.Kernel)
	}
	return r
}

// mustNotReproduce runs a scenario with its fault off (--fault=false) and
// checks it exits 1 with "not reproduced", and that its summary says so.
func mustNotReproduce(t *testing.T, name string) scenarioRun {
	t.Helper()
	r := runScenario(t, name, "--fault=false")
	if r.Code != 1 || r.Verdict.Outcome != "not reproduced" || r.Verdict.Pass {
		t.Errorf("scenario %s --fault=false: exit %d, outcome %q, pass %v; want 1, not reproduced, false: %s",
			name, r.Code, r.Verdict.Outcome, r.Verdict.Pass, r.Verdict.Reason)
	}
	if !strings.Contains(r.Stderr, "NOT REPRODUCED") {
		t.Errorf("scenario %s --fault=false: the summary does not say NOT REPRODUCED:\n%s", name, r.Stderr)
	}
	return r
}

// repeat is how many times each scenario runs in a row.
func repeat(t *testing.T) int {
	s := os.Getenv("FAULTBOX_SCENARIO_REPEAT")
	if s == "" {
		return 1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 20 {
		t.Fatalf("FAULTBOX_SCENARIO_REPEAT=%q: want 1 to 20", s)
	}
	return n
}

// shared runs of a scenario, for tests that only inspect a report: one
// run serves every test that holds it at the time; the last one to finish
// removes its report, and a later test runs the scenario again.
var (
	sharedMu   sync.Mutex
	sharedRuns = map[string]*sharedRun{}
)

type sharedRun struct {
	mu    sync.Mutex
	r     scenarioRun
	valid bool
	dir   string
	users int
}

// reproduceShared is mustReproduce, reusing the run of another test that
// is still holding it.
func reproduceShared(t *testing.T, name string) scenarioRun {
	t.Helper()
	sharedMu.Lock()
	s := sharedRuns[name]
	if s == nil {
		s = &sharedRun{}
		sharedRuns[name] = s
	}
	sharedMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock() // also when mustReproduceIn fails the test
	s.users++
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.users--; s.users == 0 {
			os.RemoveAll(s.dir)
			s.valid = false
		}
	})
	if !s.valid {
		dir, err := os.MkdirTemp("", "fbx-e2e-scenario-")
		if err != nil {
			t.Fatal(err)
		}
		s.dir = dir
		s.r = mustReproduceIn(t, dir, name)
		s.valid = !t.Failed()
	}
	return s.r
}

func timelineHas(r scenarioRun, substr string) bool {
	for _, e := range r.Verdict.Timeline {
		if strings.Contains(e.Text, substr) {
			return true
		}
	}
	return false
}

func runNamed(r scenarioRun, name string) (outcome, reason string) {
	for _, run := range r.Verdict.Runs {
		if run.Name == name {
			return run.Outcome, run.Reason
		}
	}
	return "", ""
}

// TestScenario_ASAOffByOne: the ASA's FIN + RST at RCV.NXT-1 on the wire,
// which case the server's kernel fell into, and a stuck socket in the
// variants that hang every stack.
func TestScenario_ASAOffByOne(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		var r scenarioRun
		if i == 0 {
			r = reproduceShared(t, "asa-off-by-one")
		} else {
			r = mustReproduce(t, "asa-off-by-one")
		}
		if len(r.Verdict.Runs) != 3 {
			t.Fatalf("run %d: %d variants, want 3", i, len(r.Verdict.Runs))
		}
		if !timelineHas(r, "off by -1") || !timelineHas(r, "off by -2") {
			t.Errorf("run %d: the timeline does not show the off-by-one RSTs", i)
		}
		if o, why := runNamed(r, "offset -2, FIN forwarded"); o != "reproduced" || !strings.Contains(why, "CLOSE-WAIT") {
			t.Errorf("run %d: offset -2: %s: %s; want stuck in CLOSE-WAIT", i, o, why)
		}
		// Logged, not asserted: whether a RST at RCV.NXT-1 in CLOSE-WAIT
		// ends the socket is the server kernel's choice (Linux 6 accepts
		// it; the 2015 stacks hung), so the scenario sets this variant no
		// expected outcome and only reports which case the kernel fell into.
		o, why := runNamed(r, "offset -1, FIN forwarded")
		t.Logf("run %d: this kernel (%s), the exact 2015 sequence: %s: %s", i, r.Verdict.Kernel, o, why)
		if r.Verdict.Sysctls["server: net.ipv4.tcp_retries2"] != "4" {
			t.Errorf("run %d: sysctls %v: tcp_retries2 not recorded", i, r.Verdict.Sysctls)
		}
	}
}

// TestScenario_ASAStuckSend: a server writing to a vanished client keeps
// its connection until tcp_retries2; SO_SNDTIMEO ends the application's
// wait, TCP_USER_TIMEOUT the connection.
func TestScenario_ASAStuckSend(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "asa-stuck-send")
		if o, why := runNamed(r, "no send timeout"); o != "reproduced" || !strings.Contains(why, "connection timed out") {
			t.Errorf("run %d: no send timeout: %s: %s", i, o, why)
		}
		if _, why := runNamed(r, "TCP_USER_TIMEOUT 3s"); !strings.Contains(why, "removed its socket") {
			t.Errorf("run %d: TCP_USER_TIMEOUT: %s", i, why)
		}
	}
}

// TestScenario_FinWait2: vanishing keep-alive clients leave the server's
// sockets in FIN_WAIT_2 until tcp_fin_timeout; shut-down ones stay.
func TestScenario_FinWait2(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "fin-wait-2")
		if _, why := runNamed(r, "shutdown() only"); !strings.Contains(why, "still in FIN-WAIT-2") {
			t.Errorf("run %d: shutdown() only: %s", i, why)
		}
	}
}

// TestScenario_NATIdle: an idle connection forgotten by the device hangs
// (silent) or is reset (rst).
func TestScenario_NATIdle(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "nat-idle")
		for _, arm := range []string{"silent drop", "rst to both"} {
			if o, why := runNamed(r, arm); o != "reproduced" {
				t.Errorf("run %d: %s: %s: %s", i, arm, o, why)
			}
		}
	}
}

// TestScenario_LingeringClose: the early 401 is lost to the RST without
// lingering close and delivered with it.
func TestScenario_LingeringClose(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "lingering-close")
		if o, _ := runNamed(r, "abrupt close"); o != "reproduced" {
			t.Errorf("run %d: abrupt close: %s", i, o)
		}
		if o, why := runNamed(r, "lingering close"); o != "not reproduced" || !strings.Contains(why, "got the 401") {
			t.Errorf("run %d: lingering close: %s: %s", i, o, why)
		}
	}
}

// TestScenario_SACKSeqRandomization: untranslated SACK blocks behind a
// randomizing box collapse a lossy download; the translating box and the
// client without SACK do not.
func TestScenario_SACKSeqRandomization(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "sack-seq-randomization")
		if o, why := runNamed(r, "SACK blocks left"); o != "reproduced" || !strings.Contains(why, "SACK blocks discarded") {
			t.Errorf("run %d: SACK blocks left: %s: %s", i, o, why)
		}
		for _, arm := range []string{"SACK blocks translated", "tcp_sack=0 on the client"} {
			if o, why := runNamed(r, arm); o != "not reproduced" {
				t.Errorf("run %d: %s: %s: %s", i, arm, o, why)
			}
		}
		if r.Verdict.Sysctls["client: net.ipv4.tcp_sack"] != "0" {
			t.Errorf("run %d: sysctls %v: tcp_sack=0 not recorded", i, r.Verdict.Sysctls)
		}
	}
}

// TestScenario_WindowScaleMangling: a SYN-ACK whose window scale is
// rewritten or stripped leaves the client's upload crawling.
func TestScenario_WindowScaleMangling(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "window-scale-mangling")
		if o, why := runNamed(r, "clean path"); o != "not reproduced" {
			t.Errorf("run %d: clean path: %s: %s", i, o, why)
		}
		for _, arm := range []string{"SYN-ACK shift rewritten to 0", "SYN-ACK option stripped"} {
			if o, why := runNamed(r, arm); o != "reproduced" || !strings.Contains(why, "SYN-ACK mangled") {
				t.Errorf("run %d: %s: %s: %s", i, arm, o, why)
			}
		}
	}
}

// TestScenario_ECNBlackhole: dropped ECN-setup SYNs cost a SYN timeout
// with the fallback and the connection without it.
func TestScenario_ECNBlackhole(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "ecn-blackhole")
		if o, why := runNamed(r, "ECN requested"); o != "reproduced" || !strings.Contains(why, "without ECE and CWR") {
			t.Errorf("run %d: ECN requested: %s: %s", i, o, why)
		}
		if o, why := runNamed(r, "ECN requested, fallback off"); o != "reproduced" || !strings.Contains(why, "never connected") {
			t.Errorf("run %d: fallback off: %s: %s", i, o, why)
		}
		for _, arm := range []string{"ECN requested, clean path", "ECN not requested (default)"} {
			if o, why := runNamed(r, arm); o != "not reproduced" {
				t.Errorf("run %d: %s: %s: %s", i, arm, o, why)
			}
		}
	}
}

// TestScenario_TFOBlackhole: dropped Fast Open SYNs cost a SYN timeout
// per connection; a black-holed connection hangs, and the kernel's
// detection, when on, pauses Fast Open.
func TestScenario_TFOBlackhole(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "tfo-blackhole")
		if o, why := runNamed(r, "clean path"); o != "not reproduced" {
			t.Errorf("run %d: clean path: %s: %s", i, o, why)
		}
		if o, why := runNamed(r, "SYN-data dropped"); o != "reproduced" || !strings.Contains(why, "tried again every time") {
			t.Errorf("run %d: SYN-data dropped: %s: %s", i, o, why)
		}
		if o, why := runNamed(r, "connection black-holed, detection on"); o != "reproduced" || !strings.Contains(why, "detected the black hole") {
			t.Errorf("run %d: detection on: %s: %s", i, o, why)
		}
		if o, why := runNamed(r, "connection black-holed, detection off (default)"); o != "reproduced" || !strings.Contains(why, "no blackhole detection") {
			t.Errorf("run %d: detection off: %s: %s", i, o, why)
		}
	}
}

// TestScenario_PMTUDBlackHole: behind a 1400-byte link with ICMP
// filtered a 40 kB answer hangs over IPv4 and IPv6; clamping the MSS,
// tcp_mtu_probing=1 and the router's ICMP each get it through.
func TestScenario_PMTUDBlackHole(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "pmtud-black-hole")
		if o, why := runNamed(r, "black hole"); o != "reproduced" || !strings.Contains(why, "IPv4: ") || !strings.Contains(why, "IPv6: ") {
			t.Errorf("run %d: black hole: %s: %s", i, o, why)
		}
		for arm, evidence := range map[string]string{
			"MSS clamp":         "MSS of 2 SYNs clamped",
			"tcp_mtu_probing=1": "found the black hole",
			"ICMP allowed":      "ICMP frag needed, mtu 1400",
		} {
			if o, why := runNamed(r, arm); o != "not reproduced" || !strings.Contains(why, evidence) {
				t.Errorf("run %d: %s: %s: %s; want the answers through, with %q", i, arm, o, why, evidence)
			}
		}
		if !timelineHas(r, "ICMP packet too big, mtu 1400") {
			t.Errorf("run %d: the timeline does not show the ICMPv6 packet too big", i)
		}
		t.Logf("run %d: tcp_mtu_probing=1 on %s: %s", i, r.Verdict.Kernel, func() string { _, why := runNamed(r, "tcp_mtu_probing=1"); return why }())
	}
}

// TestScenario_ConntrackFull: behind a full connection table the tracked
// connection keeps working while new clients connect only on retransmitted
// SYNs; the report draws their connect times.
func TestScenario_ConntrackFull(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		dir := t.TempDir()
		r := mustReproduceIn(t, dir, "conntrack-full")
		if o, why := runNamed(r, "table full"); o != "reproduced" || !strings.Contains(why, "only on a retransmission") || !strings.Contains(why, "requests answered, 0 of its packets dropped") {
			t.Errorf("run %d: table full: %s: %s", i, o, why)
		}
		if o, why := runNamed(r, "room for all"); o != "not reproduced" || !strings.Contains(why, "21 connected on their first SYN") {
			t.Errorf("run %d: room for all: %s: %s", i, o, why)
		}
		if !strings.Contains(r.Verdict.Reason, "SYN retransmissions at +1.0") {
			t.Errorf("run %d: the verdict does not give the kernel's SYN schedule: %s", i, r.Verdict.Reason)
		}
		page, err := os.ReadFile(filepath.Join(dir, "report.html"))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := html.Parse(bytes.NewReader(page))
		if err != nil {
			t.Fatal(err)
		}
		chart := nodeByID(doc, "connect-times")
		if chart == nil || len(findNodes(chart, func(n *html.Node) bool { return n.Data == "rect" && hasClass(n, "bar") })) < 3 {
			t.Errorf("run %d: the report has no connect-time chart with its steps", i)
		}
	}
}

// TestScenario_CloudIdleTimeouts: each vendor's device forgets the idle
// connection its own way (NLB resets the client only, Azure's TCP reset
// both ends, the others hang), and TCP keepalive below the timeout keeps
// every connection.
func TestScenario_CloudIdleTimeouts(t *testing.T) {
	t.Parallel()
	for i := range repeat(t) {
		r := mustReproduce(t, "cloud-idle-timeouts")
		for arm, evidence := range map[string]string{
			"AWS NLB":                     "reset the client; the server's socket: ESTAB, unaware",
			"Azure LB":                    "hung",
			"Azure LB, TCP reset on idle": "reset the client and the server",
			"Cloud NAT":                   "hung",
			"Cloud NAT, half-closed":      "hung",
		} {
			if o, why := runNamed(r, arm); o != "reproduced" || !strings.Contains(why, evidence) {
				t.Errorf("run %d: %s: %s: %s; want %q", i, arm, o, why, evidence)
			}
			if o, why := runNamed(r, arm+" + keepalive"); o != "not reproduced" || !strings.Contains(why, "keepalive probes kept the device's flow alive") {
				t.Errorf("run %d: %s + keepalive: %s: %s", i, arm, o, why)
			}
		}
	}
}

// TestScenario_FaultOffSaysNotReproduced: the same scenarios with their
// fault off (--fault=false) must say "not reproduced" and exit 1: a
// device fault (nat-idle: passthrough), a server fault (lingering-close:
// both servers linger), and the devices that break TCP's extensions
// (passthrough: no mangling, no loss).
func TestScenario_FaultOffSaysNotReproduced(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"nat-idle", "lingering-close", "sack-seq-randomization", "window-scale-mangling", "ecn-blackhole", "tfo-blackhole", "pmtud-black-hole", "conntrack-full", "cloud-idle-timeouts"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for range repeat(t) {
				mustNotReproduce(t, name)
			}
		})
	}
}

// TestScenario_ReportRendersInChromium: asa-off-by-one's report.html, as
// headless Chromium builds it, has the verdict, the three variants, a
// ladder with the device's injected RSTs and a socket chart, and paints.
func TestScenario_ReportRendersInChromium(t *testing.T) {
	t.Parallel()
	bin := testenv.Chromium(t)
	r := reproduceShared(t, "asa-off-by-one")
	url := "file://" + filepath.Join(r.Dir, "report.html")

	dom := testenv.RunChromium(t, bin, "--dump-dom", url)
	doc, err := html.Parse(bytes.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	v := nodeByID(doc, "verdict")
	if v == nil || attrOf(v, "data-outcome") != "reproduced" || attrOf(v, "data-pass") != "true" {
		t.Errorf("rendered #verdict: %v", v != nil)
	}
	if n := len(findNodes(doc, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "run") })); n != 3 {
		t.Errorf("rendered A/B table has %d runs, want 3", n)
	}
	ladder := nodeByID(doc, "ladder")
	if ladder == nil || ladder.Data != "svg" {
		t.Fatal("rendered page has no svg#ladder")
	}
	rsts := findNodes(ladder, func(n *html.Node) bool {
		return n.Data == "g" && attrOf(n, "data-injected") == "true" && strings.HasPrefix(attrOf(n, "data-flags"), "R")
	})
	if len(rsts) != 3 {
		t.Errorf("rendered ladder shows %d injected RSTs, want 3 (one per variant)", len(rsts))
	}
	if s := nodeByID(doc, "sockets"); s == nil || s.Data != "svg" {
		t.Error("rendered page has no svg#sockets")
	}
	if n := len(findNodes(doc, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "entry") })); n < 10 {
		t.Errorf("rendered timeline has %d entries", n)
	}

	img := testenv.Screenshot(t, bin, url, filepath.Join(t.TempDir(), "report.png"), 1400, 2400)
	if n := testenv.Colours(img, 16); n < 16 {
		t.Errorf("screenshot has %d distinct colours: blank or unstyled", n)
	}
}

func nodeByID(n *html.Node, id string) *html.Node {
	found := findNodes(n, func(x *html.Node) bool { return attrOf(x, "id") == id })
	if len(found) == 0 {
		return nil
	}
	return found[0]
}

func findNodes(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(x *html.Node) {
		if x.Type == html.ElementNode && match(x) {
			out = append(out, x)
		}
		for c := x.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return strings.Contains(" "+attrOf(n, "class")+" ", " "+class+" ")
}
