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

// ecnEvidence builds each arm's connections; with blackhole the device
// drops the ECN-setup SYNs on the drop port: the fallback client
// retransmits without the flags after 1 s, the client without fallback
// never connects (and, as Drive does, tries no more).
func ecnEvidence(blackhole bool) *scenario.Evidence {
	s := scenariotest.New(5 * time.Second)
	const ecnSYN = packet.SYN | packet.ECE | packet.CWR
	nofb := netip.MustParseAddr("198.18.0.10")
	port := uint16(41000)
	for _, a := range ecnArms {
	conns:
		for i := 0; i < ecnConns; i++ {
			port++
			src := scenariotest.Client
			if a.host == "nofallback" {
				src = nofb
			}
			local := netip.AddrPortFrom(src, port)
			remote := netip.AddrPortFrom(scenariotest.Server, uint16(a.port))
			at := time.Duration(i) * 1100 * time.Millisecond
			requests := a.name != armECNOff
			dropped := blackhole && requests && a.port == ecnDropPort
			flags := packet.SYN
			if requests {
				flags = ecnSYN
			}
			r := scenario.ClientResult{Name: "connection", Arm: a.name, Local: local, Remote: remote, Start: s.At(at), Status: 200}
			drop := func(p *report.Packet) { p.Dropped, p.Note = true, "ecn-syn-drop: ECN-setup SYN dropped" }
			switch {
			case dropped && a.host == "nofallback":
				for j := 0; j < 4; j++ {
					s.Packet(at+time.Duration(j)*time.Second, local, remote, ecnSYN, 1, 0, 0, drop)
				}
				r.Local, r.Status, r.Err, r.Kind = netip.AddrPort{}, 0, "dial tcp: i/o timeout", scenario.KindTimeout // Remote stays: Drive knows it
				r.End = s.At(at + ecnDialFor)
				s.Evidence.Clients = append(s.Evidence.Clients, r)
				break conns
			case dropped:
				s.Packet(at, local, remote, ecnSYN, 1, 0, 0, drop)
				s.Packet(at+time.Second, local, remote, packet.SYN, 1, 0, 0, nil)
				s.Packet(at+time.Second+time.Millisecond, remote, local, packet.SYN|packet.ACK, 1, 2, 0, nil)
				r.End = s.At(at + time.Second + 2*time.Millisecond)
			default:
				s.Packet(at, local, remote, flags, 1, 0, 0, nil)
				synack := packet.SYN | packet.ACK
				if requests {
					synack |= packet.ECE // the server agrees
				}
				s.Packet(at+time.Millisecond, remote, local, synack, 1, 2, 0, nil)
				r.End = s.At(at + 2*time.Millisecond)
			}
			s.Evidence.Clients = append(s.Evidence.Clients, r)
		}
	}
	return s.Evidence
}

func TestECNJudge_DroppedECNSYNsCostASecondOrTheConnection(t *testing.T) {
	v := judgeECN(ecnEvidence(true))
	if v.Outcome != report.Reproduced {
		t.Fatalf("%s: %s", v.Outcome, v.Reason)
	}
	want := map[string]report.Outcome{armECN: report.Reproduced, armECNClean: report.NotReproduced, armECNNoFB: report.Reproduced, armECNOff: report.NotReproduced}
	scenariotest.WantRuns(t, v.Runs, want)
	if !strings.Contains(v.Reason, "opened after 1.00 s to 1.00 s") || !strings.Contains(v.Reason, "all 4 SYNs") {
		t.Errorf("reason %s", v.Reason)
	}
	if len(v.Ladder) != 2 || v.Ladder[1].A.Addr() != netip.MustParseAddr("198.18.0.10") {
		t.Errorf("ladder %v: the fallback client's first connection and the attempt that never opened", v.Ladder)
	}
	if len(v.Marks) != 3 || !strings.Contains(v.Marks[2].Note, "SYN 4") {
		t.Errorf("marks %+v: the dropped and the resent SYN, the last SYN of the attempt without fallback", v.Marks)
	}
}

func TestECNJudge_FaultOffIsNotReproduced(t *testing.T) {
	v := judgeECN(ecnEvidence(false))
	if v.Outcome != report.NotReproduced || !strings.Contains(v.Reason, "3 negotiated ECN") {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}

func TestECNJudge_AMissingArmIsAnError(t *testing.T) {
	e := ecnEvidence(true)
	var kept []scenario.ClientResult
	for _, r := range e.Clients {
		if r.Arm != armECNOff {
			kept = append(kept, r)
		}
	}
	e.Clients = kept
	if v := judgeECN(e); v.Outcome != report.Error {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}
