package conntrack

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
)

// linuxSYNs are this kernel's SYN retransmission offsets.
var linuxSYNs = []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second, 7 * time.Second}

// addClient adds a burst client of arm whose SYNs are dropped until the
// one sent at offset connectAt (0: the first passes).
func addClient(s *scenariotest.Synth, arm string, port uint16, i int, connectAt time.Duration) {
	local := netip.AddrPortFrom(scenariotest.Client, uint16(41000+i))
	remote := netip.AddrPortFrom(scenariotest.Server, port)
	start := 100 * time.Millisecond
	for _, off := range linuxSYNs {
		if off > connectAt {
			break
		}
		s.Packet(start+off, local, remote, packet.SYN, 1, 0, 0, func(p *report.Packet) {
			if off < connectAt {
				p.Dropped, p.Note, p.Out = true, fullNote, time.Time{}
			}
		})
	}
	s.Packet(start+connectAt+time.Millisecond, remote, local, packet.SYN|packet.ACK, 9, 2, 0, nil)
	s.Evidence.Clients = append(s.Evidence.Clients, scenario.ClientResult{Name: arm + " client", Arm: arm, Local: local, Remote: remote,
		Start: s.At(start), End: s.At(start + connectAt + 1400*time.Millisecond), Status: 200, Bytes: 1000})
}

// ctEvidence is a run: the existing connection (ok or broken), the full
// arm's clients connecting at the given offsets, the roomy arm's at once.
func ctEvidence(existingOK bool, full []time.Duration) *scenario.Evidence {
	s := scenariotest.New(12 * time.Second)
	ex := scenario.ClientResult{Name: armExisting, Arm: armExisting, Local: netip.AddrPortFrom(scenariotest.Client, 40000),
		Remote: netip.AddrPortFrom(scenariotest.Server, fullPort), Status: 200, Detail: "29 of 29 requests answered"}
	s.Packet(time.Second, ex.Local, ex.Remote, packet.ACK|packet.PSH, 100, 200, 80, func(p *report.Packet) {
		if !existingOK {
			p.Dropped, p.Note, p.Out = true, fullNote, time.Time{}
		}
	})
	s.Evidence.Clients = append(s.Evidence.Clients, ex)
	for i, at := range full {
		addClient(s, armFull, fullPort, i, at)
	}
	for i := range burst {
		addClient(s, armRoomy, roomyPort, 100+i, 0)
	}
	return s.Evidence
}

// steps21 are three rounds of seven: on the first SYN, the fourth, the seventh.
func steps21() []time.Duration {
	var out []time.Duration
	for i := range burst {
		out = append(out, []time.Duration{0, 3 * time.Second, 7 * time.Second}[i/7])
	}
	return out
}

func TestConntrackJudge_ConnectTimesStepAtTheSYNSchedule(t *testing.T) {
	v := judgeConntrack(ctEvidence(true, steps21()))
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	for _, s := range []string{"7 connected on their first SYN and 14 only on a retransmission", "connect times: 7 at 1.0 ms, 7 at 3.00 s, 7 at 7.00 s",
		"SYN retransmissions at +1.00, +2.00, +3.00, +4.00, +5.00, +7.00 s", "29 of 29 requests answered"} {
		if !strings.Contains(v.Reason, s) {
			t.Errorf("reason lacks %q: %s", s, v.Reason)
		}
	}
	if len(v.Runs) != 2 || v.Runs[0].Outcome != report.Reproduced || v.Runs[1].Outcome != report.NotReproduced {
		t.Errorf("runs %+v", v.Runs)
	}
	if len(v.Distributions) != 1 {
		t.Fatalf("%d distributions", len(v.Distributions))
	}
	d := v.Distributions[0]
	if len(d.Series) != 2 || len(d.Series[0].Values) != burst || len(d.Series[1].Values) != burst || len(d.Marks) != len(linuxSYNs) {
		t.Errorf("distribution: %d series, %d and %d values, %d marks", len(d.Series), len(d.Series[0].Values), len(d.Series[1].Values), len(d.Marks))
	}
	if len(v.Ladder) != 3 {
		t.Errorf("%d ladder connections, want the existing one, one that waited, one that did not", len(v.Ladder))
	}
	if len(v.Marks) != 2 || !strings.Contains(v.Marks[1].Note, "SYN 7, 7.00 s after the first, passes") {
		t.Errorf("marks %+v, want the first dropped SYN and the one that passed", v.Marks)
	}
}

func TestConntrackJudge_FaultOff(t *testing.T) {
	v := judgeConntrack(ctEvidence(true, make([]time.Duration, burst)))
	if v.Outcome != report.NotReproduced || !strings.HasPrefix(v.Reason, "no client waited") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

// Drops that hit the tracked connection too are not a full table.
func TestConntrackJudge_TrackedConnectionHurt(t *testing.T) {
	v := judgeConntrack(ctEvidence(false, steps21()))
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "the tracked connection suffered too") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

func TestConntrackJudge_MissingClients(t *testing.T) {
	e := ctEvidence(true, steps21())
	e.Clients = e.Clients[1:] // no existing connection
	if v := judgeConntrack(e); v.Outcome != report.Error {
		t.Errorf("without the existing connection: %s: %s", v.Outcome, v.Reason)
	}
	e = ctEvidence(true, steps21()[:20])
	if v := judgeConntrack(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "20 clients recorded") {
		t.Errorf("with a client missing: %s: %s", v.Outcome, v.Reason)
	}
}
