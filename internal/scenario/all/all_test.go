package all

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/scenario"
)

// every is every scenario the families register.
var every = []string{"asa-off-by-one", "asa-stuck-send", "dx-defer-accept", "dx-defer-accept-nginx", "elb-early-response",
	"elb-keepalive-race", "fin-wait-2", "gprs-defer-accept", "lingering-close", "nat-idle"}

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
	for _, name := range []string{"asa-off-by-one", "asa-stuck-send", "fin-wait-2", "lingering-close", "nat-idle"} {
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
