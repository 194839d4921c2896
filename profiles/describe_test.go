package profiles

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/behaviors.md from the behaviors' parameter tags")

// docsBehaviors is docs/behaviors.md, relative to this package.
var docsBehaviors = filepath.Join("..", "docs", "behaviors.md")

// TestBehaviorsMarkdown: docs/behaviors.md is what the parameters' tags
// say; after changing a behavior, regenerate it with -update.
func TestBehaviorsMarkdown(t *testing.T) {
	want := BehaviorsMarkdown()
	if *update {
		if err := os.WriteFile(docsBehaviors, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(docsBehaviors)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("docs/behaviors.md is stale (%v): regenerate it with\n\tgo test ./profiles -run TestBehaviorsMarkdown -update", err)
	}
	for _, s := range []string{"## asa-teardown", "| `fin` | one of forward, swallow | `forward` |", "## match", "| `tcp_flags` |"} {
		if !bytes.Contains(want, []byte(s)) {
			t.Errorf("docs/behaviors.md lacks %q", s)
		}
	}
}

func TestDescribe_SaysWhatEachParameterTakesAndMeans(t *testing.T) {
	var b strings.Builder
	if err := Describe(&b, "asa-teardown"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"asa-teardown: Cisco ASA close",
		"\n  fin            one of forward, swallow; default forward\n                 what becomes of the client's FIN",
		"\n  offset         an integer (sequence numbers); default -1\n",
		"\n  offset_mode    one of fixed, window; default fixed\n",
		"\n  forget_for     a duration such as 300ms or 1.5s\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in:\n%s", want, b.String())
		}
	}
	for _, line := range strings.Split(b.String(), "\n")[1:] { // the summary is one line
		if len(line) > 80 {
			t.Errorf("line longer than 80: %q", line)
		}
	}
	b.Reset()
	if err := Describe(&b, MatchName); err != nil || !strings.Contains(b.String(), "  protocol   one of tcp, udp, icmp, any; default any\n") {
		t.Errorf("match: %v\n%s", err, b.String())
	}
	if err := Describe(&b, "nope"); err == nil {
		t.Error("Describe(nope) succeeded")
	}
}
