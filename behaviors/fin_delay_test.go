package behaviors

import (
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// The keep-alive race (docs/field-failures.md#elb-keepalive-race): the
// server's FIN is held 20 ms; the client's late request draws the
// server's RST, which must reach the client before the FIN.
func TestFINDelay_RSTOvertakesHeldFIN(t *testing.T) {
	spec := MatchSpec{Direction: "downstream", TCPFlags: []string{"fin"}}
	m, err := spec.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &FINDelay{Delay: 20 * time.Millisecond}
	h := newHarness(t, "fin-delay", d, m)
	k := newConn(client4, server4, 0xffffffff, 100)
	for _, s := range k.handshake() {
		h.send(s)
	}
	h.now = int64(time.Second)
	v, finDelay := h.send(k.seg(false, packet.FIN|packet.ACK, nil))
	finDepart := h.now + finDelay
	if v != Pass || finDelay != int64(20*time.Millisecond) {
		t.Fatalf("server FIN: verdict %v delay %v, want Pass after 20ms", v, time.Duration(finDelay))
	}
	h.now += int64(2 * time.Millisecond)
	if _, dd := h.send(k.seg(true, packet.ACK|packet.PSH, []byte("GET /"))); dd != 0 {
		t.Fatal("client request delayed")
	}
	h.now += int64(time.Millisecond)
	v, rstDelay := h.send(k.seg(false, packet.RST, nil))
	if rstDepart := h.now + rstDelay; v != Pass || rstDepart >= finDepart {
		t.Fatalf("RST departs at %d, FIN at %d: the RST must overtake", rstDepart, finDepart)
	}
	// A client FIN is upstream: not matched, not held.
	if _, dd := h.send(k.seg(true, packet.FIN|packet.ACK, nil)); dd != 0 {
		t.Fatal("upstream FIN held")
	}
	if d.Stats()["fins_delayed"] != 1 {
		t.Fatalf("stats %v", d.Stats())
	}
}

func TestFINDelay_OnlyFINsHeld(t *testing.T) {
	h := newHarness(t, "fin-delay", &FINDelay{Delay: time.Second}, Match{})
	k := newConn(client6, server6, 1, 2)
	for _, s := range append(k.handshake(), k.seg(false, packet.ACK, []byte("data")), k.seg(true, packet.RST, nil)) {
		if _, d := h.send(s); d != 0 {
			t.Fatal("non-FIN segment held")
		}
	}
	if _, d := h.send(k.seg(true, packet.FIN|packet.ACK, []byte("last"))); d != int64(time.Second) {
		t.Fatal("data+FIN segment not held")
	}
	if _, d := h.send(udpPacket(client6, server6, 1, 2, []byte{byte(packet.FIN)})); d != 0 {
		t.Fatal("UDP held")
	}
}

func TestFINDelay_ValidateRequiresDelay(t *testing.T) {
	if err := (&FINDelay{}).Validate(); err == nil {
		t.Fatal("delay 0 accepted")
	}
}

func BenchmarkFINDelay_Data(b *testing.B) {
	r := newBenchRig(b, "fin-delay", &FINDelay{Delay: time.Millisecond})
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}
