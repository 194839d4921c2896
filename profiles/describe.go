package profiles

import (
	"fmt"
	"io"
	"strings"

	"github.com/faultbox/faultbox/behaviors"
)

// The help a behavior's parameters give about themselves (their help,
// values, unit and default tags), for `faultbox behaviors NAME`.
// docs/behaviors.md is generated from the same tags by this package's
// test:
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
