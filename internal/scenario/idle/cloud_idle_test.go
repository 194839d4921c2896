package idle

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// cloudFate is what happened to one arm's request, for synthetic evidence.
type cloudFate struct {
	answered  bool
	rstTo     string // "", "client", "both"
	probes    int
	serverEnd sockdiag.State // the server socket's last state; 0: gone
}

// addCloudArm adds one arm's client, its packets and the server socket.
func addCloudArm(s *scenariotest.Synth, name string, port uint16, cport uint16, f cloudFate) {
	local, remote := netip.AddrPortFrom(scenariotest.Client, cport), netip.AddrPortFrom(scenariotest.Server, port)
	r := scenario.ClientResult{Name: name, Arm: name, Local: local, Remote: remote, Start: s.At(4 * time.Second), End: s.At(4*time.Second + time.Millisecond)}
	s.Packet(0, local, remote, packet.ACK|packet.PSH, 1, 1, 60, nil)
	s.Packet(time.Millisecond, remote, local, packet.ACK|packet.PSH, 1, 61, 1122, nil)
	for i := range f.probes {
		s.Packet(time.Duration(i+1)*time.Second, local, remote, packet.ACK, 60, 1123, 0, nil)
	}
	switch {
	case f.answered:
		r.Status, r.Bytes = 200, 1000
		s.Packet(4*time.Second, local, remote, packet.ACK|packet.PSH, 61, 1123, 60, nil)
	default:
		s.Packet(4*time.Second, local, remote, packet.ACK|packet.PSH, 61, 1123, 60, func(p *report.Packet) {
			p.Dropped, p.Note, p.Out = true, expiredNote, time.Time{}
		})
		if f.rstTo == "" {
			r.Err, r.Kind, r.End = "read response: i/o timeout", scenario.KindTimeout, s.At(7*time.Second)
			break
		}
		r.Err, r.Kind = "read response: connection reset by peer", scenario.KindReset
		for _, to := range []netip.AddrPort{local, remote} {
			if to == remote && f.rstTo != "both" {
				continue
			}
			from := remote
			if to == remote {
				from = local
			}
			s.Evidence.Capture.Packets = append(s.Evidence.Capture.Packets, report.Packet{To: "client", Out: s.At(4 * time.Second), Injected: true,
				Proto: packet.ProtoTCP, Src: from, Dst: to, Flags: packet.RST | packet.ACK, Note: "idle-timeout: rst"})
		}
	}
	s.Evidence.Clients = append(s.Evidence.Clients, r)
	if f.serverEnd != 0 {
		s.Socket(remote, local, f.serverEnd, 0, 0, 9*time.Second)
	} else {
		s.Socket(remote, local, sockdiag.Established, 0, 0, 4*time.Second)
	}
}

// cloudEvidence is a run where every vendor's fault arm met fault(v) and
// every keepalive arm was answered after its probes.
func cloudEvidence(fault func(cloudVendor) cloudFate) *scenario.Evidence {
	s := scenariotest.New(9 * time.Second)
	cport := uint16(42000)
	for _, v := range cloudVendors {
		cport++
		addCloudArm(s, armName(v, false), uint16(v.port), cport, fault(v))
		cport++
		addCloudArm(s, armName(v, true), uint16(v.port+1), cport, cloudFate{answered: true, probes: 3, serverEnd: sockdiag.Established})
	}
	return s.Evidence
}

// asTheVendorDoes is each vendor's failure: NLB resets the client only,
// Azure with TCP reset both ends, the others hang with the server unaware.
func asTheVendorDoes(v cloudVendor) cloudFate {
	switch v.rstTo {
	case "client":
		return cloudFate{rstTo: "client", serverEnd: sockdiag.Established}
	case "both":
		return cloudFate{rstTo: "both"}
	}
	return cloudFate{serverEnd: sockdiag.Established}
}

func TestCloudIdleJudge_EachVendorItsOwnWay(t *testing.T) {
	v := judgeCloudIdle(cloudEvidence(asTheVendorDoes))
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	if len(v.Runs) != 2*len(cloudVendors) {
		t.Fatalf("%d runs", len(v.Runs))
	}
	for _, r := range v.Runs {
		if r.Outcome != r.Expected {
			t.Errorf("%s: %s, expected %s: %s", r.Name, r.Outcome, r.Expected, r.Reason)
		}
	}
	for _, s := range []string{"AWS NLB: the second request failed at once", "reset the client; the server's socket: ESTAB, unaware",
		"reset the client and the server; the server's socket: gone", "Cloud NAT, half-closed: the slow answer to the half-closed connection hung",
		"AWS NLB + keepalive: answered"} {
		if !strings.Contains(v.Reason, s) {
			t.Errorf("reason lacks %q: %s", s, v.Reason)
		}
	}
	if len(v.Marks) != 8 { // each fault arm's dropped request, and the RSTs: NLB 1, Azure's 2
		t.Errorf("%d marks, want 8: %+v", len(v.Marks), v.Marks)
	}
	if !strings.Contains(v.Runs[1].Reason, "3 keepalive probes") {
		t.Errorf("keepalive arm: %s", v.Runs[1].Reason)
	}
}

func TestCloudIdleJudge_FaultOff(t *testing.T) {
	v := judgeCloudIdle(cloudEvidence(func(cloudVendor) cloudFate { return cloudFate{answered: true, serverEnd: sockdiag.Established} }))
	if v.Outcome != report.NotReproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

// A device that resets both ends is not an NLB, one that resets nobody is
// not Azure with TCP reset on idle.
func TestCloudIdleJudge_WrongVendorSemantics(t *testing.T) {
	for name, swap := range map[string]func(cloudVendor) cloudFate{
		"NLB resetting the server too": func(v cloudVendor) cloudFate {
			if v.rstTo == "client" {
				return cloudFate{rstTo: "both"}
			}
			return asTheVendorDoes(v)
		},
		"Azure reset staying silent": func(v cloudVendor) cloudFate {
			if v.rstTo == "both" {
				return cloudFate{serverEnd: sockdiag.Established}
			}
			return asTheVendorDoes(v)
		},
	} {
		if v := judgeCloudIdle(cloudEvidence(swap)); v.Outcome != report.NotReproduced {
			t.Errorf("%s: outcome %s", name, v.Outcome)
		}
	}
}

func TestCloudIdleJudge_AClientThatNeverConnectedIsAnError(t *testing.T) {
	e := cloudEvidence(asTheVendorDoes)
	e.Clients[3].Local, e.Clients[3].Err = netip.AddrPort{}, "dial tcp: i/o timeout"
	if v := judgeCloudIdle(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "never connected (dial tcp: i/o timeout)") {
		t.Errorf("outcome %s: %s", v.Outcome, v.Reason)
	}
}
