package behaviors

import (
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

func TestHoldFirstData_HoldsRequestAndWhatFollowsIt(t *testing.T) {
	hd := &HoldFirstData{Hold: 30 * time.Second}
	h := newHarness(t, "hold-first-data", hd, Match{})
	k := newConn(client6, server6, 1, 2)
	for _, s := range k.handshake() {
		if _, d := h.send(s); d != 0 {
			t.Fatal("handshake delayed")
		}
	}
	h.now = int64(time.Second)
	if _, d := h.send(k.seg(true, packet.ACK|packet.PSH, []byte("GET /"))); d != int64(30*time.Second) {
		t.Fatalf("first data delayed %v, want 30s", time.Duration(d))
	}
	h.now = int64(2 * time.Second) // the client retransmits; it must not overtake
	k.cseq -= 5
	if _, d := h.send(k.seg(true, packet.ACK|packet.PSH, []byte("GET /"))); h.now+d != int64(31*time.Second) {
		t.Fatalf("retransmission departs at %v, want 31s", time.Duration(h.now+d))
	}
	if _, d := h.send(k.seg(false, packet.ACK, []byte("hello"))); d != 0 {
		t.Fatal("server data delayed")
	}
	h.now = int64(40 * time.Second)
	if _, d := h.send(k.seg(true, packet.ACK|packet.PSH, []byte("GET /2"))); d != 0 {
		t.Fatal("data after the hold delayed")
	}
	if hd.Stats()["flows_held"] != 1 {
		t.Fatalf("stats %v", hd.Stats())
	}
}

func BenchmarkHoldFirstData_AfterHold(b *testing.B) {
	r := newBenchRig(b, "hold-first-data", &HoldFirstData{Hold: time.Millisecond})
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}
