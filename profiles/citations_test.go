package profiles

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// `faultbox profile show` prints a built-in's description and sources to
// users who have the binary and, at most, this repository. So a source is
// a public reference with its URL, or a link into docs/ that resolves, and
// nothing may send a reader to notes kept outside the repository.

var (
	citeURL = regexp.MustCompile(`https?://[^\s,;)]+`)
	// A docs link is a path under this repository's docs/ (not a docs/
	// inside a URL) with an optional anchor; the anchor must exist as
	// <a id="ANCHOR"></a> in that file.
	citeDocsLink = regexp.MustCompile(`(?:^|[^/\w.])(docs/[A-Za-z0-9_./-]+\.md(?:#[A-Za-z0-9_-]+)?)`)
	// Names of notes that never left the developers' side. Checked after
	// the valid docs links are taken out of the text, so
	// docs/field-failures.md passes and a bare FIELD-FAILURES.md does not.
	citeOutside = regexp.MustCompile(`(?i)field-failures|design\.md|style\.md|seeds?/|\bseeds? \d{3}\b|\.\./shared|\bshared/`)
)

// emulatesNothing are the built-ins that stand for no device or link and
// so have nothing to cite.
var emulatesNothing = map[string]bool{"passthrough": true, "block-port-81": true}

// citationProblems says what is wrong with one source (source true) or a
// description (source false); docsDir is the repository's docs folder.
func citationProblems(text string, source bool, docsDir string) []string {
	var problems []string
	rest := text
	for _, m := range citeDocsLink.FindAllStringSubmatch(text, -1) {
		link := m[1]
		if err := checkDocsLink(link, docsDir); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		rest = strings.Replace(rest, link, "", 1)
	}
	if m := citeOutside.FindString(rest); m != "" {
		problems = append(problems, fmt.Sprintf("names %q, which users do not have", m))
	}
	if source && !citeURL.MatchString(text) && !citeDocsLink.MatchString(text) {
		problems = append(problems, "is neither a URL nor a docs/ link")
	}
	return problems
}

// checkDocsLink reports a docs/ link whose file or anchor does not exist.
func checkDocsLink(link, docsDir string) error {
	file, anchor, _ := strings.Cut(link, "#")
	data, err := os.ReadFile(filepath.Join(docsDir, strings.TrimPrefix(file, "docs/")))
	if err != nil {
		return fmt.Errorf("links %s, which does not exist", file)
	}
	if anchor != "" && !strings.Contains(string(data), `<a id="`+anchor+`"></a>`) {
		return fmt.Errorf("links %s, which has no anchor %q", file, anchor)
	}
	return nil
}

func TestBuiltins_CiteOnlyWhatUsersHave(t *testing.T) {
	for _, name := range Builtin() {
		t.Run(name, func(t *testing.T) {
			p, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, problem := range citationProblems(p.Description, false, "../docs") {
				t.Errorf("description %s", problem)
			}
			for i, s := range p.Sources {
				for _, problem := range citationProblems(s, true, "../docs") {
					t.Errorf("sources[%d] %s: %q", i, problem, s)
				}
			}
			if len(p.Sources) == 0 && !emulatesNothing[name] {
				t.Error("a built-in that emulates a device or a link cites its sources")
			}
		})
	}
}

// TestCitationProblems_CatchesWhatUsersCannotFollow keeps the check above
// honest: the citations the built-ins used to carry must fail it.
func TestCitationProblems_CatchesWhatUsersCannotFollow(t *testing.T) {
	docs := t.TempDir()
	page := `intro <a id="known"></a> text`
	if err := os.WriteFile(filepath.Join(docs, "field-failures.md"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text   string
		source bool
		ok     bool
	}{
		{"Devon H. O'Dell, 'Debugging the Internet' (2015), seeds/004", true, false},
		{"Devon H. O'Dell, 'Debugging the Internet', 2015, https://9vx.org/post/debugging-the-internet/, seeds/004", true, false},
		{"FIELD-FAILURES.md, 'What a modern Linux kernel actually does'", true, false},
		{"field report collected in shared/FIELD-FAILURES.md, section 1", true, false},
		{"Lab host addresses (../shared/DESIGN.md)", false, false},
		{"as in DESIGN.md", false, false},
		{"the reports of seeds 000 and 002", false, false},
		{"defer-accept servers failing (FIELD-FAILURES.md 1, 5).", false, false},
		{"Chrome DevTools network throttling preset 'GPRS'", true, false},
		{"see docs/field-failures.md#unknown", true, false},
		{"see docs/missing.md", true, false},
		{"Lighthouse, https://github.com/GoogleChrome/lighthouse/blob/main/docs/throttling.md", true, true},
		{"RFC 5961, 2010, https://www.rfc-editor.org/rfc/rfc5961#section-3.2", true, true},
		{"measured: docs/field-failures.md#known", true, true},
		{"see docs/field-failures.md", true, true},
		{"every random decision comes from the run's seed", false, true},
		{"No fault: every packet is forwarded unchanged.", false, true},
	} {
		got := citationProblems(c.text, c.source, docs)
		if (len(got) == 0) != c.ok {
			t.Errorf("%q (source %v): problems %q, want ok=%v", c.text, c.source, got, c.ok)
		}
	}
}
