package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/serve"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

func TestScenarioRegistry_ListsThisPartsScenarios(t *testing.T) {
	names := Names()
	for _, want := range []string{"asa-off-by-one", "asa-stuck-send", "fin-wait-2", "lingering-close", "nat-idle"} {
		s, ok := Lookup(want)
		if !ok {
			t.Errorf("scenario %s is not registered (have %v)", want, names)
			continue
		}
		if s.Drive == nil || s.Judge == nil || s.Summary == "" || s.Description == "" {
			t.Errorf("scenario %s: Drive, Judge, Summary and Description are all needed", want)
		}
		if s.budget() > 25*time.Second {
			t.Errorf("scenario %s: budget %v leaves no room in 30 s", want, s.budget())
		}
		for _, sc := range s.Sysctls {
			if sc.Why == "" {
				t.Errorf("scenario %s: sysctl %s has no reason", want, sc.Key)
			}
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("Names() not sorted: %v", names)
		}
	}
}

func TestScenarioRegister_RejectsBadNamesAndDuplicates(t *testing.T) {
	ok := func(*Context) error { return nil }
	judge := func(*Evidence) Verdict { return Verdict{} }
	for _, s := range []*Scenario{
		{Name: "Bad Name", Summary: "x", Drive: ok, Judge: judge},
		{Name: "asa-off-by-one", Summary: "x", Drive: ok, Judge: judge}, // taken
		{Name: "no-judge", Summary: "x", Drive: ok},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", s.Name)
				}
			}()
			Register(s)
		}()
	}
	if _, ok := Lookup("no-judge"); ok {
		t.Error("a rejected scenario was registered")
	}
}

func TestScenarioRun_UnknownNameIsAnInputError(t *testing.T) {
	_, err := Run(context.Background(), "no-such-scenario", Options{ReportDir: t.TempDir()})
	var ue *UnknownError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "asa-off-by-one") {
		t.Fatalf("Run(unknown) = %v, want an UnknownError listing the scenarios", err)
	}
}

func TestScenarioExitCode_FollowsOutcomeAndExpectation(t *testing.T) {
	for _, c := range []struct {
		outcome, expected report.Outcome
		want              int
	}{
		{report.Reproduced, report.Reproduced, ExitAsExpected},
		{report.NotReproduced, report.Reproduced, ExitUnexpected},
		{report.NotReproduced, report.NotReproduced, ExitAsExpected},
		{report.Error, report.Reproduced, ExitError},
	} {
		r := &Result{Report: &report.Report{Outcome: c.outcome, Expected: c.expected}}
		if got := r.ExitCode(); got != c.want {
			t.Errorf("outcome %s, expected %s: exit %d, want %d", c.outcome, c.expected, got, c.want)
		}
	}
}

func TestScenarioProgress_SilentWhenNotATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "progress")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Fatal("a regular file taken for a terminal")
	}
	p := newProgress(f, "x")
	p.set("something", time.Now().Add(time.Second))
	p.draw()
	p.close()
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Errorf("progress wrote %d bytes to a file", fi.Size())
	}
	if IsTerminal(nil) {
		t.Error("nil taken for a terminal")
	}
}

// synth builds evidence by hand: packets of connections, socket samples,
// client results and serve log lines, on a clock starting at t0.
type synth struct {
	t0 time.Time
	e  *Evidence
	sr *sockdiag.Series
}

var (
	cliAddr = netip.MustParseAddr("198.18.0.1")
	srvAddr = netip.MustParseAddr("198.18.0.2")
)

func newSynth(d time.Duration) *synth {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sr := &sockdiag.Series{Start: t0, Interval: 20 * time.Millisecond}
	for at := time.Duration(0); at <= d; at += 20 * time.Millisecond {
		sr.Ticks = append(sr.Ticks, at)
	}
	return &synth{t0: t0, sr: sr, e: &Evidence{Start: t0, Capture: &report.Capture{},
		Sockets: map[string]*sockdiag.Series{"server": sr}, Logs: map[string][]LogEvent{}}}
}

func (s *synth) at(d time.Duration) time.Time { return s.t0.Add(d) }

// pkt adds a packet passing the device at d; mod adjusts it (drops,
// injections, notes).
func (s *synth) pkt(d time.Duration, src, dst netip.AddrPort, flags uint8, seq, ack uint32, n int, mod func(*report.Packet)) {
	p := report.Packet{From: "client", To: "server", In: s.at(d), Out: s.at(d + 10*time.Microsecond),
		Proto: packet.ProtoTCP, Src: src, Dst: dst, Flags: flags, Seq: seq, Ack: ack, Len: n}
	if src.Addr() == srvAddr {
		p.From, p.To = "server", "client"
	}
	if mod != nil {
		mod(&p)
	}
	s.e.Capture.Packets = append(s.e.Capture.Packets, p)
}

// sock adds samples of the server socket local->remote in state st with
// sendq unacknowledged bytes, at every tick in [from, to].
func (s *synth) sock(local, remote netip.AddrPort, st sockdiag.State, sendq uint32, from, to time.Duration) {
	for _, tick := range s.sr.Ticks {
		if tick >= from && tick <= to {
			tm := sockdiag.TimerOff
			if sendq > 0 {
				tm = sockdiag.TimerOn
			}
			s.sr.Samples = append(s.sr.Samples, sockdiag.Sample{T: tick, Key: sockdiag.Key{Src: local, Dst: remote},
				State: st, SendQ: sendq, Timer: tm})
		}
	}
}

func (s *synth) log(name string, d time.Duration, ev serve.Event) {
	s.e.Logs[name] = append(s.e.Logs[name], LogEvent{Event: ev, At: s.at(d)})
}

const ms1 = time.Millisecond

// asaArm lays out one cancelled download on port: handshake, request,
// response data, the client's FIN at 100 ms (delivered or swallowed), and
// the device's RST at RCV.NXT+offset if offset is not nil.
func (s *synth) asaArm(arm string, port uint16, finDelivered bool, offset *int32, clientRST bool) (c, srv netip.AddrPort) {
	c, srv = netip.AddrPortFrom(cliAddr, 40000+port), netip.AddrPortFrom(srvAddr, port)
	const isn, sisn = 1000, 5000
	s.pkt(1*ms1, c, srv, packet.SYN, isn, 0, 0, nil)
	s.pkt(2*ms1, srv, c, packet.SYN|packet.ACK, sisn, isn+1, 0, nil)
	s.pkt(3*ms1, c, srv, packet.ACK|packet.PSH, isn+1, sisn+1, 73, nil)
	s.pkt(4*ms1, srv, c, packet.ACK, sisn+1, isn+74, 1448, nil)
	s.pkt(100*ms1, c, srv, packet.FIN|packet.ACK, isn+74, sisn+1449, 0, func(p *report.Packet) {
		if !finDelivered {
			p.Dropped, p.Out, p.Note = true, time.Time{}, "asa-teardown: FIN swallowed"
		}
	})
	rcvNxt := uint32(isn + 74)
	if finDelivered {
		rcvNxt++
	}
	if offset != nil {
		s.pkt(100*ms1+50*time.Microsecond, c, srv, packet.RST|packet.ACK, rcvNxt+uint32(*offset), sisn+1449, 0, func(p *report.Packet) {
			p.From, p.In, p.Injected, p.Note = "", time.Time{}, true, "asa-teardown: rst to server"
		})
		s.pkt(101*ms1, srv, c, packet.ACK, sisn+1449, rcvNxt, 0, func(p *report.Packet) {
			p.Dropped, p.Out, p.Note = true, time.Time{}, "asa-teardown: challenge ACK dropped"
		})
	}
	if clientRST {
		s.pkt(120*ms1, c, srv, packet.RST|packet.ACK, isn+75, 0, 0, nil)
	}
	s.e.Clients = append(s.e.Clients, ClientResult{Name: "client", Arm: arm, Local: c, Remote: srv,
		Start: s.at(0), End: s.at(120 * ms1), Status: 200})
	return c, srv
}

func ptr(v int32) *int32 { return &v }

// TestScenarioASAJudge_ReportsWhichCaseTheKernelFellInto: the verdict comes
// from the evidence: the RST one below RCV.NXT after a delivered FIN with
// the socket gone at once is "accepted"; an RST two below with the socket
// in CLOSE-WAIT with unacknowledged data for 6.5 s, and an RST after a
// lost FIN with the socket in ESTAB, are stuck: reproduced.
func TestScenarioASAJudge_ReportsWhichCaseTheKernelFellInto(t *testing.T) {
	s := newSynth(8 * time.Second)
	c1, s1 := s.asaArm(asaOffByOneArms[0].name, 8001, true, ptr(-1), false)
	s.sock(s1, c1, sockdiag.Established, 0, 0, 80*ms1)
	s.log("serve", 100*ms1+100*time.Microsecond, serve.Event{Event: "error", Peer: c1.String(), Err: "write: write tcp: broken pipe"})

	c2, s2 := s.asaArm(asaOffByOneArms[1].name, 8002, true, ptr(-2), false)
	s.sock(s2, c2, sockdiag.Established, 1000, 0, 80*ms1)
	s.sock(s2, c2, sockdiag.CloseWait, 300<<10, 100*ms1, 6600*ms1)
	s.log("serve", 6600*ms1, serve.Event{Event: "error", Peer: c2.String(), Err: "write: write tcp: connection timed out"})

	c3, s3 := s.asaArm(asaOffByOneArms[2].name, 8003, false, ptr(-1), false)
	s.sock(s3, c3, sockdiag.Established, 300<<10, 0, 6600*ms1)

	v := judgeASAOffByOne(s.e)
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

// TestScenarioASAJudge_NoDeviceRSTIsNotReproduced: the evidence of a run
// with the fault off (the client's FIN and RST reach the server, its
// sockets go at once) is "not reproduced", whatever the scenario expects.
func TestScenarioASAJudge_NoDeviceRSTIsNotReproduced(t *testing.T) {
	s := newSynth(2 * time.Second)
	for i, a := range asaOffByOneArms {
		c, srv := s.asaArm(a.name, uint16(8001+i), true, nil, true)
		s.sock(srv, c, sockdiag.Established, 0, 0, 80*ms1)
		s.sock(srv, c, sockdiag.CloseWait, 0, 100*ms1, 110*ms1)
	}
	v := judgeASAOffByOne(s.e)
	if v.Outcome != report.NotReproduced {
		t.Fatalf("outcome %s (%s), want not reproduced", v.Outcome, v.Reason)
	}
	if !strings.Contains(v.Reason, "no RST from the device") {
		t.Errorf("reason %q does not say why", v.Reason)
	}
}

// TestScenarioASAJudge_StuckWithoutOffByOneIsNotTheASAFailure: a socket
// that stays in CLOSE-WAIT although the device's RST was exactly at
// RCV.NXT is not the off-by-one failure.
func TestScenarioASAJudge_StuckWithoutOffByOneIsNotTheASAFailure(t *testing.T) {
	s := newSynth(3 * time.Second)
	for i, a := range asaOffByOneArms {
		c, srv := s.asaArm(a.name, uint16(8001+i), true, ptr(0), false)
		s.sock(srv, c, sockdiag.CloseWait, 4096, 100*ms1, 3*time.Second)
	}
	if v := judgeASAOffByOne(s.e); v.Outcome != report.NotReproduced {
		t.Errorf("outcome %s (%s), want not reproduced", v.Outcome, v.Reason)
	}
}

func TestScenarioASAJudge_MissingClientIsAnError(t *testing.T) {
	s := newSynth(time.Second)
	want := fmt.Sprintf("variant %q: its client never connected (no result)", asaOffByOneArms[0].name)
	if v := judgeASAOffByOne(s.e); v.Outcome != report.Error || v.Reason != want {
		t.Errorf("outcome %s (%s) with no clients, want error: %s", v.Outcome, v.Reason, want)
	}
	// A client whose dial failed: the verdict gives its error.
	s.e.Clients = []ClientResult{{Name: "client", Arm: natArmSilent, Err: "dial tcp: i/o timeout"}}
	want = natArmSilent + ": the client never connected (dial tcp: i/o timeout)"
	if v := judgeNATIdle(s.e); v.Outcome != report.Error || v.Reason != want {
		t.Errorf("outcome %s (%s) with a failed dial, want error: %s", v.Outcome, v.Reason, want)
	}
}

func TestScenarioEvidence_SocketLifeAndCounts(t *testing.T) {
	s := newSynth(time.Second)
	l, r := netip.MustParseAddrPort("198.18.0.2:80"), netip.MustParseAddrPort("198.18.0.1:4000")
	s.sock(l, r, sockdiag.Established, 0, 0, 100*ms1)
	s.sock(l, r, sockdiag.FinWait2, 0, 120*ms1, 400*ms1)
	life := s.e.Socket("server", l, r)
	if !life.Seen || len(life.Spans) != 2 || life.Spans[1].State != sockdiag.FinWait2 {
		t.Fatalf("life %+v", life)
	}
	if got := life.Gone.Sub(s.t0); got != 420*ms1 {
		t.Errorf("gone at %v, want 420ms (the first tick without it)", got)
	}
	if st, ok := life.StateAt(s.at(200 * ms1)); !ok || st != sockdiag.FinWait2 {
		t.Errorf("state at 200ms: %v %v", st, ok)
	}
	if _, ok := life.StateAt(s.at(500 * ms1)); ok {
		t.Error("a state after the socket was gone")
	}
	if p := Peak(s.e.CountState("server", 80, sockdiag.FinWait2)); p.N != 1 || p.At.Sub(s.t0) != 120*ms1 {
		t.Errorf("peak %+v", p)
	}
	if other := s.e.Socket("server", r, l); other.Seen {
		t.Error("the reversed tuple matched")
	}
}

// TestScenarioLingeringJudge_LostWithoutLingerDeliveredWith: the abrupt
// arm's client failed on its send with the server's RST in the capture
// after serve wrote its 401; the lingering arm got the 401.
func TestScenarioLingeringJudge_LostWithoutLingerDeliveredWith(t *testing.T) {
	s := newSynth(time.Second)
	ca, sa := netip.AddrPortFrom(cliAddr, 41000), netip.AddrPortFrom(srvAddr, lcAbruptPort)
	cl, sl := netip.AddrPortFrom(cliAddr, 41001), netip.AddrPortFrom(srvAddr, lcLingerPort)
	s.pkt(10*ms1, sa, ca, packet.RST, 7000, 0, 0, nil)
	s.log("serve-abrupt", 9*ms1, serve.Event{Event: "response", Status: 401, Peer: ca.String()})
	s.log("serve-linger", 9*ms1, serve.Event{Event: "response", Status: 401, Peer: cl.String()})
	s.e.Clients = []ClientResult{
		{Arm: lcArmAbrupt, Local: ca, Remote: sa, Err: "ConnectionResetError: [Errno 104] Connection reset by peer", Kind: KindReset, End: s.at(11 * ms1)},
		{Arm: lcArmLinger, Local: cl, Remote: sl, Status: 401, End: s.at(50 * ms1)},
	}
	v := judgeLingeringClose(s.e)
	if v.Outcome != report.Reproduced {
		t.Fatalf("outcome %s: %s", v.Outcome, v.Reason)
	}
	// The same evidence without the server's RST is not the failure.
	s.e.Capture.Packets = nil
	if v := judgeLingeringClose(s.e); v.Outcome != report.NotReproduced {
		t.Errorf("without the RST: %s, want not reproduced", v.Outcome)
	}
	// Nor is a lingering arm that lost its answer too.
	s.pkt(10*ms1, sa, ca, packet.RST, 7000, 0, 0, nil)
	s.e.Clients[1].Status, s.e.Clients[1].Err = 0, "BrokenPipeError"
	if v := judgeLingeringClose(s.e); v.Outcome != report.NotReproduced {
		t.Errorf("fix arm failing too: %s, want not reproduced", v.Outcome)
	}
}

func TestScenarioSysctlReport_NamesHostAndReason(t *testing.T) {
	m, note := sysctlReport([]Sysctl{{Host: "server", Key: "net.ipv4.tcp_fin_timeout", Value: "3", Why: "short"}})
	if m["server: net.ipv4.tcp_fin_timeout"] != "3" || !strings.Contains(note, "tcp_fin_timeout=3 in server: short") {
		t.Errorf("sysctls %v, note %q", m, note)
	}
}
