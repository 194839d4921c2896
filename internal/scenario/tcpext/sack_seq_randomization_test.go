package tcpext

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

// sackEvidence is a run's evidence: each download's client, what the
// device did to it, and the counters around it. took and server give, per
// arm, the download's time and the server's counter growth; left is how
// many ACKs of the first arm carried SACK blocks the box left.
func sackEvidence(t *testing.T, took map[string]time.Duration, server map[string]map[string]int64, left int) *scenario.Evidence {
	s := scenariotest.New(10 * time.Second)
	at := time.Duration(0)
	for i, a := range sackArms {
		local := netip.AddrPortFrom(scenariotest.Client, uint16(40000+i))
		remote := netip.AddrPortFrom(scenariotest.Server, uint16(a.port))
		s.Evidence.Clients = append(s.Evidence.Clients, scenario.ClientResult{Name: "client", Arm: a.name, Local: local, Remote: remote,
			Start: s.At(at), End: s.At(at + took[a.name]), Status: 200, Bytes: sackDownload})
		s.Packet(at+time.Millisecond, remote, local, packet.ACK, 1, 1, 1448, func(p *report.Packet) { p.Dropped, p.Note = true, "dropped by loss" })
		if a.name == armSACKLeft && left > 0 {
			// The lost segment again, after a retransmission timeout.
			s.Packet(at+300*time.Millisecond, remote, local, packet.ACK, 1, 1, 1448, nil)
			for j := range left {
				s.Packet(at+time.Duration(2+j)*time.Millisecond, local, remote, packet.ACK, 1, 1, 0, func(p *report.Packet) {
					p.Note = "seq-randomize: SACK blocks left in the randomized space"
				})
			}
		}
		for _, label := range []string{"start", "end"} {
			fields := map[string]any{"label": a.name + " " + label}
			for _, k := range sackServerCounters {
				fields[k] = 0
				if label == "end" {
					fields[k] = server[a.name][k]
				}
			}
			s.Kernel(t, sackServerLog, at, "netstat", fields)
			s.Kernel(t, sackClientLog, at, "netstat", map[string]any{"label": a.name + " " + label, "TCPDSACKOldSent": 0})
		}
		at += took[a.name] + 10*time.Millisecond
	}
	return s.Evidence
}

func TestSACKJudge_UntranslatedBlocksCollapseTheDownload(t *testing.T) {
	e := sackEvidence(t, map[string]time.Duration{armSACKLeft: 3 * time.Second, armSACKRewritten: 30 * time.Millisecond, armSACKOff: 600 * time.Millisecond},
		map[string]map[string]int64{
			armSACKLeft:      {"TCPSACKDiscard": 2600, "TCPDSACKIgnoredDubious": 1100, "TCPTimeouts": 16, "Tcp.RetransSegs": 600},
			armSACKRewritten: {"TCPSackRecovery": 6, "Tcp.RetransSegs": 29},
			armSACKOff:       {"TCPRenoRecovery": 8, "TCPTimeouts": 3, "Tcp.RetransSegs": 249},
		}, 40)
	v := judgeSACK(e)
	if v.Outcome != report.Reproduced || !strings.Contains(v.Reason, "3700 SACK and D-SACK blocks") || !strings.Contains(v.Reason, "16 retransmission timeouts") {
		t.Fatalf("%s: %s", v.Outcome, v.Reason)
	}
	if len(v.Runs) != 3 || v.Runs[0].Outcome != report.Reproduced || v.Runs[1].Outcome != report.NotReproduced || v.Runs[2].Outcome != report.NotReproduced {
		t.Errorf("runs %+v", v.Runs)
	}
	if v.Results == nil || len(v.Results.Rows) != 3 || v.Results.Rows[0][3] != "40 / 0" {
		t.Errorf("table %+v", v.Results)
	}
	if len(v.Marks) != 3 || !strings.Contains(v.Marks[2].Note, "after a timeout") {
		t.Errorf("marks %+v: the loss, the first untranslated ACK, the retransmission after a timeout", v.Marks)
	}
}

func TestSACKJudge_FaultOffIsNotReproduced(t *testing.T) {
	fast := map[string]time.Duration{armSACKLeft: 8 * time.Millisecond, armSACKRewritten: 9 * time.Millisecond, armSACKOff: 9 * time.Millisecond}
	if v := judgeSACK(sackEvidence(t, fast, nil, 0)); v.Outcome != report.NotReproduced {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}

// TestSACKJudge_DiscardsWithoutCollapseAreNotEnough: blocks discarded but
// a download as fast as the translated one is not the failure.
func TestSACKJudge_DiscardsWithoutCollapseAreNotEnough(t *testing.T) {
	e := sackEvidence(t, map[string]time.Duration{armSACKLeft: 40 * time.Millisecond, armSACKRewritten: 30 * time.Millisecond, armSACKOff: 50 * time.Millisecond},
		map[string]map[string]int64{armSACKLeft: {"TCPSACKDiscard": 20}}, 5)
	if v := judgeSACK(e); v.Outcome != report.NotReproduced {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}

func TestSACKJudge_AMissingClientIsAnError(t *testing.T) {
	e := sackEvidence(t, map[string]time.Duration{armSACKLeft: time.Second, armSACKRewritten: time.Second, armSACKOff: time.Second}, nil, 0)
	e.Clients = e.Clients[:2]
	if v := judgeSACK(e); v.Outcome != report.Error {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}
