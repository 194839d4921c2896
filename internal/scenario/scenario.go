// Package scenario is the framework of faultbox's one-command
// reproductions of field failures (docs/field-failures.md): a scenario
// builds a lab, starts the servers and clients it needs, applies its
// profile, drives the traffic, collects the evidence, tears everything
// down and decides from that evidence alone whether the failure happened.
//
// The scenarios themselves live in family packages below this one
// (README.md beside this file lists them), each scenario one file that
// registers itself by name, as behaviors do:
//
//	func init() {
//		scenario.Register(&scenario.Scenario{
//			Name: "nat-idle", Summary: "...", ProfileYAML: "...",
//			Drive: drive, // start servers, run clients, record results
//			Judge: judge, // evidence in, verdict out
//		})
//	}
//
// Drive runs with a *Context (processes, clients, socket samplers, waits,
// timeline); Judge sees only the *Evidence collected after teardown (the
// capture read back, socket samples, client results, server logs, device
// events), never the scenario's expectation or whether the fault was on.
// README.md in this directory says how to add a scenario.
package scenario

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/report"
)

// Scenario is one registered reproduction.
type Scenario struct {
	Name        string // registry key: lowercase words joined by '-'
	Summary     string // one line for `scenario list`
	Description string // the report's opening paragraph: what failed in the field and what the run shows

	// Hosts of the lab (default client, server).
	Hosts []string
	// Profile is the device profile of the run: a built-in name, or empty
	// when ProfileYAML gives the profile inline. With the fault off
	// (Options.Fault false) the lab runs passthrough instead.
	Profile     string
	ProfileYAML string
	// Sysctls are set inside the lab's namespaces before Drive runs, with
	// the reason each is in the report.
	Sysctls []Sysctl
	// Expect is the outcome the scenario expects on a fault-on run
	// (default report.Reproduced). It decides the exit status only; Judge
	// never sees it.
	Expect report.Outcome
	// Budget bounds Drive's wall time (default 25 s); the whole run stays
	// under Budget plus a few seconds of setup and teardown.
	Budget time.Duration
	// SampleEvery is the default socket sampling interval (20 ms).
	SampleEvery time.Duration

	Drive func(c *Context) error
	Judge func(e *Evidence) Verdict
}

// Sysctl is one kernel setting inside one lab host's namespace.
type Sysctl struct {
	Host  string // lab host; "" means every host
	Key   string // e.g. net.ipv4.tcp_fin_timeout
	Value string
	Why   string // shown in the report
}

// Verdict is what Judge decides from the evidence.
type Verdict struct {
	Outcome report.Outcome
	Reason  string
	// Runs are the arms of an A/B or the variants of the run, each with
	// its own outcome from evidence.
	Runs []report.Run
	// Timeline holds entries derived from evidence (packets, socket
	// states, server log lines); the runner merges them with the steps
	// Drive recorded.
	Timeline []report.Entry
	Notes    []string
	// Results replaces the default table of client results when set.
	Results *report.Table
	// Ladder lists the key connections the ladder diagram shows (empty:
	// every connection of the capture).
	Ladder []report.Conn
	// Marks highlight the packets of those connections the verdict rests
	// on, each with a note.
	Marks []report.Mark
	// Distributions are histograms of durations derived from evidence
	// (connect times ...), shown after the client results.
	Distributions []report.Distribution
}

// OutcomeIf is report.Reproduced when failed holds, else report.NotReproduced.
func OutcomeIf(failed bool) report.Outcome {
	if failed {
		return report.Reproduced
	}
	return report.NotReproduced
}

var (
	regMu    sync.Mutex
	registry = map[string]*Scenario{}
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
)

// Register adds s to the registry; it is called from each scenario file's
// init. A bad or duplicate name, or a missing Drive or Judge, is a
// programming error and panics.
func Register(s *Scenario) {
	if !nameRE.MatchString(s.Name) {
		panic(fmt.Sprintf("scenario: bad name %q", s.Name))
	}
	if s.Drive == nil || s.Judge == nil || s.Summary == "" {
		panic("scenario " + s.Name + ": Summary, Drive and Judge are required")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[s.Name]; dup {
		panic("scenario: duplicate registration of " + s.Name)
	}
	registry[s.Name] = s
}

// Lookup returns the scenario registered as name.
func Lookup(name string) (*Scenario, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	s, ok := registry[name]
	return s, ok
}

// All returns every registered scenario, sorted by name.
func All() []*Scenario {
	regMu.Lock()
	defer regMu.Unlock()
	out := make([]*Scenario, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Scenario) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Names lists the registered scenario names, sorted.
func Names() []string {
	var names []string
	for _, s := range All() {
		names = append(names, s.Name)
	}
	return names
}

func (s *Scenario) hosts() []string {
	if len(s.Hosts) == 0 {
		return []string{"client", "server"}
	}
	return s.Hosts
}

func (s *Scenario) expect() report.Outcome {
	if s.Expect == "" {
		return report.Reproduced
	}
	return s.Expect
}

func (s *Scenario) budget() time.Duration {
	if s.Budget <= 0 {
		return 25 * time.Second
	}
	return s.Budget
}

func (s *Scenario) sampleEvery() time.Duration {
	if s.SampleEvery <= 0 {
		return 20 * time.Millisecond
	}
	return s.SampleEvery
}

// profileName is how the report names the profile.
func (s *Scenario) profileName() string {
	if s.Profile != "" {
		return s.Profile
	}
	if s.ProfileYAML != "" {
		return s.Name + " (inline, profile.yaml in the report)"
	}
	return "passthrough"
}
