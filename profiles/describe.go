package profiles

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/faultbox/faultbox/behaviors"
)

// The help a behavior's parameters give about themselves (their help,
// values, unit and default tags), for `faultbox behaviors NAME` and for
// docs/behaviors.md, which is generated from it:
//
//	go test ./profiles -run TestBehaviorsMarkdown -update

// MatchName is the name `faultbox behaviors` describes the match by.
const MatchName = "match"

// matchSummary is the match's one line.
const matchSummary = "which packets a behavior sees; every behavior takes one (all packets when it is left out)"

// Describe writes what behavior name (or MatchName) does and each of its
// parameters: what it takes, its default, what it means.
func Describe(w io.Writer, name string) error {
	var ps []Param
	summary := matchSummary
	if name == MatchName {
		ps = MatchParameters()
	} else {
		var err error
		if ps, err = Parameters(name); err != nil {
			return err
		}
		summary = behaviors.Summary(name)
	}
	fmt.Fprintf(w, "%s: %s\n", name, summary)
	if len(ps) == 0 {
		fmt.Fprintln(w, "  parameters: none (only type and match)")
		return nil
	}
	width := 0
	for _, p := range ps {
		width = max(width, len(p.Name))
	}
	indent := strings.Repeat(" ", width+4)
	for _, p := range ps {
		fmt.Fprintf(w, "  %-*s  %s\n", width, p.Name, takes(p))
		for _, line := range Wrap(p.Help, 76-len(indent)) {
			fmt.Fprintf(w, "%s%s\n", indent, line)
		}
	}
	return nil
}

// takes is what the parameter takes, and its default.
func takes(p Param) string {
	if p.Default == "" {
		return p.Accepts()
	}
	return p.Accepts() + "; default " + p.Default
}

// Wrap breaks s into lines of at most width characters, at spaces, for
// help output.
func Wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// BehaviorsMarkdown is docs/behaviors.md: every registered behavior (but
// test-only ones) with its parameters, then the match.
func BehaviorsMarkdown() []byte {
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
