package pathmtu

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
	"github.com/faultbox/faultbox/internal/serve"
)

var (
	client6 = netip.MustParseAddr("2001:db8::1")
	server6 = netip.MustParseAddr("2001:db8::2")
)

// what the device did to one connection, for the synthetic evidence
type connFate struct {
	done    bool // the large answer arrived
	drops   int  // too-big server packets dropped
	icmp    bool // each answered with an ICMP error
	clamped bool
	resumed bool // smaller packets crossed after the drops
}

// addConn adds one arm's client over one IP version, its packets and the
// server's log line for the small answer.
func addConn(s *scenariotest.Synth, a pmtuArm, v6 bool, cport uint16, f connFate) {
	c, srv := scenariotest.Client, scenariotest.Server
	family := "IPv4"
	if v6 {
		c, srv, family = client6, server6, "IPv6"
	}
	local, remote := netip.AddrPortFrom(c, cport), netip.AddrPortFrom(srv, uint16(a.port))
	r := scenario.ClientResult{Name: a.name + " " + family, Arm: a.name, Local: local, Remote: remote,
		Start: s.At(10 * time.Millisecond), End: s.At(10*time.Millisecond + 4*time.Second)}
	if f.done {
		r.Status, r.Bytes, r.End = 200, largeSize, s.At(20*time.Millisecond)
	} else {
		r.Err, r.Kind = "read body: i/o timeout", scenario.KindTimeout
	}
	s.Evidence.Clients = append(s.Evidence.Clients, r)
	s.ServeLog("serve", 5*time.Millisecond, serve.Event{Event: "response", Peer: local.String(), Bytes: 500})
	s.Packet(0, local, remote, packet.SYN, 1, 0, 0, func(p *report.Packet) {
		if f.clamped {
			p.Modified, p.Note = true, clampNote
		}
	})
	s.Packet(time.Millisecond, remote, local, packet.SYN|packet.ACK, 7, 2, 0, nil)
	s.Packet(5*time.Millisecond, remote, local, packet.ACK|packet.PSH, 8, 73, 621, func(p *report.Packet) { p.Size = 673 })
	for i := range f.drops {
		at := 10*time.Millisecond + time.Duration(i)*time.Millisecond
		s.Packet(at, remote, local, packet.ACK, 629+uint32(i)*1448, 146, 1448, func(p *report.Packet) {
			p.Dropped, p.Note, p.Size, p.Out = true, tooBigNote, 1500, time.Time{}
		})
		if f.icmp {
			e := &report.ICMPError{Type: 3, Code: 4, MTU: linkMTU, Src: remote, Dst: local, Proto: packet.ProtoTCP}
			s.Evidence.Capture.Packets = append(s.Evidence.Capture.Packets, report.Packet{To: "server", Out: s.At(at), Injected: true,
				Proto: packet.ProtoICMP, Src: netip.AddrPortFrom(netip.MustParseAddr(router4), 0), Dst: netip.AddrPortFrom(srv, 0), ICMP: e})
		}
	}
	if f.resumed {
		s.Packet(3*time.Second, remote, local, packet.ACK, 629, 146, 1024, func(p *report.Packet) { p.Size = 1076 })
	}
}

// pmtudEvidence is a run in which the black hole arm had fate hole and
// every other arm its working fate (fault on) or a clean path (fault off).
func pmtudEvidence(hole connFate, faultOn bool) *scenario.Evidence {
	s := scenariotest.New(20 * time.Second)
	port := uint16(40000)
	for _, a := range pmtuArms {
		f := connFate{done: true}
		switch {
		case a == armHole:
			f = hole
		case !faultOn:
		case a == armClamp:
			f.clamped = true
		case a == armProbing:
			f.drops, f.resumed = 10, true
		case a == armICMP:
			f.drops, f.icmp = 10, true
		}
		for _, v6 := range []bool{false, true} {
			port++
			addConn(s, a, v6, port, f)
		}
	}
	return s.Evidence
}

func TestPMTUDJudge_BlackHoleOverBothVersions(t *testing.T) {
	v := judgePMTUD(pmtudEvidence(connFate{drops: 10}, true))
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	want := map[string]report.Outcome{armHole.name: report.Reproduced, armClamp.name: report.NotReproduced,
		armProbing.name: report.NotReproduced, armICMP.name: report.NotReproduced}
	scenariotest.WantRuns(t, v.Runs, want)
	for _, r := range v.Runs {
		if r.Outcome != r.Expected {
			t.Errorf("arm %s: %s (expected %s): %s", r.Name, r.Outcome, r.Expected, r.Reason)
		}
	}
	for _, s := range []string{"IPv4: 10 server packets of up to 1500 bytes dropped", "IPv6: 10 server packets", "no ICMP reached the server"} {
		if !strings.Contains(v.Reason, s) {
			t.Errorf("reason lacks %q: %s", s, v.Reason)
		}
	}
	if r := v.Runs[2]; !strings.Contains(r.Reason, "found the black hole 2.99 s after the first drop and went on with 1076-byte packets") {
		t.Errorf("probing arm reason: %s", r.Reason)
	}
	if r := v.Runs[3]; !strings.Contains(r.Reason, "each answered with an ICMP frag needed, mtu 1400 to the server") {
		t.Errorf("ICMP arm reason: %s", r.Reason)
	}
	if len(v.Ladder) != 5 {
		t.Errorf("%d ladder connections, want 5", len(v.Ladder))
	}
	// The first drop of each connection but the clamp's, the clamped SYN,
	// the first ICMP, the probing connection's first packet through.
	if len(v.Marks) != 7 || !strings.Contains(v.Marks[0].Note, "no ICMP comes back") {
		t.Errorf("%d marks (want 7): %+v", len(v.Marks), v.Marks)
	}
}

// The fault off: every answer arrives, nothing is dropped.
func TestPMTUDJudge_FaultOff(t *testing.T) {
	v := judgePMTUD(pmtudEvidence(connFate{done: true}, false))
	if v.Outcome != report.NotReproduced || !strings.HasPrefix(v.Reason, "no black hole") {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
}

// A hang with an ICMP error reaching the server is not the black hole
// (something else failed); nor is a hang over one IP version only.
func TestPMTUDJudge_NotABlackHole(t *testing.T) {
	for name, hole := range map[string]connFate{
		"ICMP reached the server": {drops: 10, icmp: true},
		"nothing dropped":         {},
	} {
		if v := judgePMTUD(pmtudEvidence(hole, true)); v.Outcome != report.NotReproduced {
			t.Errorf("%s: outcome %s: %s", name, v.Outcome, v.Reason)
		}
	}
	e := pmtudEvidence(connFate{drops: 10}, true)
	for i := range e.Clients { // the IPv6 black hole client got its answer
		if c := &e.Clients[i]; c.Arm == armHole.name && c.Remote.Addr().Is6() {
			c.Err, c.Kind, c.Bytes = "", "", largeSize
		}
	}
	if v := judgePMTUD(e); v.Outcome != report.NotReproduced {
		t.Errorf("one IP version hung: outcome %s: %s", v.Outcome, v.Reason)
	}
}

func TestPMTUDJudge_AClientThatNeverConnectedIsAnError(t *testing.T) {
	e := pmtudEvidence(connFate{drops: 10}, true)
	e.Clients[0].Local, e.Clients[0].Err = netip.AddrPort{}, "dial tcp 198.18.0.2:8501: connect: connection refused"
	if v := judgePMTUD(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "connection refused") {
		t.Errorf("outcome %s: %s", v.Outcome, v.Reason)
	}
}
