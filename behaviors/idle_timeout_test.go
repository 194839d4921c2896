package behaviors

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

func newIdle(mut func(*IdleTimeout)) *IdleTimeout {
	b, _ := New("idle-timeout")
	i := b.(*IdleTimeout)
	i.Timeout = 5 * time.Second
	if mut != nil {
		mut(i)
	}
	return i
}

func TestIdleTimeout_SilentHangsTheFlow(t *testing.T) {
	it := newIdle(nil)
	h := newHarness(t, "idle-timeout", it, Match{})
	k := newConn(client4, server4, 1, 2)
	for _, s := range append(k.handshake(), k.seg(true, packet.ACK, []byte("ping"))) {
		h.send(s)
	}
	h.now += int64(4999 * time.Millisecond)
	if v, _ := h.send(k.seg(false, packet.ACK, []byte("pong"))); v != Pass {
		t.Fatal("packet within the timeout dropped")
	}
	h.now += int64(5 * time.Second)
	for i, s := range [][]byte{k.seg(true, packet.ACK, []byte("late")), k.seg(false, packet.ACK, nil), k.seg(true, packet.ACK, []byte("again"))} {
		if v, _ := h.send(s); v != Drop {
			t.Fatalf("packet %d after the timeout passed", i)
		}
	}
	if len(h.injected) != 0 {
		t.Fatal("silent mode injected packets")
	}
	st := it.Stats()
	if st["flows_expired"] != 1 || st["dropped"] != 3 {
		t.Fatalf("stats %v", st)
	}
	// A new connection on the tuple gets a new mapping (the flow table
	// itself keeps the flow: it was never closed).
	k2 := newConn(client4, server4, 500000, 600000)
	for _, s := range k2.handshake() {
		if v, _ := h.send(s); v != Pass {
			t.Fatal("new connection dropped")
		}
	}
}

// RST mode: the first packet after the silence is dropped and both ends get
// a RST at exactly their RCV.NXT, which excludes the dropped packet.
func TestIdleTimeout_RSTBothExactSequence(t *testing.T) {
	for _, addrs := range [][2]int{{4, 4}, {6, 6}} {
		c, s := client4, server4
		if addrs[0] == 6 {
			c, s = client6, server6
		}
		it := newIdle(func(i *IdleTimeout) { i.Mode = "rst" })
		h := newHarness(t, "idle-timeout", it, Match{})
		k := newConn(c, s, 0xfffffffa, 0xfffffff8) // both wrap during the test
		for _, seg := range append(k.handshake(), k.seg(true, packet.ACK, []byte("GET /1")), k.seg(false, packet.ACK, []byte("200 OK"))) {
			h.send(seg)
		}
		h.now += int64(6 * time.Second)
		serverRcvNxt, clientRcvNxt := k.cseq, k.sseq
		if v, _ := h.send(k.seg(true, packet.ACK|packet.PSH, []byte("GET /2"))); v != Drop {
			t.Fatal("late request passed")
		}
		if len(h.injected) != 2 {
			t.Fatalf("%d injected, want 2 RSTs", len(h.injected))
		}
		wantRST(t, injectedTCP(t, h, 0), flow.Client, flow.Server, k, serverRcvNxt)
		wantRST(t, injectedTCP(t, h, 1), flow.Server, flow.Client, k, clientRcvNxt)
		// The client retransmits: answered again with the same numbers.
		k.cseq = serverRcvNxt
		h.send(k.seg(true, packet.ACK|packet.PSH, []byte("GET /2")))
		wantRST(t, injectedTCP(t, h, 2), flow.Client, flow.Server, k, serverRcvNxt)
		// A RST is never answered.
		h.send(k.seg(false, packet.RST, nil))
		if len(h.injected) != 4 {
			t.Fatalf("%d injected, want 4", len(h.injected))
		}
	}
}

func TestIdleTimeout_RSTToClientOnly(t *testing.T) {
	it := newIdle(func(i *IdleTimeout) { i.Mode, i.RSTTo = "rst", "client" })
	h := newHarness(t, "idle-timeout", it, Match{})
	k := newConn(client4, server4, 10, 20)
	for _, seg := range k.handshake() {
		h.send(seg)
	}
	h.now += int64(time.Hour)
	h.send(k.seg(true, packet.ACK, []byte("x")))
	if len(h.injected) != 1 {
		t.Fatalf("%d injected, want 1", len(h.injected))
	}
	wantRST(t, injectedTCP(t, h, 0), flow.Server, flow.Client, k, k.sseq)
}

// rst_to sender (AWS NLB): only the side whose packet found the flow gone
// is reset, whichever it is; the other learns nothing.
func TestIdleTimeout_RSTToSender(t *testing.T) {
	for _, fromClient := range []bool{true, false} {
		it := newIdle(func(i *IdleTimeout) { i.Mode, i.RSTTo = "rst", "sender" })
		h := newHarness(t, "idle-timeout", it, Match{})
		k := newConn(client6, server6, 10, 20)
		for _, seg := range k.handshake() {
			h.send(seg)
		}
		h.now += int64(6 * time.Second)
		serverRcvNxt, clientRcvNxt := k.cseq, k.sseq
		if v, _ := h.send(k.seg(fromClient, packet.ACK|packet.PSH, []byte("late"))); v != Drop {
			t.Fatal("late packet passed")
		}
		if len(h.injected) != 1 {
			t.Fatalf("%d injected, want 1 RST", len(h.injected))
		}
		if fromClient {
			wantRST(t, injectedTCP(t, h, 0), flow.Server, flow.Client, k, clientRcvNxt)
		} else {
			wantRST(t, injectedTCP(t, h, 0), flow.Client, flow.Server, k, serverRcvNxt)
		}
	}
}

// transitory_timeout (Google Cloud NAT) applies while the flow is not
// established: here after the client's FIN, so the server's late answer
// to a half-closed connection is dropped after 3 s, while an established
// connection idle as long still works.
func TestIdleTimeout_TransitoryAfterFIN(t *testing.T) {
	it := newIdle(func(i *IdleTimeout) { i.Timeout, i.TransitoryTimeout = 20*time.Second, 3*time.Second })
	h := newHarness(t, "idle-timeout", it, Match{})
	k := newConn(client4, server4, 1, 2)
	for _, seg := range append(k.handshake(), k.seg(true, packet.ACK|packet.PSH, []byte("GET /slow"))) {
		h.send(seg)
	}
	h.now += int64(5 * time.Second) // idle, but established: 20 s applies
	if v, _ := h.send(k.seg(false, packet.ACK, nil)); v != Pass {
		t.Fatal("established flow expired after 5 s of a 20 s timeout")
	}
	h.send(k.seg(true, packet.ACK|packet.FIN, nil)) // half-closed: transitory
	h.now += int64(2 * time.Second)
	if v, _ := h.send(k.seg(false, packet.ACK, nil)); v != Pass {
		t.Fatal("dropped within the transitory timeout")
	}
	h.now += int64(3 * time.Second)
	if v, _ := h.send(k.seg(false, packet.ACK|packet.PSH, []byte("200 OK"))); v != Drop {
		t.Fatal("the answer after 3 s of transitory silence passed")
	}
	// A handshake that stalls is transitory too.
	k2 := newConn(client4, server4, 100, 200)
	h.now += int64(time.Second)
	h.send(k2.seg(true, packet.SYN, nil))
	h.now += int64(4 * time.Second)
	if v, _ := h.send(k2.seg(false, packet.SYN|packet.ACK, nil)); v != Drop {
		t.Fatal("a SYN-ACK 4 s after the SYN passed a 3 s transitory timeout")
	}
}

func TestIdleTimeout_Validate(t *testing.T) {
	for field, mut := range map[string]func(*IdleTimeout){
		"timeout":            func(i *IdleTimeout) { i.Timeout = 0 },
		"mode":               func(i *IdleTimeout) { i.Mode = "loud" },
		"rst_to":             func(i *IdleTimeout) { i.RSTTo = "client" }, // silent mode
		"transitory_timeout": func(i *IdleTimeout) { i.TransitoryTimeout = -time.Second },
	} {
		var fe *FieldError
		if err := newIdle(mut).Validate(); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: error %v", field, err)
		}
	}
	if err := newIdle(func(i *IdleTimeout) { i.Mode, i.RSTTo = "rst", "receiver" }).Validate(); err == nil || !strings.Contains(err.Error(), "sender") {
		t.Errorf("rst_to receiver: error %v, want one listing sender", err)
	}
}

func BenchmarkIdleTimeout_Active(b *testing.B) {
	r := newBenchRig(b, "idle-timeout", newIdle(nil))
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}

func BenchmarkIdleTimeout_ExpiredRSTAnswer(b *testing.B) {
	r := newBenchRig(b, "idle-timeout", newIdle(func(i *IdleTimeout) { i.Mode = "rst" }))
	up, _ := benchEstablished(r)
	r.run(up, 0)
	now := int64(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		now++
		if r.run(up, now) != Drop {
			b.Fatal("passed")
		}
	}
	if r.chain.Entries[0].Counters.Injected == 0 {
		b.Fatal("nothing injected")
	}
}
