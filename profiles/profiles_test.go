package profiles

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

const full = `name: full
description: every key
sources: ["a book", "a trace"]
seed: 42
behaviors:
  - type: test-fake
    match:
      direction: downstream
      from: server
      to: [client, 198.18.9.0/24]
      protocol: tcp
      port: 80
      tcp_flags: [syn, fin]
    delay: 1.5s
    count: 7
    small: 255
    big: -9000000000
    ratio: 0.25
    on: true
    mode: fast
    hosts: [a, b]
    rate: 40kbit
    size: 64kib
    loss: 1.5%
  - type: test-fake-embedded
    after: 2s
  - type: test-fake
`

func TestParse_EveryKeyAndType(t *testing.T) {
	p, err := Parse("full.yaml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "full" || p.Description != "every key" || !slices.Equal(p.Sources, []string{"a book", "a trace"}) {
		t.Errorf("header = %q %q %q", p.Name, p.Description, p.Sources)
	}
	if p.Seed == nil || *p.Seed != 42 {
		t.Errorf("seed = %v", p.Seed)
	}
	if p.File != "full.yaml" || !bytes.Equal(p.YAML, []byte(full)) {
		t.Errorf("file %q or text not kept", p.File)
	}
	if len(p.Behaviors) != 3 {
		t.Fatalf("%d behaviors", len(p.Behaviors))
	}
	s := p.Behaviors[0]
	if s.Type != "test-fake" || s.Line != 6 {
		t.Errorf("spec type %q line %d", s.Type, s.Line)
	}
	wantMatch := behaviors.MatchSpec{Direction: "downstream", From: []string{"server"}, To: []string{"client", "198.18.9.0/24"},
		Protocol: "tcp", Port: 80, TCPFlags: []string{"syn", "fin"}}
	if !reflect.DeepEqual(s.Match, wantMatch) {
		t.Errorf("match = %+v", s.Match)
	}
	f := s.Behavior.(*fake)
	want := fake{Delay: 1500 * time.Millisecond, Count: 7, Small: 255, Big: -9000000000, Ratio: 0.25, On: true, Mode: "fast",
		Hosts: []string{"a", "b"}, Rate: 40000, Size: 64 << 10, Loss: 0.015}
	if !reflect.DeepEqual(*f, want) {
		t.Errorf("fake = %+v\nwant   %+v", *f, want)
	}
	if e := p.Behaviors[1].Behavior.(*fakeEmbedded); e.After != 2*time.Second || e.Every != 2 {
		t.Errorf("embedded = %+v", e)
	}
	// Unset parameters keep the factory's defaults.
	if d := p.Behaviors[2].Behavior.(*fake); d.Delay != 300*time.Millisecond || d.Count != 1 {
		t.Errorf("defaults lost: %+v", d)
	}
}

func TestParse_AliasesWithinBudgetAreFollowed(t *testing.T) {
	p, err := Parse("a.yaml", []byte(`name: a
behaviors:
  - type: test-fake
    match: &down {direction: downstream, port: 80}
  - type: test-fake
    match: *down
`))
	if err != nil {
		t.Fatal(err)
	}
	if m := p.Behaviors[1].Match; m.Direction != "downstream" || m.Port != 80 {
		t.Errorf("alias not followed: %+v", m)
	}
}

func TestChain_BuildsFreshEntries(t *testing.T) {
	p, err := Parse("full.yaml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	c1, err := p.Chain(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := p.Chain(8, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Profile != "full" || c1.Seed != 7 || len(c1.Entries) != 3 {
		t.Fatalf("chain = %+v", c1)
	}
	e := c1.Entries[0]
	if e.Type != "test-fake" || e.Line != 6 || e.Match.Direction != behaviors.Downstream || e.Match.Port != 80 || e.Match.Protocol != packet.ProtoTCP {
		t.Errorf("entry = %+v", e)
	}
	// from: server resolves to both of the server's addresses.
	if got := e.Match.From; len(got) != 2 || got[0].Addr() != netip.MustParseAddr("198.18.0.2") || got[1].Addr() != netip.MustParseAddr("2001:db8::2") {
		t.Errorf("from = %v", got)
	}
	b1, b2, tmpl := e.Behavior.(*fake), c2.Entries[0].Behavior.(*fake), p.Behaviors[0].Behavior.(*fake)
	if b1 == b2 || b1 == tmpl {
		t.Error("chains share behavior instances")
	}
	if !reflect.DeepEqual(*b1, *tmpl) || !reflect.DeepEqual(*b2, *tmpl) {
		t.Errorf("parameters not copied: %+v", *b1)
	}
	b1.Hosts[0] = "changed"
	if tmpl.Hosts[0] != "a" {
		t.Error("a chain's slice parameter aliases the profile's")
	}
}

func TestChain_UsesTheGivenResolver(t *testing.T) {
	p, err := Parse("r.yaml", []byte("name: r\nbehaviors:\n  - type: drop\n    match: {from: client}\n"))
	if err != nil {
		t.Fatal(err)
	}
	other := netip.MustParseAddr("198.19.7.7")
	c, err := p.Chain(1, func(name string) ([]netip.Addr, bool) { return []netip.Addr{other}, name == "client" })
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Entries[0].Match.From; len(got) != 1 || got[0].Addr() != other {
		t.Errorf("from = %v", got)
	}
	_, err = p.Chain(1, func(string) ([]netip.Addr, bool) { return nil, false })
	wantErr(t, err, `r.yaml:4: behaviors[0] (drop): match.from: "client" is neither a CIDR prefix nor a lab host name`)
}

func TestChain_HandBuiltSpecs(t *testing.T) {
	p := &Profile{Name: "hand", File: "hand", Behaviors: []Spec{
		{Type: "drop", Match: behaviors.MatchSpec{Port: 81}},
		{Type: "test-fake", Behavior: &fake{Count: 500}},
	}}
	_, err := p.Chain(1, nil)
	wantErr(t, err, "hand: behaviors[1] (test-fake): count: 500 is out of range 0-100")
	p.Behaviors[1].Behavior = &fakeEmbedded{}
	_, err = p.Chain(1, nil)
	wantErr(t, err, "hand: behaviors[1] (test-fake): behavior is a *profiles.fakeEmbedded, but type test-fake makes a *profiles.fake")
	p.Behaviors = p.Behaviors[:1]
	c, err := p.Chain(1, nil)
	if err != nil || len(c.Entries) != 1 || c.Entries[0].Match.Port != 81 {
		t.Fatalf("chain %+v, %v", c, err)
	}
}

func TestDefaultResolver_LabAddressPlan(t *testing.T) {
	for name, want := range map[string][]string{
		"client": {"198.18.0.1", "2001:db8::1"},
		"server": {"198.18.0.2", "2001:db8::2"},
		"lb":     {"198.18.0.3", "2001:db8::3"},
	} {
		got, ok := DefaultResolver(name)
		if !ok || len(got) != 2 || got[0].String() != want[0] || got[1].String() != want[1] {
			t.Errorf("%s = %v, %v", name, got, ok)
		}
		got[0] = netip.Addr{} // callers may not change the plan
	}
	if a, _ := DefaultResolver("client"); !a[0].IsValid() {
		t.Error("resolver returned its own slice")
	}
	for _, name := range []string{"Client", "router", "", "198.18.0.1"} {
		if _, ok := DefaultResolver(name); ok {
			t.Errorf("%q resolved", name)
		}
	}
}

// TestBuiltins_EveryOneLoadsAndBuilds fails the suite when any embedded
// profile, whoever added it, is broken.
func TestBuiltins_EveryOneLoadsAndBuilds(t *testing.T) {
	names := Builtin()
	for _, must := range []string{"passthrough", "block-port-81"} {
		if !slices.Contains(names, must) {
			t.Errorf("built-in %s missing from %v", must, names)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("Builtin() not sorted: %v", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			p, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != name {
				t.Errorf("name %q in builtin/%s.yaml", p.Name, name)
			}
			if p.File != "builtin/"+name+".yaml" {
				t.Errorf("file = %q", p.File)
			}
			if strings.TrimSpace(p.Description) == "" {
				t.Error("a built-in documents itself: a description is required")
			}
			c, err := p.Chain(1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Entries) != len(p.Behaviors) {
				t.Errorf("%d entries for %d behaviors", len(c.Entries), len(p.Behaviors))
			}
		})
	}
}

// TestBlockPort81_DropsOnlyPort81 runs packets through the built-in's chain.
func TestBlockPort81_DropsOnlyPort81(t *testing.T) {
	p, err := Load("block-port-81")
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Chain(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	client, server := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	for _, tc := range []struct {
		src, dst     netip.Addr
		sport, dport uint16
		want         behaviors.Verdict
	}{
		{client, server, 40000, 81, behaviors.Drop},
		{server, client, 81, 40000, behaviors.Drop},
		{client, server, 40000, 80, behaviors.Pass},
		{client, server, 81, 80, behaviors.Drop}, // either end
	} {
		buf := make([]byte, 128)
		n := packet.BuildTCP(buf, packet.TCPSpec{Src: tc.src, Dst: tc.dst, SrcPort: tc.sport, DstPort: tc.dport, Flags: packet.SYN, Window: 1024})
		var parsed packet.Parsed
		parsed.Decode(buf[:n])
		var pkt behaviors.Packet
		pkt.Reset(&parsed, nil, flow.Client, 0)
		if got := c.Run(&pkt, nopEnv{}, make([]byte, 256)); got != tc.want {
			t.Errorf("%v:%d -> %v:%d: verdict %v, want %v", tc.src, tc.sport, tc.dst, tc.dport, got, tc.want)
		}
	}
}

type nopEnv struct{}

func (nopEnv) Inject([]byte, int64, string)    {}
func (nopEnv) Event(*behaviors.Packet, string) {}

func TestLoad_Files(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	write(t, good, "name: good\nbehaviors:\n  - type: drop\n    match: {port: 81}\n")
	p, err := Load(good)
	if err != nil || p.Name != "good" || p.File != good {
		t.Fatalf("Load(%s) = %+v, %v", good, p, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	write(t, bad, "name: bad\nbehaviors:\n  - type: drop\n    count: many\n")
	_, err = Load(bad)
	wantErr(t, err, bad+`:4: behaviors[0] (drop): count: expected an integer, found "many"`)

	_, err = Load(filepath.Join(dir, "nope.yaml"))
	wantErr(t, err, filepath.Join(dir, "nope.yaml")+": no such built-in profile or file (built-ins: ")
	_, err = Load("no-such-profile")
	wantErr(t, err, "no-such-profile: no such built-in profile or file")
	_, err = Load(dir)
	wantErr(t, err, dir+": is not a regular file")

	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(fifo) // must not block waiting for a writer
	wantErr(t, err, fifo+": is not a regular file")
	_, err = Load("/dev/zero")
	wantErr(t, err, "/dev/zero: is not a regular file")

	big := filepath.Join(dir, "big.yaml")
	write(t, big, "name: big\nbehaviors: []\n#"+strings.Repeat("x", MaxSize))
	_, err = Load(big)
	wantErr(t, err, big+": is 1048601 bytes; a profile may be at most 1048576 bytes (1 MiB)")

	// A file that happens to share a built-in's name does not shadow it;
	// a path to it is needed.
	t.Chdir(dir)
	write(t, "passthrough", "name: local\nbehaviors: []\n")
	if p, err := Load("passthrough"); err != nil || p.Name != "passthrough" {
		t.Errorf("Load(passthrough) = %v, %v", p, err)
	}
	if p, err := Load("./passthrough"); err != nil || p.Name != "local" {
		t.Errorf("Load(./passthrough) = %v, %v", p, err)
	}
}

func TestRegisteredBehaviors_ParametersAreDecodable(t *testing.T) {
	for _, name := range behaviors.Names() {
		if strings.HasPrefix(name, "test-") {
			continue
		}
		b, err := behaviors.New(name)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{"type": true, "match": true}
		for _, p := range params(reflect.ValueOf(b)) {
			if seen[p.name] {
				t.Errorf("%s: parameter %q is reserved or declared twice", name, p.name)
			}
			seen[p.name] = true
			if !supported(p.v.Type()) {
				t.Errorf("%s: parameter %q has type %s, which profiles cannot set", name, p.name, p.v.Type())
			}
			if p.field.Tag.Get("help") == "" {
				t.Errorf("%s: parameter %q has no help tag", name, p.name)
			}
		}
		if behaviors.Summary(name) == "" {
			t.Errorf("%s has no summary", name)
		}
	}
}

func TestParameters_InOrderWithDefaults(t *testing.T) {
	ps, err := Parameters("test-fake")
	if err != nil {
		t.Fatal(err)
	}
	got := func(p Param) string { return fmt.Sprintf("%s|%s|%s|%s", p.Name, p.Accepts(), p.Default, p.Help) }
	want := []string{
		"delay|a duration such as 300ms or 1.5s|300ms|",
		"count|an integer (packets)|1|how many",
		"small|a whole number||",
		"big|an integer||", "ratio|a number||", "on|true or false||",
		"mode|one of a, b|a|", // the default tag: what the zero value stands for
		"hosts|a list of x, y|[x]|",
		"rate|a rate||", "size|a size||", "loss|a probability||",
	}
	if len(ps) != len(want) {
		t.Fatalf("parameters = %+v", ps)
	}
	for i, p := range ps {
		if got(p) != want[i] {
			t.Errorf("parameter %d: %q, want %q", i, got(p), want[i])
		}
	}
	if ps, _ := Parameters("test-fake-embedded"); len(ps) != 2 || ps[0].Name != "after" || ps[1].Name != "every" {
		t.Errorf("embedded parameters = %+v", ps)
	}
	if _, err := Parameters("nope"); err == nil {
		t.Error("Parameters(nope) succeeded")
	}
}

func write(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantErr checks that err is one line starting with want.
func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Errorf("no error, want %q", want)
		return
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, want) {
		t.Errorf("error\n  %s\nwant prefix\n  %s", msg, want)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Errorf("error %T is not a *profiles.Error", err)
	}
}
