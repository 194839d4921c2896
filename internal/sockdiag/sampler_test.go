package sockdiag

import (
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestStateAndTimer_NamesLikeSS(t *testing.T) {
	want := map[State]string{
		Established: "ESTAB", SynSent: "SYN-SENT", SynRecv: "SYN-RECV", FinWait1: "FIN-WAIT-1",
		FinWait2: "FIN-WAIT-2", TimeWait: "TIME-WAIT", Close: "CLOSE", CloseWait: "CLOSE-WAIT",
		LastAck: "LAST-ACK", Listen: "LISTEN", Closing: "CLOSING", 0: "STATE-0", 42: "STATE-42",
	}
	for s, name := range want {
		if s.String() != name {
			t.Errorf("State(%d) = %q, want %q", uint8(s), s.String(), name)
		}
		var back State
		if err := back.UnmarshalText([]byte(name)); err != nil || back != s {
			t.Errorf("UnmarshalText(%q) = %d, %v", name, back, err)
		}
	}
	for tm, name := range map[Timer]string{TimerOff: "off", TimerOn: "on", TimerKeepalive: "keepalive",
		TimerTimeWait: "timewait", TimerPersist: "persist", 9: "unknown"} {
		if tm.String() != name {
			t.Errorf("Timer(%d) = %q, want %q", uint8(tm), tm.String(), name)
		}
	}
	var s State
	if s.UnmarshalText([]byte("ESTABLISHED")) == nil {
		t.Error("ESTABLISHED: want an error (ss says ESTAB)")
	}
}

func TestSocket_JSONRoundTrip(t *testing.T) {
	in := v4Want()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{`"state":"CLOSE-WAIT"`, `"timer":"on"`, `"src":"198.18.0.2:80"`, `"rto_ns":1632000000`} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("JSON lacks %s: %s", frag, b)
		}
	}
	var out Socket
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip: %+v, %v", out, err)
	}
}

// fakeDumps returns one socket per call whose Retrans counts the calls, and
// fails every errEvery'th call.
func fakeDumps(calls *atomic.Int32, errEvery int32) func() ([]Socket, error) {
	return func() ([]Socket, error) {
		n := calls.Add(1)
		if errEvery > 0 && n%errEvery == 0 {
			return nil, errors.New("boom")
		}
		s := v4Want()
		s.Retrans = uint8(n)
		other := s
		other.Src = v6Sock.src
		return []Socket{s, other}, nil
	}
}

func TestSampler_TicksBoundedAndStopIdempotent(t *testing.T) {
	var calls atomic.Int32
	closed := 0
	sm, err := startSampler(fakeDumps(&calls, 3), func() error { closed++; return nil }, Filter{Port: 80}, time.Millisecond, 5)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); calls.Load() < 4 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // a few more ticks, which must not dump
	sr := sm.Stop()
	again := sm.Stop()
	if n := calls.Load(); n != 4 { // it stops dumping once full
		t.Fatalf("%d dumps, want 4 (the fourth does not fit)", n)
	}
	if closed != 1 || len(again.Samples) != len(sr.Samples) {
		t.Errorf("second Stop: closed %d times, %d vs %d samples", closed, len(again.Samples), len(sr.Samples))
	}
	// Calls 3, 6, 9 ... fail; 1 and 2 fill four of five samples; 4 does not
	// fit, so the series ends there and every later tick is dropped.
	if len(sr.Samples) != 4 || len(sr.Ticks) != 2 || !sr.Full {
		t.Errorf("%d samples, %d ticks, full %v; want 4, 2, true", len(sr.Samples), len(sr.Ticks), sr.Full)
	}
	if sr.Errors != 1 || sr.LastError != "boom" || sr.Dropped < 1 {
		t.Errorf("errors %d (%q), dropped %d; want 1, boom, >= 1", sr.Errors, sr.LastError, sr.Dropped)
	}
	for i := 1; i < len(sr.Ticks); i++ {
		if sr.Ticks[i] < sr.Ticks[i-1] {
			t.Errorf("ticks out of order: %v", sr.Ticks)
		}
	}
	first := sr.Socket(Key{v4Sock.src, v4Sock.dst})
	if len(first) != 2 || first[0].Retrans != 1 || first[1].Retrans != 2 {
		t.Errorf("samples of one socket: %+v", first)
	}
	if first[0].State != CloseWait || first[0].SendQ != 10000 || first[0].RTT != 18*time.Microsecond || first[0].T != sr.Ticks[0] {
		t.Errorf("sample fields: %+v", first[0])
	}
}

func TestSampler_SeriesJSON(t *testing.T) {
	var calls atomic.Int32
	sm, err := startSampler(fakeDumps(&calls, 0), func() error { return nil }, Filter{}, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	sr := sm.Stop() // the first dump happens before the first tick
	if len(sr.Ticks) != 1 || len(sr.Samples) != 2 {
		t.Fatalf("%d ticks, %d samples", len(sr.Ticks), len(sr.Samples))
	}
	b, err := json.Marshal(sr)
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{`"interval_ns":3600000000000`, `"key":{"src":"198.18.0.2:80","dst":"198.18.0.1:40000"}`, `"state":"CLOSE-WAIT"`} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("JSON lacks %s: %s", frag, b)
		}
	}
	var back Series
	if err := json.Unmarshal(b, &back); err != nil || len(back.Samples) != 2 || back.Samples[0] != sr.Samples[0] {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestSampler_RejectsZeroInterval(t *testing.T) {
	closed := false
	if _, err := startSampler(nil, func() error { closed = true; return nil }, Filter{}, 0, 0); err == nil || !closed {
		t.Errorf("interval 0: err %v, closed %v", err, closed)
	}
}

func TestOpen_UnknownNamespace(t *testing.T) {
	if _, err := Dump("fbx-no-such-namespace", Filter{}); err == nil || !strings.Contains(err.Error(), "/run/netns/fbx-no-such-namespace") {
		t.Errorf("want an error naming the namespace path, got %v", err)
	}
	if _, err := NewSampler("fbx-no-such-namespace", Filter{}, time.Second, 0); err == nil {
		t.Error("sampler on a missing namespace: no error")
	}
	if _, err := Dump("", Filter{Family: 1}); err == nil {
		t.Error("family AF_UNIX: no error")
	}
}
