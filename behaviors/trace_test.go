package behaviors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

// traceLink sends IPv4 UDP packets of the given sizes through tr.
type traceLink struct {
	t  *testing.T
	tr *Trace
	dp map[int]*direct
}

func newTraceLink(t *testing.T, tr *Trace) *traceLink {
	t.Helper()
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	return &traceLink{t: t, tr: tr, dp: map[int]*direct{}}
}

// send returns the departure of a packet of size bytes arriving at now.
func (l *traceLink) send(now int64, size int, upstream bool) int64 {
	d, ok := l.dp[size]
	if !ok {
		d = newDirect(udpPacket(client4, server4, 1, 2, make([]byte, size-28)), 1)
		l.dp[size] = d
	}
	p := d.at(now, upstream)
	if v := l.tr.Handle(p); v != Pass {
		l.t.Fatalf("trace dropped a packet")
	}
	return p.Depart
}

func (l *traceLink) expect(now int64, size int, upstream bool, want int64) {
	l.t.Helper()
	if got := l.send(now, size, upstream); got != want {
		l.t.Fatalf("%d bytes at %v: departs at %v, want %v", size, time.Duration(now), time.Duration(got), time.Duration(want))
	}
}

func inlineTrace(ts ...string) *Trace { return &Trace{Opportunities: ts, MTU: 1500} }

func TestTrace_OneMTUPerOpportunity(t *testing.T) {
	l := newTraceLink(t, inlineTrace("10", "20", "20", "30"))
	for _, want := range []int64{10, 20, 20, 30, 40, 50, 50, 60, 70} {
		l.expect(0, 1500, false, want*ms)
	}
}

func TestTrace_SmallPacketsShareAnOpportunity(t *testing.T) {
	l := newTraceLink(t, inlineTrace("10", "20", "20", "30"))
	for _, want := range []int64{10, 10, 10, 20} {
		l.expect(0, 500, true, want*ms)
	}
	// A 1500-byte packet takes the rest of the 20 ms opportunity (1000
	// bytes) and 500 bytes of the second one at 20 ms.
	l.expect(0, 1500, true, 20*ms)
	l.expect(0, 1000, true, 20*ms)
	l.expect(0, 28, true, 30*ms)
}

func TestTrace_UnusedOpportunitiesAreLost(t *testing.T) {
	l := newTraceLink(t, inlineTrace("10", "20", "20", "30"))
	l.expect(0, 100, true, 10*ms)
	l.expect(15*ms, 100, true, 20*ms) // not the rest of 10 ms
	l.expect(25*ms, 100, true, 30*ms)
	// The trace repeats every 30 ms: at 95 ms the next is 90+10.
	l.expect(95*ms, 100, true, 100*ms)
	l.expect(1000*ms+31*ms, 1500, true, (990+50)*ms)
}

func TestTrace_LargePacketSpansOpportunities(t *testing.T) {
	l := newTraceLink(t, inlineTrace("10", "20", "20", "30"))
	l.expect(0, 4000, true, 20*ms) // 1500 at 10, 1500 + 1000 at 20
	l.expect(0, 500, true, 20*ms)
	l.expect(0, 28, true, 30*ms)
}

func TestTrace_DirectionsAreIndependent(t *testing.T) {
	l := newTraceLink(t, inlineTrace("10", "20", "20", "30"))
	l.expect(0, 1500, true, 10*ms)
	l.expect(0, 1500, true, 20*ms)
	l.expect(0, 1500, false, 10*ms)
}

func TestTrace_TimeCountsFromFirstPacket(t *testing.T) {
	l := newTraceLink(t, inlineTrace("10", "20", "20", "30"))
	start := 5000 * ms
	l.expect(start, 1500, true, start+10*ms)
	l.expect(start+12*ms, 1500, false, start+20*ms)
}

func TestTrace_Goodput(t *testing.T) {
	// One opportunity per millisecond is 12 Mbit/s of 1500-byte packets.
	l := newTraceLink(t, inlineTrace("1"))
	var last int64
	for i := 0; i < 10000; i++ {
		last = l.send(0, 1500, true)
	}
	if last != 10000*ms {
		t.Fatalf("10000 packets took %v, want 10s", time.Duration(last))
	}
}

func TestTrace_File(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "link.up")
	if err := os.WriteFile(path, []byte("10\n20\n20\n30\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := newTraceLink(t, &Trace{File: path, MTU: 1500})
	for _, want := range []int64{10, 20, 20, 30, 40} {
		l.expect(0, 1500, false, want*ms)
	}

	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(maxTraceFile + 1)
	f.Close()
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("10\n5\n"), 0o600)
	for file, want := range map[string]string{
		big:                           "larger than 16 MiB",
		dir:                           "not a regular file",
		bad:                           "entry 2",
		filepath.Join(dir, "missing"): "no such file",
	} {
		err := (&Trace{File: file, MTU: 1500}).Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("file %s: error %v, want one saying %q", filepath.Base(file), err, want)
		}
	}
}

func TestTrace_Validate(t *testing.T) {
	for _, tr := range []*Trace{
		{MTU: 1500},
		{MTU: 1500, Opportunities: []string{"0"}},
		{MTU: 1500, Opportunities: []string{"x"}},
		{MTU: 0, Opportunities: []string{"1"}},
		{MTU: 1500, Opportunities: []string{"1"}, File: "t"},
	} {
		if err := tr.Validate(); err == nil {
			t.Errorf("%+v: no error", tr)
		}
	}
}

func BenchmarkTrace_Handle(b *testing.B) {
	tr := &Trace{Opportunities: []string{"1", "1", "3", "4", "4", "4", "7", "9", "12"}, MTU: 1500}
	if err := tr.Validate(); err != nil {
		b.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, make([]byte, 1000)), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tr.Handle(dp.at(int64(i)*int64(time.Millisecond), i&1 == 0))
	}
}
