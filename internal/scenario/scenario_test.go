package scenario

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/report"
)

// fakeScenario registers a scenario that does nothing, once.
func fakeScenario(t *testing.T, name string) *Scenario {
	t.Helper()
	if s, ok := Lookup(name); ok {
		return s
	}
	s := &Scenario{Name: name, Summary: "a test scenario", Drive: func(*Context) error { return nil },
		Judge: func(*Evidence) Verdict { return Verdict{} }}
	Register(s)
	return s
}

func TestScenarioRegistry_LooksUpAndSortsByName(t *testing.T) {
	fakeScenario(t, "test-zeta")
	a := fakeScenario(t, "test-alpha")
	if s, ok := Lookup("test-alpha"); !ok || s != a {
		t.Fatalf("Lookup(test-alpha) = %v, %v", s, ok)
	}
	names := Names()
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("Names() not sorted: %v", names)
		}
	}
}

func TestScenarioRegister_RejectsBadNamesAndDuplicates(t *testing.T) {
	ok := func(*Context) error { return nil }
	judge := func(*Evidence) Verdict { return Verdict{} }
	fakeScenario(t, "test-taken")
	for _, s := range []*Scenario{
		{Name: "Bad Name", Summary: "x", Drive: ok, Judge: judge},
		{Name: "test-taken", Summary: "x", Drive: ok, Judge: judge}, // taken
		{Name: "no-judge", Summary: "x", Drive: ok},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", s.Name)
				}
			}()
			Register(s)
		}()
	}
	if _, ok := Lookup("no-judge"); ok {
		t.Error("a rejected scenario was registered")
	}
}

func TestScenarioRun_UnknownNameIsAnInputError(t *testing.T) {
	fakeScenario(t, "test-known")
	_, err := Run(context.Background(), "no-such-scenario", Options{ReportDir: t.TempDir()})
	var ue *UnknownError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "test-known") {
		t.Fatalf("Run(unknown) = %v, want an UnknownError listing the scenarios", err)
	}
}

func TestScenarioExitCode_FollowsOutcomeAndExpectation(t *testing.T) {
	for _, c := range []struct {
		outcome, expected report.Outcome
		want              int
	}{
		{report.Reproduced, report.Reproduced, ExitAsExpected},
		{report.NotReproduced, report.Reproduced, ExitUnexpected},
		{report.NotReproduced, report.NotReproduced, ExitAsExpected},
		{report.Error, report.Reproduced, ExitError},
	} {
		r := &Result{Report: &report.Report{Outcome: c.outcome, Expected: c.expected}}
		if got := r.ExitCode(); got != c.want {
			t.Errorf("outcome %s, expected %s: exit %d, want %d", c.outcome, c.expected, got, c.want)
		}
	}
}

func TestScenarioProgress_SilentWhenNotATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "progress")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Fatal("a regular file taken for a terminal")
	}
	p := newProgress(f, "x")
	p.set("something", time.Now().Add(time.Second))
	p.draw()
	p.close()
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Errorf("progress wrote %d bytes to a file", fi.Size())
	}
	if IsTerminal(nil) {
		t.Error("nil taken for a terminal")
	}
}

func TestScenarioSysctlReport_NamesHostAndReason(t *testing.T) {
	m, note := sysctlReport([]Sysctl{{Host: "server", Key: "net.ipv4.tcp_fin_timeout", Value: "3", Why: "short"}})
	if m["server: net.ipv4.tcp_fin_timeout"] != "3" || !strings.Contains(note, "tcp_fin_timeout=3 in server: short") {
		t.Errorf("sysctls %v, note %q", m, note)
	}
}
