package all

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/profiles"
)

// every is every scenario the families register.
var every = []string{"asa-off-by-one", "asa-stuck-send", "cloud-idle-timeouts", "conntrack-full", "dx-defer-accept",
	"dx-defer-accept-nginx", "ecn-blackhole", "elb-early-response", "elb-keepalive-race", "fin-wait-2",
	"gprs-defer-accept", "lingering-close", "nat-idle", "pmtud-black-hole", "sack-seq-randomization", "tfo-blackhole",
	"window-scale-mangling"}

func TestScenarioRegistry_ListsEveryFamilysScenarios(t *testing.T) {
	names := scenario.Names()
	for _, want := range every {
		s, ok := scenario.Lookup(want)
		if !ok {
			t.Errorf("scenario %s is not registered (have %v)", want, names)
			continue
		}
		if s.Drive == nil || s.Judge == nil || s.Summary == "" || s.Description == "" {
			t.Errorf("scenario %s: Drive, Judge, Summary and Description are all needed", want)
		}
		for _, sc := range s.Sysctls {
			if sc.Why == "" {
				t.Errorf("scenario %s: sysctl %s has no reason", want, sc.Key)
			}
		}
	}
	// The e2e tests give a run 30 s: these scenarios must fit with their
	// setup and teardown (the DX ones are timed on their own).
	for _, name := range []string{"asa-off-by-one", "asa-stuck-send", "fin-wait-2", "lingering-close", "nat-idle", "sack-seq-randomization", "window-scale-mangling", "ecn-blackhole", "tfo-blackhole", "pmtud-black-hole", "conntrack-full", "cloud-idle-timeouts"} {
		if s, ok := scenario.Lookup(name); ok && s.Budget > 25*time.Second {
			t.Errorf("scenario %s: budget %v leaves no room in 30 s", name, s.Budget)
		}
	}
	if len(names) != len(every) {
		t.Errorf("registered %v, want %v", names, every)
	}
}

func TestScenarioRun_UnknownNameListsTheScenarios(t *testing.T) {
	_, err := scenario.Run(context.Background(), "no-such-scenario", scenario.Options{ReportDir: t.TempDir()})
	var ue *scenario.UnknownError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "asa-off-by-one") {
		t.Fatalf("Run(unknown) = %v, want an UnknownError listing the scenarios", err)
	}
}

var (
	citeURL     = regexp.MustCompile(`https?://\S+|docs/field-failures\.md#[a-z0-9-]+`)
	citeOutside = regexp.MustCompile(`(?i)field-failures\.md(?:[^#]|$)|design\.md|seeds?/|\.\./shared`)
)

// TestScenarioCitations_AreThingsUsersHave: a scenario's description and
// its inline profile's sources end up in the report; they cite public
// references or docs/field-failures.md, never notes users do not have.
func TestScenarioCitations_AreThingsUsersHave(t *testing.T) {
	for _, s := range scenario.All() {
		if m := citeOutside.FindString(s.Description); m != "" {
			t.Errorf("%s: the description names %q", s.Name, m)
		}
		if s.ProfileYAML == "" {
			continue
		}
		p, err := profiles.Parse(s.Name+" (inline)", []byte(s.ProfileYAML))
		if err != nil {
			t.Errorf("%s: inline profile: %v", s.Name, err)
			continue
		}
		if len(p.Sources) == 0 {
			t.Errorf("%s: the inline profile cites no source", s.Name)
		}
		for _, src := range p.Sources {
			if !citeURL.MatchString(src) || citeOutside.MatchString(src) {
				t.Errorf("%s: source %q is not a URL or a docs/field-failures.md link", s.Name, src)
			}
		}
	}
}
