package behaviors

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

func newASA(mut func(*ASATeardown)) *ASATeardown {
	b, _ := New("asa-teardown")
	a := b.(*ASATeardown)
	if mut != nil {
		mut(a)
	}
	return a
}

// asaSession opens a connection, sends a 275-byte request so that the
// client's FIN occupies relative sequence 276 (as in the 2015 capture), and
// has the server send a partial response.
func asaSession(t *testing.T, e *harness, c, s netip.Addr, cisn, sisn uint32) *tcpConn {
	t.Helper()
	k := newConn(c, s, cisn, sisn)
	for _, seg := range k.handshake() {
		if v, _ := e.send(seg); v != Pass {
			t.Fatal("handshake segment dropped")
		}
	}
	e.send(k.seg(true, packet.ACK|packet.PSH, make([]byte, 275)))
	e.send(k.seg(false, packet.ACK, make([]byte, 1000)))
	return k
}

// The 2015 report: FIN at 276 is forwarded, the server would ACK 277, the
// ASA's RST carries 276. Checked in both IP versions and with ISNs that put
// the FIN, RCV.NXT or the server's sequence across the 32-bit wrap.
func TestASATeardown_RSTAtRCVNXTMinusOne_2015(t *testing.T) {
	addrs := []struct{ c, s netip.Addr }{{client4, server4}, {client6, server6}}
	isns := []struct{ c, s uint32 }{
		{1000, 5000},
		{0xffffff00, 0xfffffffe}, // request crosses the wrap
		{0xfffffeec, 0xffffffff}, // FIN at 0xffffffff+1 = 0, RCV.NXT 1
		{0xfffffeeb, 0xfffffc00}, // RCV.NXT = 0, RST at 0xffffffff
	}
	for _, a := range addrs {
		for _, isn := range isns {
			t.Run(fmt.Sprintf("%v/isn=%#x", a.c, isn.c), func(t *testing.T) {
				e := newHarness(t, "asa-teardown", newASA(nil), Match{})
				k := asaSession(t, e, a.c, a.s, isn.c, isn.s)
				finSeq := k.cseq
				if rel := finSeq - isn.c; rel != 276 {
					t.Fatalf("FIN at relative %d, want 276", rel)
				}
				v, finDelay := e.send(k.seg(true, packet.FIN|packet.ACK, nil))
				finDepart := e.now + finDelay
				if v != Pass {
					t.Fatal("FIN not forwarded")
				}
				if len(e.injected) != 1 {
					t.Fatalf("%d packets injected, want 1 RST", len(e.injected))
				}
				rst := injectedTCP(t, e, 0)
				// The server's RCV.NXT counts the FIN: 277; the RST is one less.
				wantRST(t, rst, flow.Client, flow.Server, k, isn.c+277-1)
				if rst.Seq != finSeq {
					t.Fatalf("RST seq %#x, want the FIN's own %#x", rst.Seq, finSeq)
				}
				if rst.Ack != k.sseq {
					t.Fatalf("RST ack %#x, want the server's next %#x", rst.Ack, k.sseq)
				}
				if e.departs[0] <= finDepart {
					t.Fatalf("RST departs at %d, not after the FIN (%d)", e.departs[0], finDepart)
				}
			})
		}
	}
}

func TestASATeardown_ForgetDropsChallengeACKs(t *testing.T) {
	a := newASA(nil)
	e := newHarness(t, "asa-teardown", a, Match{})
	k := asaSession(t, e, client4, server4, 0xfffffff0, 1)
	e.send(k.seg(true, packet.FIN|packet.ACK, nil))
	later := [][]byte{
		k.seg(false, packet.ACK, nil),                    // challenge ACK for the RST
		k.seg(false, packet.ACK, make([]byte, 500)),      // the server keeps writing
		k.seg(true, packet.ACK, nil),                     // the client ACKs something
		k.seg(false, packet.ACK, nil),                    // another challenge ACK
		probe(k),                                         // a window probe: not a challenge ACK
		k.seg(true, packet.RST|packet.ACK, nil),          // the client's own RST
		k.seg(false, packet.FIN|packet.ACK, []byte("x")), // the server gives up
	}
	for i, seg := range later {
		e.now += int64(time.Second)
		if v, _ := e.send(seg); v != Drop {
			t.Fatalf("packet %d after the teardown passed", i)
		}
	}
	st := a.Stats()
	if st["dropped_after_forget"] != 7 || st["challenge_acks_dropped"] != 2 || st["rst_injected"] != 1 {
		t.Fatalf("stats %v, want 7 dropped, 2 challenge ACKs, 1 RST", st)
	}
	if len(e.injected) != 1 {
		t.Fatalf("%d packets injected, want only the one RST", len(e.injected))
	}
	// A new connection on the same tuple is a new flow for the ASA.
	k2 := newConn(client4, server4, 77777, 88888)
	for _, seg := range append(k2.handshake(), k2.seg(true, packet.ACK, []byte("GET"))) {
		if v, _ := e.send(seg); v != Pass {
			t.Fatal("new connection on the same tuple dropped")
		}
	}
}

func TestASATeardown_ForgetFor(t *testing.T) {
	e := newHarness(t, "asa-teardown", newASA(func(a *ASATeardown) { a.ForgetFor = 2 * time.Second }), Match{})
	k := asaSession(t, e, client6, server6, 1, 2)
	e.send(k.seg(true, packet.FIN|packet.ACK, nil))
	e.now += int64(1999 * time.Millisecond)
	if v, _ := e.send(k.seg(false, packet.ACK, nil)); v != Drop {
		t.Fatal("ACK within forget_for passed")
	}
	e.now += int64(time.Millisecond)
	if v, _ := e.send(k.seg(false, packet.ACK, nil)); v != Pass {
		t.Fatal("ACK after forget_for dropped")
	}
}

func TestASATeardown_SwallowedFIN_RSTInEstablished(t *testing.T) {
	for _, payload := range []int{0, 10} {
		a := newASA(func(a *ASATeardown) { a.FIN = "swallow" })
		e := newHarness(t, "asa-teardown", a, Match{})
		k := asaSession(t, e, client6, server6, 0xfffffeec, 3)
		fin := k.seg(true, packet.FIN|packet.ACK, make([]byte, payload))
		finSeq := k.cseq - 1
		v, _ := e.send(fin)
		if payload == 0 && v != Drop {
			t.Fatal("bare FIN not swallowed")
		}
		if payload > 0 {
			var p packet.Parsed
			p.Decode(fin)
			if v != Pass || p.Flags&packet.FIN != 0 {
				t.Fatalf("data+FIN: verdict %v flags %v, want the data forwarded without FIN", v, p.Flags)
			}
		}
		// The server never got the FIN: RCV.NXT is the FIN's sequence, the
		// RST is one below it (ignored in ESTABLISHED by RFC 5961 stacks).
		wantRST(t, injectedTCP(t, e, 0), flow.Client, flow.Server, k, finSeq-1)
		if a.Stats()["fin_swallowed"] != 1 {
			t.Fatalf("stats %v", a.Stats())
		}
	}
}

func TestASATeardown_OffsetsAndRSTToClient(t *testing.T) {
	for _, off := range []int{-2, 0, 1, -100000} {
		a := newASA(func(a *ASATeardown) { a.Offset, a.RSTToClient = off, true })
		e := newHarness(t, "asa-teardown", a, Match{})
		k := asaSession(t, e, client4, server4, 0xffffff00, 0xfffffff0)
		e.send(k.seg(true, packet.FIN|packet.ACK, nil))
		wantRST(t, injectedTCP(t, e, 0), flow.Client, flow.Server, k, k.cseq+uint32(off))
		wantRST(t, injectedTCP(t, e, 1), flow.Server, flow.Client, k, k.sseq)
	}
}

func TestASATeardown_OnClientRST(t *testing.T) {
	a := newASA(func(a *ASATeardown) { a.On = []string{"rst"} })
	e := newHarness(t, "asa-teardown", a, Match{})
	k := asaSession(t, e, client4, server4, 5, 6)
	if v, _ := e.send(k.seg(true, packet.FIN|packet.ACK, nil)); v != Pass || len(e.injected) != 0 {
		t.Fatal("FIN acted upon with on: [rst]")
	}
	if v, _ := e.send(k.seg(true, packet.RST|packet.ACK, nil)); v != Drop {
		t.Fatal("the client's RST was not replaced")
	}
	wantRST(t, injectedTCP(t, e, 0), flow.Client, flow.Server, k, k.cseq-1)
}

func TestASATeardown_WindowOffsetIsInWindowNotExact(t *testing.T) {
	a := newASA(func(a *ASATeardown) { a.OffsetMode = "window" })
	e := newHarness(t, "asa-teardown", a, Match{})
	seen := map[uint32]bool{}
	for i := 0; i < 50; i++ {
		k := newConn(client4, server4, uint32(i)*0x0fffffff, 9)
		k.cport = uint16(42000 + i)
		for _, seg := range k.handshake() {
			e.send(seg)
		}
		e.send(k.seg(true, packet.FIN|packet.ACK, nil))
		rst := injectedTCP(t, e, len(e.injected)-1)
		off := rst.Seq - k.cseq // from the server's RCV.NXT
		if off == 0 || off >= 65535 {
			t.Fatalf("window offset %d outside (0, 65535)", off)
		}
		seen[off] = true
	}
	if len(seen) < 40 {
		t.Fatalf("only %d distinct offsets in 50 flows", len(seen))
	}
}

func TestASATeardown_Validate(t *testing.T) {
	for field, mut := range map[string]func(*ASATeardown){
		"on":          func(a *ASATeardown) { a.On = nil },
		"fin":         func(a *ASATeardown) { a.FIN = "eat" },
		"offset_mode": func(a *ASATeardown) { a.OffsetMode = "random" },
		"forget_for":  func(a *ASATeardown) { a.ForgetFor = -time.Second },
	} {
		var fe *FieldError
		if err := newASA(mut).Validate(); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: error %v", field, err)
		}
	}
	if err := newASA(func(a *ASATeardown) { a.On = []string{"FIN", "rst"} }).Validate(); err != nil {
		t.Error(err)
	}
}

func BenchmarkASATeardown_Established(b *testing.B) {
	r := newBenchRig(b, "asa-teardown", newASA(nil))
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}

func BenchmarkASATeardown_Forgotten(b *testing.B) {
	r := newBenchRig(b, "asa-teardown", newASA(nil))
	c := newConn(client4, server4, 1, 1000)
	for _, s := range c.handshake() {
		r.run(s, 0)
	}
	r.run(c.seg(true, packet.FIN|packet.ACK, nil), 0)
	ack := c.seg(false, packet.ACK, nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if r.run(ack, int64(i)) != Drop {
			b.Fatal("passed")
		}
	}
}

// probe is the server's zero-window (or keepalive) probe: a bare ACK one
// below its next sequence number.
func probe(k *tcpConn) []byte {
	k.sseq--
	b := k.seg(false, packet.ACK, nil)
	k.sseq++
	return b
}
