package behaviors

import (
	"errors"
	"slices"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

func newSeqRandomize(mut func(*SeqRandomize)) *SeqRandomize {
	b, _ := New("seq-randomize")
	s := b.(*SeqRandomize)
	if mut != nil {
		mut(s)
	}
	return s
}

// seqOf reads a segment's sequence and acknowledgment numbers.
func seqOf(seg []byte) (seq, ack uint32) {
	var p packet.Parsed
	p.Decode(seg)
	return p.Seq, p.Ack
}

// randomizedConn runs a handshake and a server data segment of k through
// h, then the client's ACK of that data with a SACK block above it, both
// in the randomized space the client sees. It returns the offset the box
// applied to the server's sequence numbers and the ACK as it left the box.
func randomizedConn(t *testing.T, h *harness, k *tcpConn) (offset uint32, ack []byte) {
	t.Helper()
	for _, s := range k.handshake() {
		if v, _ := h.send(s); v != Pass {
			t.Fatal("handshake segment dropped")
		}
	}
	data := k.seg(false, packet.ACK, make([]byte, 1000))
	sent, _ := seqOf(data)
	h.send(data)
	got, _ := seqOf(data)
	offset = got - sent
	k.sseq += offset
	ack = withOptions(k.seg(true, packet.ACK, nil), sackOption(got+2000, got+3000)...)
	k.sseq -= offset
	h.send(ack)
	return offset, ack
}

func TestSeqRandomize_OffsetsServerSeqAndClientAckLeavesSACK(t *testing.T) {
	h := newHarness(t, "seq-randomize", newSeqRandomize(nil), Match{})
	serverISN := uint32(0xfffffff0) // the real numbers wrap
	k := newConn(client4, server4, 1000, serverISN)
	offset, ack := randomizedConn(t, h, k)
	if offset == 0 {
		t.Fatal("no offset applied")
	}
	dataEnd := serverISN + 1 + 1000
	if _, a := seqOf(ack); a != dataEnd {
		t.Errorf("client ACK %d left the box, want %d: the offset taken off", a, dataEnd)
	}
	want := []uint32{dataEnd - 1000 + offset + 2000, dataEnd - 1000 + offset + 3000}
	if got := sackEdges(ack); !slices.Equal(got, want) {
		t.Errorf("SACK edges %v, want %v: left in the randomized space", got, want)
	}
	if h.p.Note == "" {
		t.Error("the ACK with untranslated SACK blocks has no note")
	}
	if st := h.chain.Entries[0].Behavior.(Stats).Stats(); st["flows"] != 1 || st["sack_left"] != 1 || st["sack_rewritten"] != 0 {
		t.Errorf("stats %v", st)
	}
	if len(h.events) != 1 {
		t.Errorf("events %v, want one per flow", h.events)
	}
}

func TestSeqRandomize_RewriteSACK(t *testing.T) {
	h := newHarness(t, "seq-randomize", newSeqRandomize(func(s *SeqRandomize) { s.RewriteSACK = true }), Match{})
	k := newConn(client6, server6, 1000, 5000)
	_, ack := randomizedConn(t, h, k)
	if got, want := sackEdges(ack), []uint32{5001 + 2000, 5001 + 3000}; !slices.Equal(got, want) {
		t.Errorf("SACK edges %v, want %v: translated back", got, want)
	}
	if !h.p.Modified() {
		t.Error("rewritten ACK not marked modified")
	}
	if st := h.chain.Entries[0].Behavior.(Stats).Stats(); st["sack_rewritten"] != 1 || st["sack_left"] != 0 {
		t.Errorf("stats %v", st)
	}
}

func TestSeqRandomize_ClientSideWithFixedOffset(t *testing.T) {
	h := newHarness(t, "seq-randomize", newSeqRandomize(func(s *SeqRandomize) { s.Side = "client"; s.Offset = 3000 }), Match{})
	k := newConn(client4, server4, 1000, 5000)
	syn := k.seg(true, packet.SYN, nil)
	h.send(syn)
	if s, _ := seqOf(syn); s != 4000 {
		t.Errorf("client SYN left at %d, want 1000+3000", s)
	}
	k.cseq += 3000 // the server acknowledges the ISN it saw
	synack := k.seg(false, packet.SYN|packet.ACK, nil)
	h.send(synack)
	if s, a := seqOf(synack); s != 5000 || a != 1001 {
		t.Errorf("SYN-ACK left with seq %d ack %d, want 5000 and 1001", s, a)
	}
	k.cseq -= 3000
	data := k.seg(true, packet.ACK, []byte("GET /"))
	h.send(data)
	if s, a := seqOf(data); s != 4001 || a != 5001 {
		t.Errorf("client data left with seq %d ack %d, want 4001 and 5001", s, a)
	}
}

// offsetsFor returns the offsets a seq-randomize box with seed applies to
// three flows, each SYN sent twice (a retransmission keeps its offset).
func offsetsFor(t *testing.T, seed uint64) []uint32 {
	b := newSeqRandomize(nil)
	h := newHarness(t, "seq-randomize", b, Match{})
	h.chain = NewChain("t", seed, []*Entry{{Type: "seq-randomize", Behavior: b}})
	var out []uint32
	for port := uint16(40000); port < 40003; port++ {
		k := newConn(client4, server4, 1000, 5000)
		k.cport = port
		syn := k.seg(true, packet.SYN, nil)
		h.send(syn)
		h.send(append([]byte(nil), syn...))
		synack := k.seg(false, packet.SYN|packet.ACK, nil)
		h.send(synack)
		first, _ := seqOf(synack)
		k.sseq = 5000
		again := k.seg(false, packet.SYN|packet.ACK, nil)
		h.send(again)
		if second, _ := seqOf(again); second != first {
			t.Fatalf("the SYN-ACK's retransmission left at %d, the first at %d", second, first)
		}
		out = append(out, first-5000)
	}
	return out
}

func TestSeqRandomize_OffsetsPerFlowFromTheSeed(t *testing.T) {
	a, b, c := offsetsFor(t, 1), offsetsFor(t, 1), offsetsFor(t, 2)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, offsets %v and %v", a, b)
	}
	if slices.Equal(a, c) || a[0] == a[1] || a[1] == a[2] || slices.Contains(a, 0) {
		t.Errorf("offsets %v (seed 1) and %v (seed 2): not drawn per flow", a, c)
	}
}

func TestSeqRandomize_NewConnectionOnTheTupleRedraws(t *testing.T) {
	h := newHarness(t, "seq-randomize", newSeqRandomize(nil), Match{})
	var offs []uint32
	for _, isn := range []uint32{1000, 9000} { // same tuple, new ISN
		k := newConn(client4, server4, isn, 5000)
		h.send(k.seg(true, packet.SYN, nil))
		synack := k.seg(false, packet.SYN|packet.ACK, nil)
		h.send(synack)
		s, _ := seqOf(synack)
		offs = append(offs, s-5000)
	}
	if offs[0] == offs[1] {
		t.Errorf("a new connection on the tuple kept offset %d", offs[0])
	}
}

func TestSeqRandomize_FlowsPickedUpMidStreamPassUntouched(t *testing.T) {
	h := newHarness(t, "seq-randomize", newSeqRandomize(nil), Match{})
	k := newConn(client4, server4, 1000, 5000)
	k.handshake() // the box never saw it
	data := k.seg(false, packet.ACK, []byte("late"))
	orig := append([]byte(nil), data...)
	if v, _ := h.send(data); v != Pass || h.p.Modified() || !slices.Equal(data, orig) {
		t.Error("a flow whose SYN the box did not see was rewritten")
	}
}

func TestSeqRandomize_Validate(t *testing.T) {
	var fe *FieldError
	if err := newSeqRandomize(func(s *SeqRandomize) { s.Side = "inside" }).Validate(); !errors.As(err, &fe) || fe.Field != "side" {
		t.Errorf("side inside: %v", err)
	}
	if err := newSeqRandomize(func(s *SeqRandomize) { s.Side = "Client" }).Validate(); err != nil {
		t.Error(err)
	}
}

func BenchmarkSeqRandomize_Established(b *testing.B) {
	r := newBenchRig(b, "seq-randomize", newSeqRandomize(nil))
	up, down := benchEstablished(r)
	r.loop(b, withOptions(up, sackOption(1, 2)...), down)
}
