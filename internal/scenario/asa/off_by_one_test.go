package asa

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
	"github.com/faultbox/faultbox/internal/serve"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

const ms1 = time.Millisecond

// cancelled lays out one cancelled download on port: handshake, request,
// response data, the client's FIN at 100 ms (delivered or swallowed), and
// the device's RST at RCV.NXT+offset if offset is not nil.
func cancelled(s *scenariotest.Synth, arm string, port uint16, finDelivered bool, offset *int32, clientRST bool) (c, srv netip.AddrPort) {
	c, srv = netip.AddrPortFrom(scenariotest.Client, 40000+port), netip.AddrPortFrom(scenariotest.Server, port)
	const isn, sisn = 1000, 5000
	s.Packet(1*ms1, c, srv, packet.SYN, isn, 0, 0, nil)
	s.Packet(2*ms1, srv, c, packet.SYN|packet.ACK, sisn, isn+1, 0, nil)
	s.Packet(3*ms1, c, srv, packet.ACK|packet.PSH, isn+1, sisn+1, 73, nil)
	s.Packet(4*ms1, srv, c, packet.ACK, sisn+1, isn+74, 1448, nil)
	s.Packet(100*ms1, c, srv, packet.FIN|packet.ACK, isn+74, sisn+1449, 0, func(p *report.Packet) {
		if !finDelivered {
			p.Dropped, p.Out, p.Note = true, time.Time{}, "asa-teardown: FIN swallowed"
		}
	})
	rcvNxt := uint32(isn + 74)
	if finDelivered {
		rcvNxt++
	}
	if offset != nil {
		s.Packet(100*ms1+50*time.Microsecond, c, srv, packet.RST|packet.ACK, rcvNxt+uint32(*offset), sisn+1449, 0, func(p *report.Packet) {
			p.From, p.In, p.Injected, p.Note = "", time.Time{}, true, "asa-teardown: rst to server"
		})
		s.Packet(101*ms1, srv, c, packet.ACK, sisn+1449, rcvNxt, 0, func(p *report.Packet) {
			p.Dropped, p.Out, p.Note = true, time.Time{}, "asa-teardown: challenge ACK dropped"
		})
	}
	if clientRST {
		s.Packet(120*ms1, c, srv, packet.RST|packet.ACK, isn+75, 0, 0, nil)
	}
	s.Evidence.Clients = append(s.Evidence.Clients, scenario.ClientResult{Name: "client", Arm: arm, Local: c, Remote: srv,
		Start: s.At(0), End: s.At(120 * ms1), Status: 200})
	return c, srv
}

func ptr(v int32) *int32 { return &v }

// TestOffByOneJudge_ReportsWhichCaseTheKernelFellInto: the verdict comes
// from the evidence: the RST one below RCV.NXT after a delivered FIN with
// the socket gone at once is "accepted"; an RST two below with the socket
// in CLOSE-WAIT with unacknowledged data for 6.5 s, and an RST after a
// lost FIN with the socket in ESTAB, are stuck: reproduced.
func TestOffByOneJudge_ReportsWhichCaseTheKernelFellInto(t *testing.T) {
	s := scenariotest.New(8 * time.Second)
	c1, s1 := cancelled(s, offByOneArms[0].name, 8001, true, ptr(-1), false)
	s.Socket(s1, c1, sockdiag.Established, 0, 0, 80*ms1)
	s.ServeLog("serve", 100*ms1+100*time.Microsecond, serve.Event{Event: "error", Peer: c1.String(), Err: "write: write tcp: broken pipe"})

	c2, s2 := cancelled(s, offByOneArms[1].name, 8002, true, ptr(-2), false)
	s.Socket(s2, c2, sockdiag.Established, 1000, 0, 80*ms1)
	s.Socket(s2, c2, sockdiag.CloseWait, 300<<10, 100*ms1, 6600*ms1)
	s.ServeLog("serve", 6600*ms1, serve.Event{Event: "error", Peer: c2.String(), Err: "write: write tcp: connection timed out"})

	c3, s3 := cancelled(s, offByOneArms[2].name, 8003, false, ptr(-1), false)
	s.Socket(s3, c3, sockdiag.Established, 300<<10, 0, 6600*ms1)

	v := judgeOffByOne(s.Evidence)
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s (%s), want reproduced", v.Outcome, v.Reason)
	}
	want := []struct {
		outcome report.Outcome
		says    []string
	}{
		{report.NotReproduced, []string{"FIN delivered", "RCV.NXT-1", "seq 74, server expected 75", "RST accepted"}},
		{report.Reproduced, []string{"RCV.NXT-2", "stuck in CLOSE-WAIT", "300 KiB", "retransmitting", "connection timed out"}},
		{report.Reproduced, []string{"FIN lost", "RCV.NXT-1", "seq 73, server expected 74", "stuck in ESTAB"}},
	}
	for i, w := range want {
		r := v.Runs[i]
		if r.Outcome != w.outcome {
			t.Errorf("%s: %s, want %s: %s", r.Name, r.Outcome, w.outcome, r.Reason)
		}
		for _, say := range w.says {
			if !strings.Contains(r.Reason, say) {
				t.Errorf("%s: reason %q does not say %q", r.Name, r.Reason, say)
			}
		}
	}
	var offs []string
	for _, e := range v.Timeline {
		if strings.Contains(e.Text, "off by") {
			offs = append(offs, e.Text)
		}
	}
	if len(offs) != 3 || !strings.Contains(offs[1], "off by -2") {
		t.Errorf("timeline RST entries: %q", offs)
	}
	if len(v.Ladder) != 3 {
		t.Errorf("ladder: %d connections, want 3", len(v.Ladder))
	}
}

// TestOffByOneJudge_NoDeviceRSTIsNotReproduced: the evidence of a run
// with the fault off (the client's FIN and RST reach the server, its
// sockets go at once) is "not reproduced", whatever the scenario expects.
func TestOffByOneJudge_NoDeviceRSTIsNotReproduced(t *testing.T) {
	s := scenariotest.New(2 * time.Second)
	for i, a := range offByOneArms {
		c, srv := cancelled(s, a.name, uint16(8001+i), true, nil, true)
		s.Socket(srv, c, sockdiag.Established, 0, 0, 80*ms1)
		s.Socket(srv, c, sockdiag.CloseWait, 0, 100*ms1, 110*ms1)
	}
	v := judgeOffByOne(s.Evidence)
	if v.Outcome != report.NotReproduced {
		t.Fatalf("outcome %s (%s), want not reproduced", v.Outcome, v.Reason)
	}
	if !strings.Contains(v.Reason, "no RST from the device") {
		t.Errorf("reason %q does not say why", v.Reason)
	}
}

// TestOffByOneJudge_StuckWithoutOffByOneIsNotTheASAFailure: a socket
// that stays in CLOSE-WAIT although the device's RST was exactly at
// RCV.NXT is not the off-by-one failure.
func TestOffByOneJudge_StuckWithoutOffByOneIsNotTheASAFailure(t *testing.T) {
	s := scenariotest.New(3 * time.Second)
	for i, a := range offByOneArms {
		c, srv := cancelled(s, a.name, uint16(8001+i), true, ptr(0), false)
		s.Socket(srv, c, sockdiag.CloseWait, 4096, 100*ms1, 3*time.Second)
	}
	if v := judgeOffByOne(s.Evidence); v.Outcome != report.NotReproduced {
		t.Errorf("outcome %s (%s), want not reproduced", v.Outcome, v.Reason)
	}
}

func TestOffByOneJudge_MissingClientIsAnError(t *testing.T) {
	s := scenariotest.New(time.Second)
	want := fmt.Sprintf("variant %q: its client never connected (no result)", offByOneArms[0].name)
	if v := judgeOffByOne(s.Evidence); v.Outcome != report.Error || v.Reason != want {
		t.Errorf("outcome %s (%s) with no clients, want error: %s", v.Outcome, v.Reason, want)
	}
}
