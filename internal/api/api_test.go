package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/api/apitest"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/testenv"
)

// rig is a device in memory and an HTTP client of its unix socket.
type rig struct {
	t   *testing.T
	d   *apitest.Device
	hc  *http.Client
	url string // base URL: the socket, or TCP
	tok string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	return newRigState(t, device.State{Name: "t"})
}

// newRigState is newRig for a device with the state's name and API
// fields.
func newRigState(t *testing.T, st device.State) *rig {
	t.Helper()
	d, err := apitest.StartState(t.TempDir(), st, apitest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.Socket)
		}}}
	return &rig{t: t, d: d, hc: hc, url: "http://faultbox"}
}

// response is an answer, its body read.
type response struct {
	code int
	hdr  http.Header
	body string
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.code, r.body) }

// errorText is the "error" of a JSON error body.
func (r response) errorText() string {
	var e struct{ Error string }
	json.Unmarshal([]byte(r.body), &e)
	return e.Error
}

func (g *rig) do(method, path, contentType, body string, hdr ...string) response {
	g.t.Helper()
	req, err := http.NewRequest(method, g.url+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if g.tok != "" {
		req.Header.Set("Authorization", "Bearer "+g.tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, hdr: resp.Header, body: string(data)}
}

func (g *rig) want(r response, code int, text string) {
	g.t.Helper()
	if r.code != code || !strings.Contains(r.body, text) {
		g.t.Fatalf("got %s\nwant %d with %q", r, code, text)
	}
}

func (g *rig) decode(r response, v any) {
	g.t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		g.t.Fatalf("%v: %s", err, r)
	}
}

const base = "name: base\nbehaviors:\n  - type: log\n    name: seen\n"

func TestAPI_EveryRoute(t *testing.T) {
	g := newRig(t)
	g.want(g.do("PUT", "/v1/profile?source=base.yaml&seed=7", "application/yaml", base), 200, `"name": "base"`)
	var st client.Status
	g.decode(g.do("GET", "/v1/status", "", ""), &st)
	if st.Profile != "base" || st.Seed != 7 || st.Source != "base.yaml" || st.Version != 2 || len(st.Ports) != 2 || st.Behaviors[0].Name != "seen" {
		t.Fatalf("status %+v", st)
	}
	r := g.do("GET", "/v1/profile?format=yaml", "", "")
	g.want(r, 200, base)
	if r.hdr.Get("ETag") != `"2"` || r.hdr.Get("Content-Type") != "application/yaml" {
		t.Fatalf("headers %v", r.hdr)
	}
	r = g.do("POST", "/v1/behaviors", "application/json", `{"type": "delay", "name": "slow", "delay": "20ms"}`)
	g.want(r, 201, `"name": "slow"`)
	if r.hdr.Get("Location") != "/v1/behaviors/slow" {
		t.Fatalf("Location %q", r.hdr.Get("Location"))
	}
	g.want(g.do("POST", "/v1/behaviors?index=0", "application/yaml", "type: drop\nmatch: {port: 81}\n"), 201, `"match": "port: 81"`)
	var bs []client.Behavior
	g.decode(g.do("GET", "/v1/behaviors", "", ""), &bs)
	if len(bs) != 3 || bs[0].Name != "drop" || bs[1].Name != "seen" || bs[2].Name != "slow" {
		t.Fatalf("behaviors %+v", bs)
	}
	g.want(g.do("PATCH", "/v1/behaviors/slow", "application/json", `{"delay": "30ms"}`, "If-Match", `"4"`), 200, `"type": "delay"`)
	g.want(g.do("GET", "/v1/behaviors/slow", "", ""), 200, `"name": "slow"`)
	g.want(g.do("GET", "/v1/profile?format=yaml", "", ""), 200, "  - type: delay\n    name: slow\n    delay: 30ms\n")
	r = g.do("DELETE", "/v1/behaviors/drop", "", "")
	if r.code != 204 || r.body != "" {
		t.Fatalf("DELETE: %s", r)
	}
	if _, err := g.d.RoundTrip(40000, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var fs []client.Flow
	g.decode(g.do("GET", "/v1/flows?order=recent&n=5", "", ""), &fs)
	if len(fs) != 1 || fs[0].ClientEnd.Bytes != 100 || fs[0].Client.Port() != 40000 {
		t.Fatalf("flows %+v", fs)
	}
	r = g.do("GET", "/v1/events?from=0", "", "")
	if r.code != 200 || r.hdr.Get("Content-Type") != "application/x-ndjson" || strings.Count(r.body, "\n") != 1 || !strings.Contains(r.body, `"note":"log"`) {
		t.Fatalf("events: %s", r)
	}
	g.want(g.do("GET", "/v1/events?tail=0", "", ""), 200, "")
	g.want(g.do("GET", "/v1/capture", "", ""), 200, `"active": false`)
	g.want(g.do("PUT", "/v1/profile?builtin=block-port-81", "", ""), 200, `"source": "block-port-81"`)
	g.want(g.do("POST", "/v1/shutdown", "", ""), 202, "shutting down")
	select {
	case <-g.d.ShutdownRequested():
	default:
		t.Fatal("shutdown not passed to the device")
	}
}

// Each bad request gets a clear 4xx, changes nothing, and the device goes
// on forwarding throughout.
func TestAPI_BadInputChangesNothingAndTrafficFlows(t *testing.T) {
	g := newRig(t)
	g.want(g.do("PUT", "/v1/profile?source=base.yaml", "application/yaml", base), 200, "")
	seq := uint32(0)
	forwards := func(after string) {
		t.Helper()
		seq++
		if _, err := g.d.RoundTrip(40000, seq, 5*time.Second); err != nil {
			t.Fatalf("after %s: %v", after, err)
		}
	}
	before := g.do("GET", "/v1/profile", "", "").body
	big := "name: big\nbehaviors: []\n" + strings.Repeat("# padding\n", 110000)
	for _, c := range []struct {
		name, method, path, ctype, body string
		code                            int
		text                            string
	}{
		{"malformed JSON profile", "PUT", "/v1/profile", "application/json", "{\"name\": \"x\",\n \"behaviors\": [}", 400, "malformed JSON: line 2, column 16"},
		{"malformed JSON behavior", "POST", "/v1/behaviors", "application/json", `{"type": "delay",}`, 400, "malformed JSON"},
		{"unknown profile key", "PUT", "/v1/profile", "application/json", `{"name": "x", "behaviors": [], "colour": "red"}`, 400, `request:1: unknown key "colour"`},
		{"unknown behavior parameter", "POST", "/v1/behaviors", "application/json", `{"type": "delay", "dealy": "5ms"}`, 400, `did you mean "delay"?`},
		{"unknown capture field", "POST", "/v1/capture", "application/json", `{"path": "/tmp/x.pcapng", "snaplen": 64}`, 400, `unknown field "snaplen"`},
		{"body over 1 MiB", "PUT", "/v1/profile", "application/yaml", big, 413, "over 1048576 bytes"},
		{"unknown behavior", "POST", "/v1/behaviors", "application/json", `{"type": "latency"}`, 400, `unknown behavior "latency"`},
		{"unknown built-in", "PUT", "/v1/profile?builtin=nope", "", "", 400, `"nope" is not a built-in profile`},
		{"bad profile value", "PUT", "/v1/profile?source=mine.yaml", "application/yaml", "name: x\nbehaviors:\n  - type: delay\n    delay: 5 sec\n", 400, `mine.yaml:4: behaviors[0] (delay): delay: "5 sec" is not a duration`},
		{"empty PUT", "PUT", "/v1/profile", "", "", 400, "no profile"},
		{"patch of no behavior", "PATCH", "/v1/behaviors/fast", "application/json", `{"delay": "1ms"}`, 404, `no behavior called "fast"`},
		{"patch changing the type", "PATCH", "/v1/behaviors/seen", "application/json", `{"type": "drop"}`, 400, "type: cannot change"},
		{"delete of no behavior", "DELETE", "/v1/behaviors/fast", "", "", 404, `no behavior called "fast"`},
		{"taken name", "POST", "/v1/behaviors", "application/json", `{"type": "log", "name": "seen"}`, 409, `already has a behavior called "seen"`},
		{"bad seed", "PUT", "/v1/profile?seed=-1", "application/yaml", base, 400, `seed "-1" is not a whole number`},
		{"unknown query parameter", "GET", "/v1/flows?limit=5", "", "", 400, `unknown query parameter "limit"`},
		{"bad flow order", "GET", "/v1/flows?order=big", "", "", 400, `order "big" is not busiest, oldest or recent`},
		{"wrong method", "POST", "/v1/status", "", "", 405, "method not allowed (allowed: GET)"},
		{"no such route", "GET", "/v1/toxics", "", "", 404, "no such resource"},
		{"relative capture path", "POST", "/v1/capture", "application/json", `{"path": "x.pcapng"}`, 400, "want an absolute path"},
	} {
		r := g.do(c.method, c.path, c.ctype, c.body)
		if r.code != c.code || !strings.Contains(r.errorText(), c.text) {
			t.Errorf("%s: got %s\nwant %d with %q", c.name, r, c.code, c.text)
		}
		if after := g.do("GET", "/v1/profile", "", "").body; after != before {
			t.Fatalf("%s changed the profile:\n%s\n%s", c.name, before, after)
		}
		forwards(c.name)
	}
	// A change made against an old version is refused.
	g.want(g.do("DELETE", "/v1/behaviors/seen", "", "", "If-Match", `"9"`), 412, "at version 2, not 9")

	// Concurrent PUTs: each is applied whole or refused with a 409.
	docs := make([]string, 8)
	var wg sync.WaitGroup
	codes := make([]int, len(docs))
	for i := range docs {
		docs[i] = fmt.Sprintf("name: p%d\nbehaviors:\n  - type: delay\n    name: d%d\n    delay: %dms\n", i, i, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = g.do("PUT", "/v1/profile", "application/yaml", docs[i]).code
		}()
	}
	wg.Wait()
	var prof client.Profile
	g.decode(g.do("GET", "/v1/profile", "", ""), &prof)
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
	var bs []client.Behavior
	g.decode(g.do("GET", "/v1/behaviors", "", ""), &bs)
	// The profile is one of those sent, whole, and the chain is its chain.
	if applied == 0 || prof.Version != uint64(2+applied) || !slices.Contains(docs, prof.YAML) ||
		len(bs) != 1 || bs[0].Name != "d"+strings.TrimPrefix(prof.Name, "p") {
		t.Fatalf("after concurrent PUTs (%v): profile %+v, chain %+v", codes, prof, bs)
	}

	forwards("concurrent PUTs")

	// Every packet sent came through, and the counters say so.
	var st client.Status
	g.decode(g.do("GET", "/v1/status", "", ""), &st)
	if c := st.Counters; c.In != uint64(seq) || c.Out != c.In || c.Dropped != 0 || st.Queued != 0 {
		t.Fatalf("after %d segments: counters %+v, %d queued", seq, c, st.Queued)
	}
}

func TestAPI_TCPNeedsTheToken(t *testing.T) {
	const token = "s3cret-0123456789"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newRigState(t, device.State{Name: "t", API: "127.0.0.1:0", APITokenFile: file})
	st, err := g.d.Status()
	if err != nil {
		t.Fatal(err)
	}
	addr := st.API
	g.url, g.hc = "http://"+addr, &http.Client{Timeout: 10 * time.Second}
	for _, tok := range []string{"", "wrong"} {
		g.tok = tok
		r := g.do("GET", "/v1/status", "", "")
		g.want(r, 401, "missing or wrong bearer token")
		if r.hdr.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
		g.want(g.do("GET", "/metrics", "", ""), 401, "")
	}
	g.tok = token
	g.want(g.do("GET", "/v1/status", "", ""), 200, `"kind": "test"`)
	g.want(g.do("POST", "/v1/capture", "application/json", `{"path": "/tmp/fbx-never.pcapng"}`), 403, "only over the device's unix socket")

	c := client.DialTCP(addr, token)
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = client.DialTCP(addr, "nope").Status(context.Background())
	var ce *client.Error
	if !errorAs(err, &ce) || ce.StatusCode != 401 {
		t.Fatalf("wrong token: %v", err)
	}
}

func errorAs(err error, target **client.Error) bool {
	e, ok := err.(*client.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestAPI_EventsFollow(t *testing.T) {
	g := newRig(t)
	g.want(g.do("PUT", "/v1/profile", "application/yaml", base), 200, "")
	g.d.RoundTrip(40000, 1, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", g.url+"/v1/events?tail=1&follow=1", nil)
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := func() client.Event {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the stream ended: %v", lines.Err())
		}
		var e client.Event
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := next(); e.Seq != 0 || e.TCPSeq != 1 {
		t.Fatalf("first event %+v", e)
	}
	// Events that happen while the stream is open arrive on it.
	go g.d.RoundTrip(40000, 2, 5*time.Second)
	if e := next(); e.Seq != 1 || e.TCPSeq != 2 {
		t.Fatalf("followed event %+v", e)
	}
}

// /metrics passes promtool's checks and counts what the device did.
func TestAPI_MetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool (Debian package prometheus; scripts/deps.sh installs it)")
	}
	g := newRig(t)
	g.want(g.do("PUT", "/v1/profile", "application/yaml", "name: m\nbehaviors:\n  - type: delay\n    name: slow\n    delay: 3ms\n  - type: asa-teardown\n"), 200, "")
	for i := uint32(1); i <= 5; i++ {
		if _, err := g.d.RoundTrip(40000, i, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	r := g.do("GET", "/metrics", "", "")
	if r.code != 200 {
		t.Fatalf("/metrics: %s", r)
	}
	for _, want := range []string{
		"faultbox_packets_in_total 5\n",
		`faultbox_port_packets_total{direction="in",port="client"} 5` + "\n",
		`faultbox_behavior_packets_total{behavior="slow",type="delay",verdict="delayed"} 5` + "\n",
		`faultbox_behavior_trigger_seen_total{behavior="asa-teardown",type="asa-teardown"} 0` + "\n",
		`faultbox_added_delay_seconds_bucket{le="0.005"} 5` + "\n",
		`faultbox_added_delay_seconds_bucket{le="0.0025"} 0` + "\n",
		"faultbox_added_delay_seconds_count 5\n",
		`faultbox_flows{state="established"} 1` + "\n",
		"faultbox_flows_capacity ",
		`faultbox_delay_line_packets{port="server"} 0` + "\n",
		`faultbox_profile_info{profile="m",seed="3",source="request"} 1` + "\n",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader([]byte(r.body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- metrics:\n%s", err, out, r.body)
	}
}

// A profile's source comes from the request (?source=), and may be any
// bytes: /metrics still answers, and the device is still up.
func TestAPI_MetricsTakeAnySource(t *testing.T) {
	g := newRig(t)
	g.want(g.do("PUT", "/v1/profile?source=%ff%fe.yaml", "application/yaml", base), 200, "")
	g.want(g.do("GET", "/metrics", "", ""), 200, "faultbox_profile_info{profile=\"base\",seed=\"3\",source=\"\ufffd.yaml\"} 1")
	g.want(g.do("GET", "/v1/status", "", ""), 200, `"profile": "base"`)
}
