package engine

import (
	"net/netip"
	"testing"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/tun"
)

// benchPath runs batches of 1448-byte TCP segments through the packet path
// (decode, route, track, chain) without devices: the per-packet cost that
// the engine adds, which must not allocate.
func benchPath(b *testing.B, chain *behaviors.Chain) { benchPathOf(b, chain, 1) }

// benchPathOf is benchPath with super-packets of segs segments (1: plain
// segments); ns/segment is the cost per wire packet.
func benchPathOf(b *testing.B, chain *behaviors.Chain, segs int) {
	e := New(Config{})
	for _, h := range []struct {
		name string
		a    netip.Addr
	}{{"client", clientAddr}, {"server", serverAddr}} {
		if err := e.AddPort(h.name, tun.NewMemPort(h.name, 1500, true), []netip.Prefix{netip.PrefixFrom(h.a, 32)}); err != nil {
			b.Fatal(err)
		}
	}
	if chain != nil {
		e.SetChain(chain)
	}
	w := newWorker(e)
	for i := range w.batch {
		seg := tcpSeg(clientAddr, serverAddr, uint16(40000+i%8), 80, uint32(i*segs)*1448, 1, packet.ACK, make([]byte, segs*1448))
		copy(w.batch[i].Buf[tun.Headroom:], seg)
		w.batch[i].Off, w.batch[i].Len = tun.Headroom, len(seg)
		if segs > 1 {
			w.batch[i].Offload = tun.Offload{GSOType: tun.GSOTCPv4, NeedsCsum: true, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
		}
	}
	in := e.ports[0]
	b.SetBytes(int64(len(w.batch)*segs) * 1500)
	b.ReportAllocs()
	for b.Loop() {
		e.mu.Lock()
		w.recycle()
		w.now = e.clock()
		for i := range w.batch {
			e.process(w, in, &w.batch[i])
		}
		e.flows.Expire(w.now, 8)
		e.mu.Unlock()
		for id := range w.out { // stand-in for flush: no device write
			w.out[id] = w.out[id][:0]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(w.batch)*segs), "ns/segment")
}

func BenchmarkPath_Passthrough(b *testing.B) { benchPath(b, nil) }

func BenchmarkPath_LogEverySegment(b *testing.B) {
	m, _ := behaviors.MatchSpec{Protocol: "tcp"}.Compile(nil)
	benchPath(b, behaviors.NewChain("log", 1, []*behaviors.Entry{{Type: "log", Match: m, Behavior: &behaviors.Log{Every: 1}}}))
}

// A log on every segment of 64 KB super-packets: segments looked at in
// place, the super-packets forwarded whole.
func BenchmarkPath_LogEverySegmentOfSuperPackets(b *testing.B) {
	m, _ := behaviors.MatchSpec{Protocol: "tcp"}.Compile(nil)
	benchPathOf(b, behaviors.NewChain("log", 1, []*behaviors.Entry{{Type: "log", Match: m, Behavior: &behaviors.Log{Every: 1}}}), 45)
}
