package profiles

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/faultbox/faultbox/behaviors"
)

// valuesBase is what a behavior needs besides the parameter under test
// for a profile to be valid: its required parameters, or those the
// parameter's value depends on.
func valuesBase(typ, param, value string) string {
	switch {
	case param == "trigger":
		return map[string]string{"bytes": "after_bytes: 1kb", "idle": "after: 1s", "time": "after: 1s", "regex": "pattern: x"}[value]
	case param == "direction" && (typ == "reset" || typ == "vanish"):
		return "trigger: bytes\nafter_bytes: 1kb"
	case param == "rst_to":
		return "timeout: 1s\nmode: rst"
	}
	return map[string]string{
		"corrupt": "p: 1%", "duplicate": "p: 1%", "fin-delay": "delay: 1ms", "hold-first-data": "hold: 1s",
		"idle-timeout": "timeout: 1s", "outage": "every: 1s\nduration: 100ms", "rate": "rate: 1mbit",
		"reorder": "p: 1%\ndelay: 1ms", "reset": "trigger: client-fin", "vanish": "trigger: client-fin",
		"trace": "opportunities: [1]",
	}[typ]
}

// profileWith is a profile of one behavior typ with the lines given.
func profileWith(typ string, lines ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "name: values\nbehaviors:\n  - type: %s\n", typ)
	for _, l := range lines {
		for _, l := range strings.Split(l, "\n") {
			if l != "" {
				fmt.Fprintf(&b, "    %s\n", l)
			}
		}
	}
	return []byte(b.String())
}

// TestParameterValues_AreAccepted: every value a parameter's values tag
// lists (as `faultbox behaviors` and docs/behaviors.md print them) is one
// the behavior accepts, in a profile that is valid otherwise.
func TestParameterValues_AreAccepted(t *testing.T) {
	checked := 0
	for _, typ := range behaviors.Names() {
		if strings.HasPrefix(typ, "test-") {
			continue
		}
		ps, err := Parameters(typ)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if len(p.Values) > 0 && p.Default != "" && !strings.HasPrefix(p.Type, "a list") && !slices.Contains(p.Values, p.Default) {
				t.Errorf("%s: %s: default %q is not one of %v", typ, p.Name, p.Default, p.Values)
			}
			for _, v := range p.Values {
				doc := profileWith(typ, valuesBase(typ, p.Name, v), fmt.Sprintf("%s: %s", p.Name, yamlValue(p, v)))
				if _, err := Parse("values.yaml", doc); err != nil {
					t.Errorf("%s: %s: %s is listed but not accepted: %v\n%s", typ, p.Name, v, err, doc)
				}
				checked++
			}
		}
	}
	for _, p := range MatchParameters() {
		for _, v := range p.Values {
			doc := profileWith("drop", fmt.Sprintf("match: {%s: %s}", p.Name, yamlValue(p, v)))
			if _, err := Parse("values.yaml", doc); err != nil {
				t.Errorf("match: %s: %s is listed but not accepted: %v", p.Name, v, err)
			}
			checked++
		}
	}
	if checked < 40 {
		t.Errorf("only %d listed values checked", checked)
	}
}

// yamlValue writes v as parameter p takes it: alone, or as a list.
func yamlValue(p Param, v string) string {
	if strings.HasPrefix(p.Type, "a list") {
		return "[" + v + "]"
	}
	return v
}
