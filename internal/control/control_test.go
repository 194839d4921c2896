package control_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/api/apitest"
	"github.com/faultbox/faultbox/internal/control"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/profiles"
)

func start(t *testing.T) *apitest.Device {
	t.Helper()
	d, err := apitest.Start(t.TempDir(), "t", apitest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func apply(t *testing.T, d *apitest.Device, doc string) {
	t.Helper()
	p, err := profiles.Parse("t.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply(control.ApplyRequest{Profile: p, Source: "t.yaml", Wait: true}); err != nil {
		t.Fatal(err)
	}
}

func edit(body string) control.EditRequest {
	return control.EditRequest{File: "request", Body: []byte(body), Index: -1}
}

func wantKind(t *testing.T, err error, k control.Kind, text string) {
	t.Helper()
	if err == nil || control.KindOf(err) != k || !strings.Contains(err.Error(), text) {
		t.Fatalf("error %v (kind %d), want kind %d with %q", err, control.KindOf(err), k, text)
	}
}

// rtt measures one segment's trip through the device.
func rtt(t *testing.T, d *apitest.Device, seq uint32) time.Duration {
	t.Helper()
	took, err := d.RoundTrip(40000, seq, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return took
}

// Adding, patching and removing a delay changes what packets meet, keeps
// what the rest of the chain counted, and shows in the profile document.
func TestController_AddPatchRemoveDelay(t *testing.T) {
	d := start(t)
	apply(t, d, "name: base\nbehaviors:\n  - type: log\n    name: seen\n")
	if took := rtt(t, d, 1); took > time.Second {
		t.Fatalf("a segment took %v with no delay", took)
	}
	b, err := d.AddBehavior(edit(`{"type": "delay", "name": "slow", "delay": "40ms"}`))
	if err != nil || b.Name != "slow" || b.Type != "delay" {
		t.Fatalf("add: %+v %v", b, err)
	}
	if took := rtt(t, d, 2); took < 40*time.Millisecond {
		t.Fatalf("with a 40ms delay a segment took %v", took)
	}
	if _, err := d.PatchBehavior("slow", edit(`{"delay": "120ms"}`)); err != nil {
		t.Fatal(err)
	}
	if took := rtt(t, d, 3); took < 120*time.Millisecond {
		t.Fatalf("patched to 120ms, a segment took %v", took)
	}
	slow, err := d.Behavior("slow")
	if err != nil || slow.Counters.Delayed != 2 {
		t.Fatalf("the patched delay counted %+v (want its 2 delays kept): %v", slow.Counters, err)
	}
	if err := d.RemoveBehavior("slow", 0); err != nil {
		t.Fatal(err)
	}
	if took := rtt(t, d, 4); took > time.Second {
		t.Fatalf("after the removal a segment took %v", took)
	}
	bs := d.Behaviors()
	if len(bs) != 1 || bs[0].Name != "seen" || bs[0].Counters.Matched != 4 {
		t.Fatalf("behaviors %+v: want the log to have seen all 4 segments", bs)
	}
	p, err := d.Profile()
	if err != nil || p.Version != 5 || !p.Edited || !strings.Contains(p.YAML, "name: seen") || strings.Contains(p.YAML, "slow") {
		t.Fatalf("profile %+v %v", p, err)
	}
}

func TestController_RefusedEditsChangeNothing(t *testing.T) {
	d := start(t)
	apply(t, d, "name: base\nbehaviors:\n  - type: delay\n    name: slow\n    delay: 1ms\n")
	before, _ := d.Profile()
	_, err := d.AddBehavior(edit(`{"type": "delay", "name": "slow"}`))
	wantKind(t, err, control.Conflict, `already has a behavior called "slow"`)
	_, err = d.AddBehavior(edit(`{"type": "latency"}`))
	wantKind(t, err, control.BadRequest, `request:1: behavior: type: unknown behavior "latency"`)
	_, err = d.AddBehavior(control.EditRequest{File: "request", Body: []byte(`{"type": "log"}`), Index: 5})
	wantKind(t, err, control.BadRequest, "index 5 is past the end")
	_, err = d.PatchBehavior("fast", edit(`{"delay": "2ms"}`))
	wantKind(t, err, control.NotFound, `no behavior called "fast" (the chain has "slow")`)
	_, err = d.PatchBehavior("slow", edit("{\"delay\": \"2ms\",\n \"jitter\": \"-1ms\"}"))
	wantKind(t, err, control.BadRequest, `request:2: behavior (delay): jitter: "-1ms" is negative`)
	wantKind(t, d.RemoveBehavior("fast", 0), control.NotFound, `no behavior called "fast"`)
	_, err = d.AddBehavior(control.EditRequest{File: "request", Body: []byte(`{"type": "log"}`), Index: -1, IfVersion: before.Version + 1})
	wantKind(t, err, control.PreconditionFailed, "the profile is at version 2, not 3")

	after, _ := d.Profile()
	if after != before {
		t.Fatalf("refused edits changed the profile:\n%+v\n%+v", before, after)
	}
	// The running delay kept its parameter: the refused patch set none.
	if took := rtt(t, d, 1); took < time.Millisecond || took > time.Second {
		t.Fatalf("a segment took %v, want about 1ms", took)
	}
}

func TestController_PatchedMatchAndIndex(t *testing.T) {
	d := start(t)
	apply(t, d, "name: base\nbehaviors:\n  - type: log\n")
	if _, err := d.AddBehavior(control.EditRequest{File: "request", Body: []byte("type: drop\nmatch: {port: 81}\n"), Index: 0}); err != nil {
		t.Fatal(err)
	}
	if bs := d.Behaviors(); bs[0].Name != "drop" || bs[1].Name != "log" {
		t.Fatalf("order %+v", bs)
	}
	if took := rtt(t, d, 1); took > time.Second { // port 80 passes
		t.Fatalf("took %v", took)
	}
	if _, err := d.PatchBehavior("drop", edit(`{"match": {"port": 80}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RoundTrip(40000, 2, 100*time.Millisecond); err == nil {
		t.Fatal("the drop's match moved to port 80, yet the segment passed")
	}
	if b, _ := d.Behavior("drop"); b.Counters.Dropped != 1 || b.Match != "port: 80" {
		t.Fatalf("drop %+v", b)
	}
}

func TestController_Events(t *testing.T) {
	d := start(t)
	apply(t, d, "name: base\nbehaviors:\n  - type: log\n")
	for i := uint32(1); i <= 3; i++ {
		rtt(t, d, i)
	}
	evs, next := d.Events(1)
	if len(evs) != 2 || next != 3 || evs[0].Seq != 1 || evs[0].Note != "log" || evs[0].Proto != "tcp" ||
		evs[0].DstPort != 80 || evs[0].TCPSeq != 2 || evs[0].Flags != "P." || !strings.Contains(evs[0].Text, "log 198.18.0.1:40000 > 198.18.0.2:80") {
		t.Fatalf("events %+v next %d", evs, next)
	}
	if d := time.Since(evs[1].Time); d < 0 || d > time.Minute {
		t.Fatalf("event time %v is not now", evs[1].Time)
	}
}

func TestController_Flows(t *testing.T) {
	d := start(t)
	d.Send(apitest.Segment(true, 40001, 1, packet.SYN, 0))
	d.Receive(time.Second)
	fs, err := d.Flows("oldest", 5)
	if err != nil || len(fs) != 1 || fs[0].State != "syn-sent" || fs[0].Client.Port() != 40001 || fs[0].ClientEnd.Packets != 1 {
		t.Fatalf("flows %+v %v", fs, err)
	}
	_, err = d.Flows("largest", 5)
	wantKind(t, err, control.BadRequest, `order "largest" is not busiest, oldest or recent`)
	_, err = d.Flows("", control.MaxFlows+1)
	wantKind(t, err, control.BadRequest, "want 1 to")
}

func TestController_Capture(t *testing.T) {
	d := start(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pcapng")
	for _, c := range []struct {
		path string
		kind control.Kind
		text string
	}{
		{"c.pcapng", control.BadRequest, "want an absolute path ending in .pcapng"},
		{"/etc/passwd", control.BadRequest, "want an absolute path ending in .pcapng"},
	} {
		_, err := d.StartCapture(c.path)
		wantKind(t, err, c.kind, c.text)
	}
	_, err := d.StopCapture()
	wantKind(t, err, control.Conflict, "no capture is running")
	if cp, err := d.StartCapture(path); err != nil || !cp.Active {
		t.Fatalf("start: %+v %v", cp, err)
	}
	_, err = d.StartCapture(filepath.Join(dir, "d.pcapng"))
	wantKind(t, err, control.Conflict, "a capture to "+path+" is running")
	rtt(t, d, 1)
	if st, _ := d.Status(); st.Capture != path || st.CapturePackets != 2 {
		t.Fatalf("status capture %q %d", st.Capture, st.CapturePackets)
	}
	cp, err := d.StopCapture()
	if err != nil || cp.Active || cp.Packets != 2 {
		t.Fatalf("stop: %+v %v", cp, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() < 100 {
		t.Fatalf("capture file: %v", err)
	}
	_, err = d.StartCapture(path)
	wantKind(t, err, control.Conflict, "exists")
	var ce *control.Error
	if !errors.As(err, &ce) {
		t.Fatal("not a *control.Error")
	}
}
