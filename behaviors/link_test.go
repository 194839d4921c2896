package behaviors

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// direct calls one behavior's Handle without a chain or flow table, for the
// loops of a million packets and the benchmarks of the link behaviors.
type direct struct {
	parsed   packet.Parsed
	p        Packet
	rand     *rand.Rand
	scratch  [128]byte
	injected int
}

func newDirect(raw []byte, seed uint64) *direct {
	d := &direct{rand: rand.New(rand.NewPCG(seed, 1))}
	d.parsed.Decode(raw)
	return d
}

// at prepares the packet arriving at now in one direction and returns it.
func (d *direct) at(now int64, upstream bool) *Packet {
	from := flow.Client
	if !upstream {
		from = flow.Server
	}
	d.p.Reset(&d.parsed, nil, from, now)
	d.p.Bind(d.rand, nil, d, d.scratch[:])
	return &d.p
}

func (d *direct) Inject(pkt []byte, depart int64, note string) { d.injected++ }
func (d *direct) Event(p *Packet, note string)                 {}

// reseed gives a harness's chain another run seed.
func reseed(h *harness, seed uint64) {
	h.chain = NewChain("test", seed, h.chain.Entries)
}

// dataSeg returns a data segment of n payload bytes from the client
// (upstream) or the server, after the handshake has been sent through h.
func dataSeg(k *tcpConn, upstream bool, n int) []byte {
	return k.seg(upstream, packet.ACK|packet.PSH, make([]byte, n))
}

func meanStd(xs []float64) (mean, std float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)-1))
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.4g, want %.4g ± %.2g", what, got, want, tol)
	}
}

func TestLink_HoldUntilNeverMovesEarlier(t *testing.T) {
	p := &Packet{Depart: 100}
	holdUntil(p, 50)
	if p.Depart != 100 {
		t.Fatalf("Depart moved earlier to %d", p.Depart)
	}
	holdUntil(p, 150)
	if p.Depart != 150 {
		t.Fatalf("Depart = %d, want 150", p.Depart)
	}
}

func TestLink_ChanceDrawsNothingAtZeroOrOne(t *testing.T) {
	d := newDirect(udpPacket(client4, server4, 1, 2, nil), 7)
	ref := rand.New(rand.NewPCG(7, 1))
	p := d.at(0, true)
	if chance(p, 0) || !chance(p, 1) {
		t.Fatal("chance(0) or chance(1) wrong")
	}
	if d.rand.Uint64() != ref.Uint64() {
		t.Fatal("chance(0)/chance(1) consumed randomness")
	}
}

func TestLink_EpochIsFirstArrival(t *testing.T) {
	var e epoch
	p := &Packet{Now: 1000, Depart: 1500}
	if r := e.rel(p); r != 500 {
		t.Fatalf("rel = %d, want 500", r)
	}
	p = &Packet{Now: 3000, Depart: 3000}
	if r := e.rel(p); r != 2000 {
		t.Fatalf("rel = %d, want 2000", r)
	}
}
