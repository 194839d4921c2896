package behaviors

import (
	"errors"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// fireRecorder records the packets (1-based, in sending order) at which its
// trigger fires.
type fireRecorder struct {
	Trigger
	n     int
	fired []int
}

func (r *fireRecorder) Handle(p *Packet) Verdict {
	r.n++
	if st := FlowState[TriggerState](p); st != nil && r.Fires(p, st) {
		r.fired = append(r.fired, r.n)
	}
	return Pass
}

// fireAt sends each segment at its time (ms) and returns where tr fired.
func fireAt(t *testing.T, tr Trigger, segs [][]byte, ms []int64) []int {
	t.Helper()
	r := &fireRecorder{Trigger: tr}
	h := newHarness(t, "trigger", r, Match{})
	for i, s := range segs {
		if ms != nil {
			h.now = ms[i] * int64(time.Millisecond)
		}
		h.send(s)
	}
	return r.fired
}

// closingConn is a connection where the server answers a request and
// closes: 1-3 handshake, 4 request (6 bytes), 5 response (100 bytes),
// 6 server FIN, 7 client ACK of the FIN, 8 client FIN.
func closingConn() [][]byte {
	c := newConn(client4, server4, 7, 9000)
	segs := c.handshake()
	segs = append(segs,
		c.seg(true, packet.ACK|packet.PSH, []byte("GET /\n")),
		c.seg(false, packet.ACK|packet.PSH, make([]byte, 100)),
		c.seg(false, packet.FIN|packet.ACK, nil),
		c.seg(true, packet.ACK, nil),
		c.seg(true, packet.FIN|packet.ACK, nil))
	return segs
}

func TestTrigger_FlowStateKinds(t *testing.T) {
	for _, tc := range []struct {
		kind string
		want int
	}{
		{"client-acked-server-fin", 7},
		{"server-fin", 6},
		{"client-fin", 8},
	} {
		got := fireAt(t, Trigger{Kind: tc.kind}, closingConn(), nil)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s fired at %v, want [%d]", tc.kind, got, tc.want)
		}
	}
	c := newConn(client6, server6, 1, 2)
	segs := append(c.handshake(), c.seg(false, packet.ACK, []byte("x")), c.seg(true, packet.RST|packet.ACK, nil), c.seg(false, packet.ACK, []byte("y")))
	if got := fireAt(t, Trigger{Kind: "client-rst"}, segs, nil); len(got) != 1 || got[0] != 5 {
		t.Errorf("client-rst fired at %v, want [5]", got)
	}
}

func TestTrigger_Bytes(t *testing.T) {
	mk := func() [][]byte {
		c := newConn(client4, server4, 0xfffffff0, 100) // client sequence wraps
		segs := c.handshake()
		return append(segs,
			c.seg(true, packet.ACK, make([]byte, 4)),    // 4: client 4
			c.seg(false, packet.ACK, make([]byte, 100)), // 5: server 100
			c.seg(true, packet.ACK, make([]byte, 5)),    // 6: client 9
			c.seg(true, packet.ACK, make([]byte, 1)),    // 7: client 10
			c.seg(true, packet.ACK, make([]byte, 1)))    // 8
	}
	for _, tc := range []struct {
		dir  string
		want int
	}{{"upstream", 7}, {"downstream", 5}, {"", 5}} {
		got := fireAt(t, Trigger{Kind: "bytes", AfterBytes: 10, Direction: tc.dir}, mk(), nil)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("bytes direction %q fired at %v, want [%d]", tc.dir, got, tc.want)
		}
	}
}

func TestTrigger_IdleAndTime(t *testing.T) {
	mk := func() [][]byte {
		c := newConn(client4, server4, 1, 2)
		return append(c.handshake(), c.seg(true, packet.ACK, []byte("a")), c.seg(false, packet.ACK, []byte("b")), c.seg(true, packet.ACK, []byte("c")))
	}
	// Gaps of 1 ms, 0.999 s, 4.999 s, then exactly 5 s: idle 5s fires on
	// the 5th packet, the first after 5 s of silence.
	ms := []int64{0, 1, 1000, 5999, 10999, 11000}
	if got := fireAt(t, Trigger{Kind: "idle", After: 5 * time.Second}, mk(), ms); len(got) != 1 || got[0] != 5 {
		t.Errorf("idle fired at %v, want [5]", got)
	}
	if got := fireAt(t, Trigger{Kind: "time", After: 5999 * time.Millisecond}, mk(), ms); len(got) != 1 || got[0] != 4 {
		t.Errorf("time fired at %v, want [4]", got)
	}
	if got := fireAt(t, Trigger{Kind: "time", After: time.Minute}, mk(), ms); len(got) != 0 {
		t.Errorf("time 1m fired at %v in an 11 s flow", got)
	}
}

func TestTrigger_RegexOnFirstPayloadOnly(t *testing.T) {
	mk := func(first, second string) [][]byte {
		c := newConn(client6, server6, 0xffffffff, 5)
		return append(c.handshake(), c.seg(true, packet.ACK, []byte(first)),
			c.seg(false, packet.ACK, []byte("HTTP/1.1 500 oops")), c.seg(true, packet.ACK, []byte(second)))
	}
	post := Trigger{Kind: "regex", Pattern: "^POST "}
	if got := fireAt(t, post, mk("POST /upload", "GET /"), nil); len(got) != 1 || got[0] != 4 {
		t.Errorf("regex fired at %v, want [4]", got)
	}
	if got := fireAt(t, post, mk("GET /", "POST /upload"), nil); len(got) != 0 {
		t.Errorf("regex fired at %v on a later payload", got)
	}
	down := Trigger{Kind: "regex", Pattern: "^HTTP/1.1 5", Direction: "downstream"}
	if got := fireAt(t, down, mk("GET /", "GET /"), nil); len(got) != 1 || got[0] != 5 {
		t.Errorf("downstream regex fired at %v, want [5]", got)
	}
}

func TestTrigger_OncePerFlow(t *testing.T) {
	r := &fireRecorder{Trigger: Trigger{Kind: "bytes", AfterBytes: 1}}
	h := newHarness(t, "trigger", r, Match{})
	a, b := newConn(client4, server4, 1, 2), newConn(client4, server4, 1, 2)
	b.cport = 40001
	for i := 0; i < 3; i++ {
		h.send(a.seg(true, packet.ACK, []byte("x")))
		h.send(b.seg(true, packet.ACK, []byte("x")))
	}
	if len(r.fired) != 2 || r.fired[0] != 1 || r.fired[1] != 2 {
		t.Fatalf("fired at %v, want [1 2] (once in each of two flows)", r.fired)
	}
}

func TestTrigger_ValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		tr    Trigger
		field string
	}{
		{Trigger{}, "trigger"},
		{Trigger{Kind: "sometimes"}, "trigger"},
		{Trigger{Kind: "bytes"}, "after_bytes"},
		{Trigger{Kind: "idle"}, "after"},
		{Trigger{Kind: "time", After: -time.Second}, "after"},
		{Trigger{Kind: "server-fin", After: time.Second}, "after"},
		{Trigger{Kind: "idle", After: time.Second, AfterBytes: 5}, "after_bytes"},
		{Trigger{Kind: "regex"}, "pattern"},
		{Trigger{Kind: "regex", Pattern: "("}, "pattern"},
		{Trigger{Kind: "bytes", AfterBytes: 1, Direction: "sideways"}, "direction"},
		{Trigger{Kind: "idle", After: time.Second, Direction: "upstream"}, "direction"},
	} {
		err := tc.tr.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: error %v, want one naming %q", tc.tr, err, tc.field)
		}
	}
	ok := Trigger{Kind: "Regex", Pattern: "^GET", Direction: "upstream"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid trigger rejected: %v", err)
	}
}

// --- helpers shared by the tests of the stateful behaviors ---

// injectedTCP decodes the i-th injected packet and checks its checksums.
func injectedTCP(t *testing.T, h *harness, i int) packet.Parsed {
	t.Helper()
	if i >= len(h.injected) {
		t.Fatalf("%d packets injected, want at least %d", len(h.injected), i+1)
	}
	var p packet.Parsed
	p.Decode(h.injected[i])
	if p.Malformed != packet.OK || !p.IsTCP() {
		t.Fatalf("injected packet %d does not decode as TCP: %v", i, p.Malformed)
	}
	if !p.ChecksumsValid() {
		t.Fatalf("injected packet %d has bad checksums", i)
	}
	return p
}

// wantRST checks that p is a RST from src to dst with sequence seq.
func wantRST(t *testing.T, p packet.Parsed, src, dst flow.Side, k *tcpConn, seq uint32) {
	t.Helper()
	addr := func(s flow.Side) (a [16]byte, port uint16) {
		if s == flow.Client {
			return k.c.As16(), k.cport
		}
		return k.s.As16(), k.sport
	}
	sa, sp := addr(src)
	da, dp := addr(dst)
	if p.Src.As16() != sa || p.Dst.As16() != da || p.SrcPort != sp || p.DstPort != dp {
		t.Fatalf("RST %v:%d -> %v:%d, want %v -> %v", p.Src, p.SrcPort, p.Dst, p.DstPort, src, dst)
	}
	if p.Flags&packet.RST == 0 {
		t.Fatalf("injected flags %v, want RST", p.Flags)
	}
	if p.Seq != seq {
		t.Fatalf("RST %v->%v seq %d (%#x), want %d (%#x)", src, dst, p.Seq, p.Seq, seq, seq)
	}
}

func BenchmarkTrigger_BytesNotYet(b *testing.B) {
	r := newBenchRig(b, "trigger", &fireRecorder{Trigger: Trigger{Kind: "bytes", AfterBytes: 1 << 50}})
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}
