package behaviors

import (
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

func newVanish(mut func(*Vanish)) *Vanish {
	b, _ := New("vanish")
	v := b.(*Vanish)
	if mut != nil {
		mut(v)
	}
	return v
}

// The FIN_WAIT_2 report: the server closes an idle keep-alive connection,
// the client ACKs the FIN and is never heard of again.
func TestVanish_DefaultTrigger_ServerLeftInFINWait2(t *testing.T) {
	v := newVanish(nil)
	h := newHarness(t, "vanish", v, Match{})
	k := newConn(client6, server6, 0xfffffffe, 0xfffffff0)
	before := append(k.handshake(),
		k.seg(true, packet.ACK|packet.PSH, []byte("GET / HTTP/1.1\r\n\r\n")),
		k.seg(false, packet.ACK|packet.PSH, make([]byte, 300)),
		k.seg(true, packet.ACK, nil),
		k.seg(false, packet.FIN|packet.ACK, nil), // keep-alive timeout
		k.seg(true, packet.ACK, nil),             // the client ACKs the FIN: the trigger
	)
	for i, s := range before {
		if verdict, _ := h.send(s); verdict != Pass {
			t.Fatalf("segment %d before the client vanished was dropped", i)
		}
	}
	if v.Stats()["flows_vanished"] != 1 {
		t.Fatal("trigger did not fire on the client's ACK of the server's FIN")
	}
	for i, s := range [][]byte{k.seg(true, packet.FIN|packet.ACK, nil), k.seg(true, packet.ACK|packet.PSH, []byte("GET /2")), k.seg(true, packet.RST, nil)} {
		if verdict, _ := h.send(s); verdict != Drop {
			t.Fatalf("client segment %d after vanishing passed", i)
		}
	}
	if verdict, _ := h.send(k.seg(false, packet.FIN|packet.ACK, nil)); verdict != Pass {
		t.Fatal("server segment dropped without also_server")
	}
	if v.Stats()["dropped"] != 3 {
		t.Fatalf("stats %v", v.Stats())
	}
}

func TestVanish_PiggybackedFINIsStripped(t *testing.T) {
	v := newVanish(nil)
	h := newHarness(t, "vanish", v, Match{})
	k := newConn(client4, server4, 1, 2)
	for _, s := range append(k.handshake(), k.seg(false, packet.FIN|packet.ACK, nil)) {
		h.send(s)
	}
	finack := k.seg(true, packet.FIN|packet.ACK, nil)
	if verdict, _ := h.send(finack); verdict != Pass {
		t.Fatal("the ACK of the server's FIN must reach the server")
	}
	var p packet.Parsed
	p.Decode(finack)
	if p.Flags != packet.ACK {
		t.Fatalf("forwarded flags %v, want a bare ACK", p.Flags)
	}
}

func TestVanish_ServerFINTriggerAndAlsoServer(t *testing.T) {
	v := newVanish(func(v *Vanish) { v.Kind, v.AlsoServer = "server-fin", true })
	h := newHarness(t, "vanish", v, Match{})
	k := newConn(client4, server4, 1, 2)
	for _, s := range append(k.handshake(), k.seg(false, packet.FIN|packet.ACK, nil)) {
		if verdict, _ := h.send(s); verdict != Pass {
			t.Fatal("dropped before/at the trigger")
		}
	}
	if verdict, _ := h.send(k.seg(true, packet.ACK, nil)); verdict != Drop {
		t.Fatal("client ACK of the FIN passed: the server should stay in FIN_WAIT_1")
	}
	if verdict, _ := h.send(k.seg(false, packet.FIN|packet.ACK, nil)); verdict != Drop {
		t.Fatal("server retransmission passed with also_server")
	}
}

func TestVanish_BytesTrigger(t *testing.T) {
	h := newHarness(t, "vanish", newVanish(func(v *Vanish) { v.Kind, v.AfterBytes = "bytes", 1000 }), Match{})
	k := newConn(client4, server4, 1, 2)
	for _, s := range append(k.handshake(), k.seg(true, packet.ACK, make([]byte, 600)), k.seg(true, packet.ACK, make([]byte, 600))) {
		if verdict, _ := h.send(s); verdict != Pass {
			t.Fatal("dropped before/at the trigger")
		}
	}
	if verdict, _ := h.send(k.seg(true, packet.ACK, make([]byte, 1))); verdict != Drop {
		t.Fatal("client data after 1000 bytes passed")
	}
}

func BenchmarkVanish_Dropping(b *testing.B) {
	r := newBenchRig(b, "vanish", newVanish(func(v *Vanish) { v.Kind, v.AfterBytes = "bytes", 1 }))
	up, down := benchEstablished(r)
	r.run(up, 0)
	r.loop(b, up, down)
}
