package profiles

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

func TestParse_BehaviorNames(t *testing.T) {
	p, err := Parse("n.yaml", []byte(`name: n
behaviors:
  - type: delay
  - type: delay
    name: delay
  - type: loss
    name: lossy
  - type: delay
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range p.Behaviors {
		names = append(names, s.Name)
	}
	// The written name wins; the made-up ones go around it.
	if got := strings.Join(names, " "); got != "delay-2 delay lossy delay-3" {
		t.Fatalf("names %q", got)
	}
	c, err := p.Chain(1, nil)
	if err != nil || c.Entries[0].Name != "delay-2" {
		t.Fatalf("chain: %v", err)
	}
	for _, tc := range []struct{ doc, want string }{
		{"name: n\nbehaviors:\n  - type: delay\n    name: a\n  - type: loss\n    name: a\n", `n.yaml:6: behaviors[1] (loss): name: "a" is taken by behaviors[0] (line 3)`},
		{"name: n\nbehaviors:\n  - type: delay\n    name: a/b\n", `n.yaml:4: behaviors[0] (delay): name: "a/b" is not a name`},
	} {
		if _, err := Parse("n.yaml", []byte(tc.doc)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("error %v, want prefix %s", err, tc.want)
		}
	}
}

func TestParseBehavior_JSONAndYAML(t *testing.T) {
	for _, doc := range []string{
		`{"type": "delay", "name": "slow", "match": {"direction": "downstream"}, "delay": "50ms"}`,
		"{\n\t\"type\": \"delay\",\n\t\"name\": \"slow\",\n\t\"match\": {\"direction\": \"downstream\"},\n\t\"delay\": \"50ms\"\n}",
		"type: delay\nname: slow\nmatch: {direction: downstream}\ndelay: 50ms\n",
	} {
		s, err := ParseBehavior("request", []byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if s.Name != "slow" || s.Type != "delay" || s.Behavior.(*behaviors.Delay).Delay != 50*time.Millisecond || s.Match.Direction != "downstream" {
			t.Fatalf("%s: %+v", doc, s)
		}
	}
	s, err := ParseBehavior("request", []byte(`{"type": "loss", "p": "1%"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "" {
		t.Fatalf("unnamed: name %q", s.Name)
	}
}

func TestParseBehavior_Errors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"type": "delay", "dely": "5ms"}`, `request:1: behavior (delay): unknown parameter "dely"; did you mean "delay"?`},
		{"{\"type\": \"delay\",\n \"delay\": \"5 sec\"}", `request:2: behavior (delay): delay: "5 sec" is not a duration`},
		{`{"type": "latency"}`, `request:1: behavior: type: unknown behavior "latency"`},
		{`{"delay": "5ms"}`, `request:1: behavior: type is missing`},
		{`["delay"]`, `request:1: expected a mapping, found a list`},
		{``, `request: is empty`},
		{"{\"type\": \"delay\",\n \"jitter\": \"-1ms\"}", `request:2: behavior (delay): jitter: "-1ms" is negative`},
	} {
		_, err := ParseBehavior("request", []byte(tc.doc))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s:\n got  %v\n want %s...", tc.doc, err, tc.want)
		}
	}
}

func TestSpecPatch_SetsSomeKeysKeepsTheRest(t *testing.T) {
	s, err := ParseBehavior("request", []byte("type: delay\nname: slow\nmatch: {direction: downstream}\ndelay: 50ms\njitter: 5ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Patch("patch", []byte(`{"delay": "80ms", "correlation": "25%"}`))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Behavior.(*behaviors.Delay)
	if d.Delay != 80*time.Millisecond || d.Jitter != 5*time.Millisecond || d.Correlation != 0.25 || p.Name != "slow" || p.Match.Direction != "downstream" {
		t.Fatalf("patched: %+v %+v", p, d)
	}
	if s.Behavior.(*behaviors.Delay).Delay != 50*time.Millisecond {
		t.Fatal("Patch changed the original")
	}
	p, err = p.Patch("patch", []byte(`{"match": {"port": 80}}`))
	if err != nil || p.Match.Direction != "" || p.Match.Port != 80 {
		t.Fatalf("a match replaces the match: %v %+v", err, p.Match)
	}
	for _, tc := range []struct{ doc, want string }{
		{"{\"delay\": \"80ms\",\n \"jitter\": \"-1ms\"}", `patch:2: behavior (delay): jitter: "-1ms" is negative`},
		{`{"type": "loss"}`, `patch:1: behavior (delay): type: cannot change ("delay" to "loss")`},
		{`{"name": "fast"}`, `patch:1: behavior (delay): name: cannot change ("slow" to "fast")`},
		{`{"delya": "1ms"}`, `patch:1: behavior (delay): unknown parameter "delya"`},
		{`{"delay": "1ms"`, `patch:1: did not find expected ',' or '}'`},
	} {
		if _, err := s.Patch("patch", []byte(tc.doc)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s:\n got  %v\n want %s...", tc.doc, err, tc.want)
		}
	}
	// The type and name may be repeated as they are.
	if _, err := s.Patch("patch", []byte(`{"type": "delay", "name": "slow", "delay": "1ms"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestSpecUpdate_ChangesParametersKeepsState(t *testing.T) {
	s, err := ParseBehavior("request", []byte(`{"type": "fin-delay", "delay": "1s"}`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Entry("request", nil)
	if err != nil {
		t.Fatal(err)
	}
	live := e.Behavior.(*behaviors.FINDelay)
	c := behaviors.NewChain("t", 1, []*behaviors.Entry{e})
	runFIN(t, c)
	p, err := s.Patch("patch", []byte(`{"delay": "2s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update(live); err != nil {
		t.Fatal(err)
	}
	if live.Delay != 2*time.Second || live.Stats()["fins_delayed"] != 1 {
		t.Fatalf("after Update: delay %v, stats %v (want 2s and the FIN counted before)", live.Delay, live.Stats())
	}
	if err := p.Update(&behaviors.Delay{}); err == nil {
		t.Fatal("Update of another type succeeded")
	}
}

func TestProfileDocument_RendersTheEditedChain(t *testing.T) {
	p, err := Load("cisco-asa")
	if err != nil {
		t.Fatal(err)
	}
	extra, err := ParseBehavior("request", []byte(`{"delay": "50ms", "name": "slow", "type": "delay"}`)) // keys in any order
	if err != nil {
		t.Fatal(err)
	}
	var specs []*Spec
	for i := range p.Behaviors {
		specs = append(specs, &p.Behaviors[i])
	}
	specs = append(specs, extra)
	doc, err := p.Document(specs)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse("rendered.yaml", doc)
	if err != nil {
		t.Fatalf("the rendered profile does not parse: %v\n%s", err, doc)
	}
	if q.Name != p.Name || q.Description != p.Description || len(q.Behaviors) != len(specs) {
		t.Fatalf("rendered:\n%s", doc)
	}
	for i, s := range specs {
		if q.Behaviors[i].Name != s.Name || q.Behaviors[i].Type != s.Type {
			t.Errorf("behaviors[%d] = %s (%s), want %s (%s)", i, q.Behaviors[i].Name, q.Behaviors[i].Type, s.Name, s.Type)
		}
	}
	if !strings.Contains(string(doc), "- type: delay\n    name: slow\n    delay: 50ms\n") {
		t.Errorf("the added behavior is not rendered as written:\n%s", doc)
	}
	empty, err := p.Document(nil)
	if err != nil || !strings.Contains(string(empty), "behaviors: []") {
		t.Fatalf("no behaviors: %v\n%s", err, empty)
	}
}

// runFIN runs one client FIN through c.
func runFIN(t *testing.T, c *behaviors.Chain) {
	t.Helper()
	buf := make([]byte, 128)
	n := packet.BuildTCP(buf, packet.TCPSpec{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"),
		SrcPort: 40000, DstPort: 80, Flags: packet.FIN | packet.ACK, Window: 1024})
	var parsed packet.Parsed
	parsed.Decode(buf[:n])
	var pkt behaviors.Packet
	pkt.Reset(&parsed, nil, flow.Client, 0)
	c.Run(&pkt, nopEnv{}, make([]byte, 256))
}
