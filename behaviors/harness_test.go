package behaviors

import (
	"net/netip"
	"testing"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// harness runs packets through one behavior the way the engine does, with a
// fake clock, a real flow table and a recording Env. Tests in this package
// share it so that each behavior's test reads like its recipe.
type harness struct {
	t        *testing.T
	chain    *Chain
	flows    *flow.Table
	now      int64 // ns
	injected [][]byte
	events   []string
	scratch  [2048]byte
}

// newHarness builds a one-entry chain for b with match m and seed 1.
func newHarness(t *testing.T, typ string, b Behavior, m Match) *harness {
	t.Helper()
	if v, ok := b.(Validator); ok {
		if err := v.Validate(); err != nil {
			t.Fatalf("validate %s: %v", typ, err)
		}
	}
	return &harness{
		t:     t,
		chain: NewChain("test", 1, []*Entry{{Type: typ, Match: m, Behavior: b}}),
		flows: flow.NewTable(1024, flow.DefaultTimeouts),
	}
}

func (h *harness) Inject(pkt []byte, depart int64, note string) {
	h.injected = append(h.injected, append([]byte(nil), pkt...))
}

func (h *harness) Event(p *Packet, note string) { h.events = append(h.events, note) }

// send runs raw through the chain at the harness clock and returns the
// verdict and the packet's departure delay in ns.
func (h *harness) send(raw []byte) (Verdict, int64) {
	var parsed packet.Parsed
	parsed.Decode(raw)
	f, side := h.flows.Track(&parsed, h.now)
	var p Packet
	p.Reset(&parsed, f, side, h.now)
	v := h.chain.Run(&p, h, h.scratch[:])
	return v, p.Depart - h.now
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
func (k *tcpConn) seg(fromClient bool, flags uint8, payload []byte) []byte {
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

// handshake returns SYN, SYN-ACK, ACK.
func (k *tcpConn) handshake() [][]byte {
	return [][]byte{
		k.seg(true, packet.SYN, nil),
		k.seg(false, packet.SYN|packet.ACK, nil),
		k.seg(true, packet.ACK, nil),
	}
}

// udp4 builds a UDP datagram.
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
