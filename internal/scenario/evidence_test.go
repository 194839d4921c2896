package scenario_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

func TestScenarioEvidence_SocketLifeAndCounts(t *testing.T) {
	const ms = time.Millisecond
	s := scenariotest.New(time.Second)
	e := s.Evidence
	l, r := netip.MustParseAddrPort("198.18.0.2:80"), netip.MustParseAddrPort("198.18.0.1:4000")
	s.Socket(l, r, sockdiag.Established, 0, 0, 100*ms)
	s.Socket(l, r, sockdiag.FinWait2, 0, 120*ms, 400*ms)
	life := e.Socket("server", l, r)
	if !life.Seen || len(life.Spans) != 2 || life.Spans[1].State != sockdiag.FinWait2 {
		t.Fatalf("life %+v", life)
	}
	if got := life.Gone.Sub(s.T0); got != 420*ms {
		t.Errorf("gone at %v, want 420ms (the first tick without it)", got)
	}
	if st, ok := life.StateAt(s.At(200 * ms)); !ok || st != sockdiag.FinWait2 {
		t.Errorf("state at 200ms: %v %v", st, ok)
	}
	if _, ok := life.StateAt(s.At(500 * ms)); ok {
		t.Error("a state after the socket was gone")
	}
	if p := scenario.Peak(e.CountState("server", 80, sockdiag.FinWait2)); p.N != 1 || p.At.Sub(s.T0) != 120*ms {
		t.Errorf("peak %+v", p)
	}
	if other := e.Socket("server", r, l); other.Seen {
		t.Error("the reversed tuple matched")
	}
}
