package behaviors

import (
	"net/netip"
	"testing"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// rig runs packets through a chain the way the engine does: decode, track
// in a real flow table, run the chain. It reuses its Parsed and Packet, so
// benchmarks count only the behaviors' own allocations.
type rig struct {
	chain   *Chain
	flows   *flow.Table
	env     Env
	parsed  packet.Parsed
	p       Packet // the last packet run, as the chain left it
	scratch [2048]byte
}

// newRig validates b and builds a one-entry chain for it with match m and
// seed 1.
func newRig(tb testing.TB, typ string, b Behavior, m Match, env Env) *rig {
	tb.Helper()
	if v, ok := b.(Validator); ok {
		if err := v.Validate(); err != nil {
			tb.Fatalf("validate %s: %v", typ, err)
		}
	}
	return &rig{
		chain: NewChain("test", 1, []*Entry{{Type: typ, Match: m, Behavior: b}}),
		flows: flow.NewTable(1024, flow.DefaultTimeouts),
		env:   env,
	}
}

// run passes raw through the chain at now and returns the verdict.
func (r *rig) run(raw []byte, now int64) Verdict {
	r.parsed.Decode(raw)
	f, side := r.flows.Track(&r.parsed, now)
	r.p.Reset(&r.parsed, f, side, now)
	return r.chain.Run(&r.p, r.env, r.scratch[:])
}

// harness is a rig with a fake clock and a recording Env. Tests in this
// package share it so that each behavior's test reads like its recipe.
type harness struct {
	*rig
	now      int64 // ns
	injected [][]byte
	departs  []int64 // of the injected packets, absolute
	events   []string
}

// newHarness builds a one-entry chain for b with match m and seed 1.
func newHarness(t *testing.T, typ string, b Behavior, m Match) *harness {
	t.Helper()
	h := &harness{}
	h.rig = newRig(t, typ, b, m, h)
	return h
}

func (h *harness) Inject(pkt []byte, depart int64, note string) {
	h.injected = append(h.injected, append([]byte(nil), pkt...))
	h.departs = append(h.departs, depart)
}

func (h *harness) Event(p *Packet, note string) { h.events = append(h.events, note) }

// send runs raw through the chain at the harness clock and returns the
// verdict and the packet's departure delay in ns.
func (h *harness) send(raw []byte) (Verdict, int64) {
	v := h.run(raw, h.now)
	return v, h.p.Depart - h.now
}

// nopEnv is the Env of benchmarks: injecting and logging cost nothing.
type nopEnv struct{}

func (nopEnv) Inject([]byte, int64, string) {}
func (nopEnv) Event(*Packet, string)        {}

func newBenchRig(b *testing.B, typ string, bh Behavior) *rig {
	return newRig(b, typ, bh, Match{}, nopEnv{})
}

// loop runs up and down once per iteration, at increasing times, and
// reports allocations: the per-packet path must show 0 allocs/op.
func (r *rig) loop(b *testing.B, up, down []byte) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.run(up, int64(i))
		r.run(down, int64(i))
	}
}

// benchEstablished feeds a handshake and returns a client data segment and
// a server data segment of the same flow.
func benchEstablished(r *rig) (up, down []byte) {
	c := newConn(client4, server4, 1, 1000)
	for _, s := range c.handshake() {
		r.run(s, 0)
	}
	return c.seg(true, packet.ACK, make([]byte, 1400)), c.seg(false, packet.ACK, make([]byte, 1400))
}

// Addresses of the test client and server, in both IP versions.
var (
	client4 = netip.MustParseAddr("198.18.0.1")
	server4 = netip.MustParseAddr("198.18.0.2")
	client6 = netip.MustParseAddr("2001:db8::1")
	server6 = netip.MustParseAddr("2001:db8::2")
)

// tcpConn builds segments of one TCP connection between client:40000 and
// server:80, tracking both sides' next sequence numbers like real stacks.
type tcpConn struct {
	c, s         netip.Addr
	cport, sport uint16
	cseq, sseq   uint32
}

func newConn(c, s netip.Addr, cisn, sisn uint32) *tcpConn {
	return &tcpConn{c: c, s: s, cport: 40000, sport: 80, cseq: cisn, sseq: sisn}
}

// seg returns a segment from the client (fromClient) or the server with the
// given flags and payload, advancing that side's sequence number.
func (k *tcpConn) seg(fromClient bool, flags packet.TCPFlags, payload []byte) []byte {
	buf := make([]byte, 60+len(payload))
	spec := packet.TCPSpec{Flags: flags, Window: 65535, Payload: payload}
	if fromClient {
		spec.Src, spec.Dst, spec.SrcPort, spec.DstPort = k.c, k.s, k.cport, k.sport
		spec.Seq, spec.Ack = k.cseq, k.sseq
	} else {
		spec.Src, spec.Dst, spec.SrcPort, spec.DstPort = k.s, k.c, k.sport, k.cport
		spec.Seq, spec.Ack = k.sseq, k.cseq
	}
	if flags&packet.ACK == 0 {
		spec.Ack = 0
	}
	n := packet.BuildTCP(buf, spec)
	adv := uint32(len(payload))
	if flags&(packet.SYN|packet.FIN) != 0 {
		adv++
	}
	if fromClient {
		k.cseq += adv
	} else {
		k.sseq += adv
	}
	return buf[:n]
}

// NewTestConn and Seg give the external fuzz test (package behaviors_test,
// which imports profiles and so cannot live in this package) the same
// connection builder.
func NewTestConn(c, s netip.Addr, cisn, sisn uint32) *tcpConn { return newConn(c, s, cisn, sisn) }

// Seg is seg, exported for the fuzz test.
func (k *tcpConn) Seg(fromClient bool, flags packet.TCPFlags, payload []byte) []byte {
	return k.seg(fromClient, flags, payload)
}

// handshake returns SYN, SYN-ACK, ACK.
func (k *tcpConn) handshake() [][]byte {
	return [][]byte{
		k.seg(true, packet.SYN, nil),
		k.seg(false, packet.SYN|packet.ACK, nil),
		k.seg(true, packet.ACK, nil),
	}
}

// udpPacket builds a UDP datagram.
func udpPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	ipLen := 20
	if src.Is6() {
		ipLen = 40
	}
	b := make([]byte, ipLen+8+len(payload))
	if ipLen == 20 {
		b[0] = 0x45
		b[2], b[3] = byte(len(b)>>8), byte(len(b))
		b[8], b[9] = 64, packet.ProtoUDP
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
	} else {
		b[0] = 0x60
		pl := len(b) - 40
		b[4], b[5] = byte(pl>>8), byte(pl)
		b[6], b[7] = packet.ProtoUDP, 64
		s, d := src.As16(), dst.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
	}
	u := b[ipLen:]
	u[0], u[1], u[2], u[3] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
	l := 8 + len(payload)
	u[4], u[5] = byte(l>>8), byte(l)
	copy(u[8:], payload)
	var p packet.Parsed
	p.Decode(b)
	p.FixChecksums()
	return b
}
