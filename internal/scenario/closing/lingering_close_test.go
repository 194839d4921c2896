package closing

import (
	"net/netip"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
	"github.com/faultbox/faultbox/internal/serve"
)

const ms = time.Millisecond

// TestLingeringCloseJudge_LostWithoutLingerDeliveredWith: the abrupt
// arm's client failed on its send with the server's RST in the capture
// after serve wrote its 401; the lingering arm got the 401.
func TestLingeringCloseJudge_LostWithoutLingerDeliveredWith(t *testing.T) {
	s := scenariotest.New(time.Second)
	ca, sa := netip.AddrPortFrom(scenariotest.Client, 41000), netip.AddrPortFrom(scenariotest.Server, abruptPort)
	cl, sl := netip.AddrPortFrom(scenariotest.Client, 41001), netip.AddrPortFrom(scenariotest.Server, lingerPort)
	s.Packet(10*ms, sa, ca, packet.RST, 7000, 0, 0, nil)
	s.ServeLog("serve-abrupt", 9*ms, serve.Event{Event: "response", Status: 401, Peer: ca.String()})
	s.ServeLog("serve-linger", 9*ms, serve.Event{Event: "response", Status: 401, Peer: cl.String()})
	s.Evidence.Clients = []scenario.ClientResult{
		{Arm: armAbrupt, Local: ca, Remote: sa, Err: "ConnectionResetError: [Errno 104] Connection reset by peer", Kind: scenario.KindReset, End: s.At(11 * ms)},
		{Arm: armLinger, Local: cl, Remote: sl, Status: 401, End: s.At(50 * ms)},
	}
	v := judgeLingeringClose(s.Evidence)
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	// The same evidence without the server's RST is not the failure.
	s.Evidence.Capture.Packets = nil
	if v := judgeLingeringClose(s.Evidence); v.Outcome != report.NotReproduced {
		t.Errorf("without the RST: %s, want not reproduced", v.Outcome)
	}
	// Nor is a lingering arm that lost its answer too.
	s.Packet(10*ms, sa, ca, packet.RST, 7000, 0, 0, nil)
	s.Evidence.Clients[1].Status, s.Evidence.Clients[1].Err = 0, "BrokenPipeError"
	if v := judgeLingeringClose(s.Evidence); v.Outcome != report.NotReproduced {
		t.Errorf("fix arm failing too: %s, want not reproduced", v.Outcome)
	}
}
