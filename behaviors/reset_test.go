package behaviors

import (
	"errors"
	"testing"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

func TestReset_AfterBytes_BothExact(t *testing.T) {
	r := &Reset{Trigger: Trigger{Kind: "bytes", AfterBytes: 1000, Direction: "downstream"}}
	e := newHarness(t, "reset", r, Match{})
	k := newConn(client6, server6, 0xffffff00, 0xfffffe00)
	for _, s := range append(k.handshake(), k.seg(true, packet.ACK, []byte("GET /big"))) {
		e.send(s)
	}
	if v, _ := e.send(k.seg(false, packet.ACK, make([]byte, 999))); v != Pass || len(e.injected) != 0 {
		t.Fatal("reset before 1000 bytes")
	}
	v, delay := e.send(k.seg(false, packet.ACK, make([]byte, 1)))
	if v != Pass {
		t.Fatal("trigger packet dropped without drop: true")
	}
	// The trigger packet is forwarded first, so the client's RCV.NXT includes it.
	wantRST(t, injectedTCP(t, e, 0), flow.Client, flow.Server, k, k.cseq)
	wantRST(t, injectedTCP(t, e, 1), flow.Server, flow.Client, k, k.sseq)
	if depart := e.now + delay; e.departs[0] <= depart || e.departs[1] <= depart {
		t.Fatal("RSTs may overtake the trigger packet")
	}
	// Then the flow is left alone.
	if v, _ := e.send(k.seg(true, packet.RST, nil)); v != Pass || len(e.injected) != 2 {
		t.Fatal("reset acted twice on a flow")
	}
}

func TestReset_RegexDropTrigger(t *testing.T) {
	r := &Reset{Trigger: Trigger{Kind: "regex", Pattern: "^POST"}, To: "server", Drop: true}
	h := newHarness(t, "reset", r, Match{})
	k := newConn(client4, server4, 0xfffffffc, 1)
	for _, s := range k.handshake() {
		h.send(s)
	}
	rcvNxt := k.cseq
	if v, _ := h.send(k.seg(true, packet.ACK, []byte("POST /x"))); v != Drop {
		t.Fatal("trigger packet passed with drop: true")
	}
	if len(h.injected) != 1 {
		t.Fatalf("%d injected, want 1 (to: server)", len(h.injected))
	}
	// The dropped request never reached the server: its RCV.NXT is before it.
	wantRST(t, injectedTCP(t, h, 0), flow.Client, flow.Server, k, rcvNxt)
}

func TestReset_Validate(t *testing.T) {
	var fe *FieldError
	if err := (&Reset{}).Validate(); !errors.As(err, &fe) || fe.Field != "trigger" {
		t.Errorf("missing trigger: %v", err)
	}
	if err := (&Reset{Trigger: Trigger{Kind: "client-fin"}, To: "nobody"}).Validate(); !errors.As(err, &fe) || fe.Field != "to" {
		t.Errorf("bad to: %v", err)
	}
}
