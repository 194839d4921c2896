package tcpext

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
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// tfoKind is what becomes of one Fast Open request.
type tfoKind int

const (
	tfoFast    tfoKind = iota // SYN-data acknowledged
	tfoRetried                // SYN-data dropped, plain SYN 1 s later
	tfoHung                   // SYN-data and three retransmissions dropped
	tfoPlain                  // Fast Open off: a plain SYN, answered
)

// tfoBuilder adds requests to evidence on a clock of its own.
type tfoBuilder struct {
	t    *testing.T
	s    *scenariotest.Synth
	port uint16
}

func (b *tfoBuilder) request(a arm, name string, at time.Duration, kind tfoKind) time.Duration {
	b.port++
	src := scenariotest.Client
	if a.host != "client" {
		src = netip.MustParseAddr("198.18.0.10")
	}
	local := netip.AddrPortFrom(src, b.port)
	remote := netip.AddrPortFrom(scenariotest.Server, uint16(a.port))
	drop := func(p *report.Packet) { p.Dropped, p.Note = true, "tfo-drop: Fast Open SYN dropped" }
	r := scenario.ClientResult{Name: a.host + " " + name, Arm: a.name, Local: local, Remote: remote, Start: b.s.At(at), Status: 200, Bytes: 1000}
	took, fields := time.Millisecond, map[string]any{"label": a.name + " " + name}
	switch kind {
	case tfoFast:
		b.s.Packet(at, local, remote, packet.SYN, 1, 0, 60, nil)
		fields["options"] = sockdiag.OptSYNData
	case tfoRetried:
		b.s.Packet(at, local, remote, packet.SYN, 1, 0, 60, drop)
		b.s.Packet(at+time.Second, local, remote, packet.SYN, 1, 0, 0, nil)
		took, fields["fastopen_client_fail"] = time.Second+time.Millisecond, sockdiag.TFOSYNRetransmitted
	case tfoHung:
		b.s.Packet(at, local, remote, packet.SYN, 1, 0, 60, drop)
		for i := 1; i <= 3; i++ {
			b.s.Packet(at+time.Duration(i)*time.Second, local, remote, packet.SYN, 1, 0, 0, drop)
		}
		took, r.Status, r.Bytes, r.Err, r.Kind = tfoAnswerWait, 0, 0, "read response: i/o timeout", scenario.KindTimeout
	case tfoPlain:
		b.s.Packet(at, local, remote, packet.SYN, 1, 0, 0, nil)
	}
	r.End = b.s.At(at + took)
	b.s.Evidence.Clients = append(b.s.Evidence.Clients, r)
	if kind != tfoHung {
		b.s.Kernel(b.t, a.host+"-kernel", at+took, "socket", fields)
	}
	return at + took
}

func (b *tfoBuilder) counters(a arm, at time.Duration, end map[string]int64) {
	for _, label := range []string{"start", "end"} {
		f := map[string]any{"label": a.name + " " + label}
		for _, k := range tfoCounters {
			f[k] = 0
			if label == "end" {
				f[k] = end[k]
			}
		}
		b.s.Kernel(b.t, a.host+"-kernel", at, "netstat", f)
	}
}

// tfoEvidence builds a run: with blackhole the device drops SYN-data on
// the data port and whole connections on the flow port, and the detecting
// client pauses Fast Open twice.
func tfoEvidence(t *testing.T, blackhole bool) *scenario.Evidence {
	b := &tfoBuilder{t: t, s: scenariotest.New(20 * time.Second), port: 41000}
	arms := map[string]arm{}
	for _, a := range tfoArms {
		arms[a.name] = a
	}
	pick := func(bad tfoKind) tfoKind {
		if blackhole {
			return bad
		}
		return tfoFast
	}
	at := b.request(arms[armTFOClean], tfoCookie, 0, tfoPlain)
	for i := 1; i <= 3; i++ {
		at = b.request(arms[armTFOClean], fmt.Sprintf("request %d", i), at, tfoFast)
	}
	b.counters(arms[armTFOClean], at, map[string]int64{"TCPFastOpenActive": 3})
	for i := 1; i <= 3; i++ {
		at = b.request(arms[armTFOData], fmt.Sprintf("request %d", i), at, pick(tfoRetried))
	}
	fails := map[string]int64{}
	if blackhole {
		fails = map[string]int64{"TCPFastOpenActiveFail": 3, "TCPSynRetrans": 3}
	}
	b.counters(arms[armTFOData], at, fails)
	b.s.Kernel(t, "client-kernel", at, "tcp_metrics", map[string]any{"output": "198.18.0.2 age 0.1sec cwnd 10 fo_mss 1460 fo_syn_drops 3/0.5sec ago fo_cookie 0102 source 198.18.0.1\n"})

	at = b.request(arms[armTFODetect], tfoCookie, 0, tfoPlain)
	// Hung, paused 2 s, hung, paused 4 s, Fast Open again.
	for i, k := range []tfoKind{tfoHung, tfoPlain, tfoPlain, tfoPlain, tfoHung, tfoPlain, tfoPlain, tfoPlain, tfoPlain, tfoPlain, tfoPlain, tfoPlain, tfoPlain, tfoFast} {
		if !blackhole {
			k = tfoFast
		}
		at = b.request(arms[armTFODetect], fmt.Sprintf("request %d", i+1), at, k) + tfoPause
	}
	b.counters(arms[armTFODetect], at, map[string]int64{"TCPFastOpenBlackhole": 2})
	at = b.request(arms[armTFODefault], tfoCookie, 0, tfoPlain)
	for i := 1; i <= 3; i++ {
		at = b.request(arms[armTFODefault], fmt.Sprintf("request %d", i), at, pick(tfoHung))
	}
	b.counters(arms[armTFODefault], at, nil)
	return b.s.Evidence
}

func TestTFOJudge_DroppedSYNDataCostsATimeoutEveryTime(t *testing.T) {
	v := judgeTFO(tfoEvidence(t, true))
	if v.Outcome != report.Reproduced {
		t.Fatalf("%s: %s", v.Outcome, v.Reason)
	}
	want := map[string]report.Outcome{armTFOClean: report.NotReproduced, armTFOData: report.Reproduced, armTFODetect: report.Reproduced, armTFODefault: report.Reproduced}
	scenariotest.WantRuns(t, v.Runs, want)
	for _, s := range []string{"fo_syn_drops 3", "TCPFastOpenActiveFail +3", "detected the black hole 2 times", "all 3 requests hung"} {
		if !strings.Contains(v.Reason, s) {
			t.Errorf("reason lacks %q: %s", s, v.Reason)
		}
	}
	if len(v.Marks) != 4 {
		t.Errorf("marks %+v: two on the dropped SYN-data, the detecting client's third timeout, the black-holed SYN-data", v.Marks)
	}
	if len(v.Results.Rows) != 23 {
		t.Errorf("%d table rows, want 23 (cookie requests aside)", len(v.Results.Rows))
	}
}

func TestTFOJudge_FaultOffIsNotReproduced(t *testing.T) {
	v := judgeTFO(tfoEvidence(t, false))
	if v.Outcome != report.NotReproduced {
		t.Fatalf("%s: %s", v.Outcome, v.Reason)
	}
	scenariotest.WantRuns(t, v.Runs, map[string]report.Outcome{armTFOClean: report.NotReproduced, armTFOData: report.NotReproduced,
		armTFODetect: report.NotReproduced, armTFODefault: report.NotReproduced})
}

func TestTFOJudge_AFailedCookieRequestIsAnError(t *testing.T) {
	e := tfoEvidence(t, true)
	for i := range e.Clients {
		if strings.HasSuffix(e.Clients[i].Name, tfoCookie) && e.Clients[i].Arm == armTFODefault {
			e.Clients[i].Err = "dial tcp: i/o timeout"
		}
	}
	if v := judgeTFO(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "cookie request failed") {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}
