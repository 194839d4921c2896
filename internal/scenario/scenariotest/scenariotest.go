// Package scenariotest builds a run's evidence by hand, for tests of a
// scenario's Judge: packets of connections as the device handled them,
// socket samples of the server, serve and proxy log lines and client
// results, on a clock of its own.
package scenariotest

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/serve"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// The lab hosts' IPv4 addresses, as the lab gives them.
var (
	Client = netip.MustParseAddr("198.18.0.1")
	Server = netip.MustParseAddr("198.18.0.2")
	LB     = netip.MustParseAddr("198.18.0.3")
)

// Synth is evidence under construction: Evidence is what Judge gets.
type Synth struct {
	T0       time.Time // offset 0 of the run
	Evidence *scenario.Evidence
	server   *sockdiag.Series
}

// New starts the evidence of a run of length d: an empty capture, and
// the server's socket samples every 20 ms (no socket yet).
func New(d time.Duration) *Synth {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sr := &sockdiag.Series{Start: t0, Interval: 20 * time.Millisecond}
	for at := time.Duration(0); at <= d; at += 20 * time.Millisecond {
		sr.Ticks = append(sr.Ticks, at)
	}
	return &Synth{T0: t0, server: sr, Evidence: &scenario.Evidence{Start: t0, Capture: &report.Capture{},
		Sockets: map[string]*sockdiag.Series{"server": sr}, Logs: map[string][]scenario.LogEvent{}}}
}

// At is the time d into the run.
func (s *Synth) At(d time.Duration) time.Time { return s.T0.Add(d) }

// Packet adds a TCP packet passing the device at d (10 µs in the device);
// mod adjusts it (drops, injections, notes).
func (s *Synth) Packet(d time.Duration, src, dst netip.AddrPort, flags packet.TCPFlags, seq, ack uint32, n int, mod func(*report.Packet)) {
	p := report.Packet{From: "client", To: "server", In: s.At(d), Out: s.At(d + 10*time.Microsecond),
		Proto: packet.ProtoTCP, Src: src, Dst: dst, Flags: flags, Seq: seq, Ack: ack, Len: n}
	if src.Addr() == Server {
		p.From, p.To = "server", "client"
	}
	if mod != nil {
		mod(&p)
	}
	s.Evidence.Capture.Packets = append(s.Evidence.Capture.Packets, p)
}

// Socket adds samples of the server's socket local->remote in state st
// with sendq unacknowledged bytes (and its retransmit timer on then), at
// every tick in [from, to].
func (s *Synth) Socket(local, remote netip.AddrPort, st sockdiag.State, sendq uint32, from, to time.Duration) {
	for _, tick := range s.server.Ticks {
		if tick >= from && tick <= to {
			tm := sockdiag.TimerOff
			if sendq > 0 {
				tm = sockdiag.TimerOn
			}
			s.server.Samples = append(s.server.Samples, sockdiag.Sample{T: tick, Key: sockdiag.Key{Src: local, Dst: remote},
				State: st, SendQ: sendq, Timer: tm})
		}
	}
}

// ServeLog adds a line of the serve process name's log at d.
func (s *Synth) ServeLog(name string, d time.Duration, ev serve.Event) {
	s.Evidence.Logs[name] = append(s.Evidence.Logs[name], scenario.LogEvent{Event: ev, At: s.At(d)})
}

// ProxyLine adds a line of the proxy process name's log at d: a
// proxy.Entry or a proxy.PoolEvent.
func (s *Synth) ProxyLine(t testing.TB, name string, d time.Duration, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	s.Evidence.Logs[name] = append(s.Evidence.Logs[name], scenario.LogEvent{At: s.At(d), Raw: raw})
}

// Kernel adds a line of the kernel log name (scenario.KernelLog) at d:
// event with fields, read back as the run reads the file (numbers become
// float64).
func (s *Synth) Kernel(t testing.TB, name string, d time.Duration, event string, fields map[string]any) {
	t.Helper()
	m := map[string]any{"event": event}
	for k, v := range fields {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	ev := scenario.LogEvent{At: s.At(d), Raw: raw}
	ev.Event.Event = event
	s.Evidence.Logs[name] = append(s.Evidence.Logs[name], ev)
}

// Stamp renders t as the logs write times.
func Stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// WantRuns checks that runs are exactly the arms named in want, once
// each, with the outcome want gives each.
func WantRuns(t testing.TB, runs []report.Run, want map[string]report.Outcome) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range runs {
		w, ok := want[r.Name]
		switch {
		case !ok || seen[r.Name]:
			t.Errorf("run %q: not an arm the judge should report (once)", r.Name)
		case r.Outcome != w:
			t.Errorf("%s: %s, want %s: %s", r.Name, r.Outcome, w, r.Reason)
		}
		seen[r.Name] = true
	}
	if len(seen) != len(want) {
		t.Errorf("%d of the %d arms reported: %v", len(seen), len(want), seen)
	}
}
