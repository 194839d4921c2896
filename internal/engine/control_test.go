package engine

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/tun"
)

// holdVar delays every packet by d; a pointer, so that a test can change
// d in place as a PATCH does.
type holdVar struct{ d time.Duration }

func (h *holdVar) Handle(p *behaviors.Packet) behaviors.Verdict {
	p.Depart = p.Now + int64(h.d)
	return behaviors.Pass
}

// sendAck sends a bare ACK with sequence number seq from client to server.
func (l *lab) sendAck(seq uint32) {
	l.client.Send(tcpSeg(clientAddr, serverAddr, 40000, 80, seq, 0, packet.ACK, nil), tun.Offload{})
}

// arrives reports whether the server gets a packet within d.
func (l *lab) arrives(d time.Duration) bool {
	_, _, ok := l.server.Recv(d)
	return ok
}

func TestEngine_EditChainAddsPatchesAndRemovesBehaviors(t *testing.T) { eachMode(t, editChain) }

func editChain(t *testing.T, cfg Config) {
	l := newLab(t, cfg)
	long := &holdVar{d: 20 * time.Second}
	l.e.SetChain(behaviors.NewChain("t", 1, []*behaviors.Entry{{Name: "long", Type: "hold", Behavior: long}}))
	l.sendAck(1)
	if l.arrives(50 * time.Millisecond) {
		t.Fatal("a packet held 20s arrived")
	}
	m := l.e.Metrics()
	if m.Queued[1] != 1 || m.Queued[0] != 0 {
		t.Fatalf("delay lines hold %v, want [0 1]", m.Queued)
	}
	// 20s falls in the bucket bounded by 30s.
	if i := 16; DelayBounds[i] != 30*time.Second || m.DelayCounts[i] != 1 || m.DelaySum != 20*time.Second {
		t.Fatalf("delay histogram %v sum %v", m.DelayCounts, m.DelaySum)
	}

	must(t, l.e.EditChain(func(c *behaviors.Chain) (*behaviors.Chain, error) {
		n, _, err := c.Without("long")
		return n, err
	}))
	l.sendAck(2)
	if !l.arrives(time.Second) {
		t.Fatal("after the hold was removed, a packet did not pass")
	}

	short := &holdVar{d: 30 * time.Millisecond}
	must(t, l.e.EditChain(func(c *behaviors.Chain) (*behaviors.Chain, error) {
		return c.With(&behaviors.Entry{Type: "hold", Behavior: short}, -1)
	}))
	start := time.Now()
	l.sendAck(3)
	if !l.arrives(time.Second) || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("with a 30ms hold added, the packet took %v", time.Since(start))
	}

	must(t, l.e.EditChain(func(c *behaviors.Chain) (*behaviors.Chain, error) {
		short.d = 20 * time.Second // in place, as a PATCH does
		return c, nil
	}))
	l.sendAck(4)
	if l.arrives(50 * time.Millisecond) {
		t.Fatal("after the patch to 20s, a packet arrived at once")
	}
	if _, _, entries := l.e.ChainStatus(); len(entries) != 1 || entries[0].Name != "hold" || entries[0].Counters.Delayed != 2 {
		t.Fatalf("chain status %+v", entries)
	}
}

func TestEngine_TopFlows(t *testing.T) {
	l := newLab(t, Config{})
	// Three connections, one after another: 200, 1000 and 10 payload bytes.
	for i, size := range []int{200, 1000, 10} {
		l.client.Send(tcpSeg(clientAddr, serverAddr, uint16(40001+i), 80, 1, 0, packet.ACK, make([]byte, size)), tun.Offload{})
		if !l.arrives(time.Second) {
			t.Fatal("not forwarded")
		}
		time.Sleep(time.Millisecond) // distinct creation times
	}
	ports := func(fs []FlowInfo) []uint16 {
		var out []uint16
		for _, f := range fs {
			out = append(out, f.Client.Port())
		}
		return out
	}
	for _, tc := range []struct {
		order FlowOrder
		n     int
		want  []uint16
	}{
		{Busiest, 10, []uint16{40002, 40001, 40003}},
		{Busiest, 1, []uint16{40002}},
		{Oldest, 2, []uint16{40001, 40002}},
		{Recent, 2, []uint16{40003, 40002}},
		{Oldest, 0, nil},
	} {
		got := l.e.TopFlows(tc.n, tc.order)
		if !slices.Equal(ports(got), tc.want) {
			t.Errorf("order %d n %d: %v, want %v", tc.order, tc.n, ports(got), tc.want)
		}
	}
	f := l.e.TopFlows(1, Busiest)[0]
	if f.Server != netip.AddrPortFrom(serverAddr, 80) || f.Bytes() != 1000 || f.State.String() != "established" {
		t.Fatalf("busiest flow %+v", f)
	}
}

type recorder struct {
	mu sync.Mutex
	n  int
}

func (r *recorder) Record(Record) { r.mu.Lock(); r.n++; r.mu.Unlock() }
func (r *recorder) count() int    { r.mu.Lock(); defer r.mu.Unlock(); return r.n }

func TestEngine_SetCaptureStartsAndStops(t *testing.T) {
	l := newLab(t, Config{})
	rec := &recorder{}
	if old := l.e.SetCapture(rec); old != nil {
		t.Fatalf("a capture was running: %v", old)
	}
	l.sendAck(1)
	if !l.arrives(time.Second) || rec.count() != 2 { // in and out
		t.Fatalf("recorded %d packets, want 2", rec.count())
	}
	if old := l.e.SetCapture(nil); old != rec {
		t.Fatal("SetCapture(nil) did not return the running capture")
	}
	l.sendAck(2)
	if !l.arrives(time.Second) || rec.count() != 2 {
		t.Fatalf("recorded %d packets after the capture stopped", rec.count())
	}
}
