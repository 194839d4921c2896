package behaviors

import (
	"errors"
	"testing"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

func newHandshakeDrop(t testing.TB, name string, mut func(*HandshakeDrop)) *HandshakeDrop {
	b, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	d := b.(*HandshakeDrop)
	if mut != nil {
		mut(d)
	}
	return d
}

func verdicts(h *harness, segs ...[]byte) []Verdict {
	var out []Verdict
	for _, s := range segs {
		v, _ := h.send(s)
		out = append(out, v)
	}
	return out
}

func sameVerdicts(a, b []Verdict) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSYNDrop_CountPerFlow(t *testing.T) {
	h := newHarness(t, "syn-drop", newHandshakeDrop(t, "syn-drop", func(d *HandshakeDrop) { d.Count = 2 }), Match{})
	a, synA, synB := twoSYNs()
	got := verdicts(h, synA, synA, synB, synA, synB, synB)
	want := []Verdict{Drop, Drop, Drop, Pass, Drop, Pass}
	if !sameVerdicts(got, want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
	// The SYN-ACK and the ACK are not SYNs.
	if got := verdicts(h, a.seg(false, packet.SYN|packet.ACK, nil), a.seg(true, packet.ACK, nil)); !sameVerdicts(got, []Verdict{Pass, Pass}) {
		t.Fatalf("non-SYN verdicts %v", got)
	}
}

// The 2.6-era TCP_DEFER_ACCEPT timeline: the server's SYN-ACK is lost five
// times; the sixth gets through.
func TestSYNACKDrop_FiveRetransmits(t *testing.T) {
	h := newHarness(t, "synack-drop", newHandshakeDrop(t, "synack-drop", func(d *HandshakeDrop) { d.Count = 5 }), Match{})
	k := newConn(client6, server6, 0xffffffff, 0xffffffff)
	h.send(k.seg(true, packet.SYN, nil))
	synack := k.seg(false, packet.SYN|packet.ACK, nil)
	got := verdicts(h, synack, synack, synack, synack, synack, synack)
	if !sameVerdicts(got, []Verdict{Drop, Drop, Drop, Drop, Drop, Pass}) {
		t.Fatalf("verdicts %v", got)
	}
}

func TestACKDrop_HandshakeACKOnly(t *testing.T) {
	h := newHarness(t, "ack-drop", newHandshakeDrop(t, "ack-drop", nil), Match{})
	k := newConn(client4, server4, 0xfffffff0, 0xffffffff) // server ISN+1 wraps to 0
	hs := k.handshake()
	ackAgain := append([]byte(nil), hs[2]...)
	got := verdicts(h, hs[0], hs[1], hs[2], ackAgain,
		k.seg(true, packet.ACK|packet.PSH, []byte("GET /")), // data: not bare
		k.seg(false, packet.ACK, []byte("HTTP/1.1 200")),
		k.seg(true, packet.ACK, nil)) // bare, but acknowledges data
	want := []Verdict{Pass, Pass, Drop, Drop, Pass, Pass, Pass}
	if !sameVerdicts(got, want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
	all := newHarness(t, "ack-drop", newHandshakeDrop(t, "ack-drop", func(d *HandshakeDrop) { d.AllBareACKs = true }), Match{})
	k2 := newConn(client4, server4, 1, 2)
	k2.handshake()
	if got := verdicts(all, k2.seg(false, packet.ACK, nil), k2.seg(true, packet.ACK, nil), k2.seg(true, packet.FIN|packet.ACK, nil)); !sameVerdicts(got, []Verdict{Drop, Drop, Pass}) {
		t.Fatalf("all_bare_acks verdicts %v", got)
	}
}

func TestACKDrop_ProbabilityIsSeeded(t *testing.T) {
	run := func() []Verdict {
		h := newHarness(t, "ack-drop", newHandshakeDrop(t, "ack-drop", func(d *HandshakeDrop) { d.Probability = 0.5 }), Match{})
		var out []Verdict
		for i := 0; i < 200; i++ {
			k := newConn(client4, server4, uint32(i), uint32(i)*7)
			k.cport = uint16(20000 + i)
			out = append(out, verdicts(h, k.handshake()...)[2])
		}
		return out
	}
	a, b := run(), run()
	if !sameVerdicts(a, b) {
		t.Fatal("same seed, different decisions")
	}
	n := 0
	for _, v := range a {
		if v == Drop {
			n++
		}
	}
	if n < 70 || n > 130 {
		t.Fatalf("%d of 200 handshake ACKs dropped at p=0.5", n)
	}
}

func TestHandshakeDrop_Validate(t *testing.T) {
	var fe *FieldError
	if err := newHandshakeDrop(t, "syn-drop", func(d *HandshakeDrop) { d.AllBareACKs = true }).Validate(); !errors.As(err, &fe) || fe.Field != "all_bare_acks" {
		t.Errorf("all_bare_acks on syn-drop: %v", err)
	}
	if err := newHandshakeDrop(t, "ack-drop", func(d *HandshakeDrop) { d.Count = -1 }).Validate(); !errors.As(err, &fe) || fe.Field != "count" {
		t.Errorf("negative count: %v", err)
	}
}

func BenchmarkHandshakeDrop_Established(b *testing.B) {
	r := newBenchRig(b, "ack-drop", newHandshakeDrop(b, "ack-drop", func(d *HandshakeDrop) { d.Count = 3 }))
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}

// A flow that takes over an evicted flow's slot starts with fresh state:
// the count begins again, although the state's memory is reused.
func TestSYNDrop_EvictedFlowStateIsFresh(t *testing.T) {
	h := newHarness(t, "syn-drop", newHandshakeDrop(t, "syn-drop", func(d *HandshakeDrop) { d.Count = 1 }), Match{})
	h.flows = flow.NewTable(1, flow.DefaultTimeouts) // one slot: every new tuple evicts
	_, synA, synB := twoSYNs()
	if got, want := verdicts(h, synA, synA, synB, synB, synA, synA), []Verdict{Drop, Pass, Drop, Pass, Drop, Pass}; !sameVerdicts(got, want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { h.send(synB); h.send(synA) }); allocs != 0 {
		t.Errorf("%.1f allocations per pair of new flows, want 0 (the evicted flow's state is reused)", allocs)
	}
}

// twoSYNs returns connection a and the SYNs of a and of a second client
// port.
func twoSYNs() (a *tcpConn, synA, synB []byte) {
	a, b := newConn(client4, server4, 1, 2), newConn(client4, server4, 1, 2)
	b.cport = 40001
	return a, a.seg(true, packet.SYN, nil), b.seg(true, packet.SYN, nil)
}

// BenchmarkHandshakeDrop_SYNFlood sends SYNs of distinct tuples through a
// full table: each one evicts a flow and needs per-flow state.
func BenchmarkHandshakeDrop_SYNFlood(b *testing.B) {
	r := newBenchRig(b, "syn-drop", newHandshakeDrop(b, "syn-drop", func(d *HandshakeDrop) { d.Count = 1 }))
	syns := make([][]byte, 4096) // four times the rig's table
	for i := range syns {
		c := newConn(client4, server4, 1, 2)
		c.cport = uint16(10000 + i)
		syns[i] = c.seg(true, packet.SYN, nil)
	}
	for i, s := range syns { // fill the table: eviction from here on
		r.run(s, int64(i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if r.run(syns[i%len(syns)], int64(len(syns)+i)) != Drop {
			b.Fatal("a new flow's first SYN passed")
		}
	}
}
