package fuzzframe

import (
	"bytes"
	"testing"
	"time"

	"github.com/faultbox/faultbox/tun"
)

func TestAppendThenEachOffload_RoundTrip(t *testing.T) {
	o := tun.Offload{GSOType: tun.GSOTCPv4, NeedsCsum: true, GSOSize: 1448, HdrLen: 52, CsumStart: 20, CsumOffset: 16}
	var b []byte
	b = Append(b, 3, FromServer, nil, []byte("plain"))
	b = Append(b, 0, FromServer|o.GSOType<<GSOShift|NeedsCsum, &o, []byte("super"))
	b = Append(b, 1, 0, nil, nil) // empty: no TUN read returns it
	type got struct {
		step, flags uint8
		pkt         string
		o           tun.Offload
	}
	var frames []got
	EachOffload(b, func(step, flags uint8, pkt []byte, o tun.Offload) {
		frames = append(frames, got{step, flags, string(pkt), o})
	})
	want := []got{{3, FromServer, "plain", tun.Offload{}}, {0, FromServer | o.GSOType<<GSOShift | NeedsCsum, "super", o}}
	if len(frames) != len(want) || frames[0] != want[0] || frames[1] != want[1] {
		t.Fatalf("frames %+v, want %+v", frames, want)
	}
	// Each leaves the descriptor in the bytes and keeps the empty frame.
	var raw [][]byte
	Each(b, func(_, _ uint8, pkt []byte) { raw = append(raw, pkt) })
	if len(raw) != 3 || len(raw[1]) != 8+5 || !bytes.HasSuffix(raw[1], []byte("super")) || len(raw[2]) != 0 {
		t.Fatalf("raw frames %q", raw)
	}
}

func TestEach_TruncatedTail(t *testing.T) {
	var n []int
	Each([]byte{0, 0, 0, 9, 'a', 'b', 7}, func(_, _ uint8, pkt []byte) { n = append(n, len(pkt)) })
	if len(n) != 1 || n[0] != 3 {
		t.Fatalf("frame lengths %v, want [3] (the length cut to what is left)", n)
	}
}

func TestStep_InverseOfStepNs(t *testing.T) {
	for _, s := range []uint8{0, 1, 2, 17, 254, 255} {
		if got := Step(time.Duration(StepNs(s))); got != s {
			t.Errorf("Step(StepNs(%d)) = %d", s, got)
		}
	}
	if Step(time.Hour) != 255 || Step(time.Duration(StepNs(3))+1) != 4 {
		t.Error("Step does not round up or cap at 255")
	}
}
