package behaviors

import (
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
)

// BenchmarkChain_Matches runs established traffic through a chain whose
// entries use every kind of match (direction, protocol, addresses, port,
// TCP flags), one matching nothing, one logging every packet and one
// keeping per-flow state: matching and the chain's bookkeeping must not
// allocate either.
func BenchmarkChain_Matches(b *testing.B) {
	compile := func(s MatchSpec) Match {
		m, err := s.Compile(nil)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	logged := &Entry{Type: "log", Behavior: &Log{Every: 1}, Match: compile(MatchSpec{
		From: []string{"198.18.0.0/15", "2001:db8::/32"}, To: []string{"198.18.0.2", "198.18.0.1"},
		Protocol: "tcp", Port: 80, TCPFlags: []string{"syn", "data", "bare-ack"},
	})}
	entries := []*Entry{
		{Type: "drop", Behavior: &Discard{}, Match: compile(MatchSpec{Direction: "downstream", TCPFlags: []string{"rst"}})},
		logged,
		{Type: "drop", Behavior: &Discard{Count: 1}, Match: compile(MatchSpec{Direction: "upstream", TCPFlags: []string{"syn"}})},
		{Type: "hold-first-data", Behavior: &HoldFirstData{Hold: time.Millisecond}, Match: compile(MatchSpec{Direction: "upstream"})},
	}
	r := &rig{chain: NewChain("bench", 1, entries), flows: flow.NewTable(1024, flow.DefaultTimeouts), env: nopEnv{}}
	up, down := benchEstablished(r)
	before := logged.Counters.Matched
	r.loop(b, up, down)
	if logged.Counters.Matched-before < 2 {
		b.Fatalf("the logging entry matched %d packets: the benchmark does not exercise matching", logged.Counters.Matched-before)
	}
}
