package profiles

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultbox/faultbox/behaviors"
)

var update = flag.Bool("update", false, "rewrite docs/behaviors.md from the behaviors' parameter tags")

// docsBehaviors is docs/behaviors.md, relative to this package.
var docsBehaviors = filepath.Join("..", "docs", "behaviors.md")

// TestBehaviorsMarkdown: docs/behaviors.md is what the parameters' tags
// say; after changing a behavior, regenerate it with -update.
func TestBehaviorsMarkdown(t *testing.T) {
	want := behaviorsMarkdown()
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

// behaviorsMarkdown is docs/behaviors.md: every registered behavior (but
// test-only ones) with its parameters, then the match.
func behaviorsMarkdown() []byte {
	var b bytes.Buffer
	b.WriteString("# Behaviors\n\n" +
		"<!-- Generated from the behaviors' parameter tags; do not edit. Regenerate with\n" +
		"     go test ./profiles -run TestBehaviorsMarkdown -update -->\n\n" +
		"A profile lists behaviors in the order packets meet them; each entry has a\n" +
		"`type`, an optional [`match`](#match) and the behavior's parameters. The same\n" +
		"text is printed by `faultbox behaviors NAME`. Durations are written `300ms`,\n" +
		"`1.5s`; rates `40kbit`, `2mbit`; sizes `1500b`, `64kib`; probabilities `0.5`\n" +
		"or `1.5%`.\n\n")
	var names []string
	for _, n := range behaviors.Names() {
		if !strings.HasPrefix(n, "test-") {
			names = append(names, n)
		}
	}
	for _, n := range names {
		fmt.Fprintf(&b, "- [%s](#%s): %s\n", n, n, behaviors.Summary(n))
	}
	for _, n := range names {
		ps, _ := Parameters(n)
		markdownSection(&b, n, behaviors.Summary(n), ps)
	}
	markdownSection(&b, MatchName, matchSummary, MatchParameters())
	return b.Bytes()
}

func markdownSection(b *bytes.Buffer, name, summary string, ps []Param) {
	fmt.Fprintf(b, "\n## %s\n\n%s.\n\n", name, upperFirst(summary))
	if len(ps) == 0 {
		b.WriteString("No parameters: only `type` and `match`.\n")
		return
	}
	b.WriteString("| parameter | takes | default | meaning |\n|---|---|---|---|\n")
	for _, p := range ps {
		d := ""
		if p.Default != "" {
			d = "`" + p.Default + "`"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", p.Name, cell(p.Accepts()), d, cell(p.Help))
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// cell escapes text for a markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
