package idle

import (
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
)

// TestNATIdleJudge_AFailedDialIsAnError: a client whose dial failed
// never connected: the verdict is an error that gives its error.
func TestNATIdleJudge_AFailedDialIsAnError(t *testing.T) {
	s := scenariotest.New(time.Second)
	s.Evidence.Clients = []scenario.ClientResult{{Name: "client", Arm: armSilent, Err: "dial tcp: i/o timeout"}}
	want := armSilent + ": the client never connected (dial tcp: i/o timeout)"
	if v := judgeNATIdle(s.Evidence); v.Outcome != report.Error || v.Reason != want {
		t.Errorf("outcome %s (%s) with a failed dial, want error: %s", v.Outcome, v.Reason, want)
	}
}
