package engine

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/tun"
)

var (
	clientAddr = netip.MustParseAddr("198.18.0.1")
	serverAddr = netip.MustParseAddr("198.18.0.2")
	client6    = netip.MustParseAddr("2001:db8::1")
	server6    = netip.MustParseAddr("2001:db8::2")
)

type lab struct {
	e              *Engine
	client, server *tun.MemPort
}

func newLab(t *testing.T, cfg Config) *lab {
	t.Helper()
	l := &lab{e: New(cfg), client: tun.NewMemPort("client", 1500, true), server: tun.NewMemPort("server", 1500, true)}
	must(t, l.e.AddPort("client", l.client, []netip.Prefix{netip.PrefixFrom(clientAddr, 32), netip.PrefixFrom(client6, 128)}))
	must(t, l.e.AddPort("server", l.server, []netip.Prefix{netip.PrefixFrom(serverAddr, 32), netip.PrefixFrom(server6, 128)}))
	l.e.Start()
	t.Cleanup(func() { l.e.Close() })
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tcpSeg(src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags packet.TCPFlags, payload []byte) []byte {
	b := make([]byte, 60+len(payload))
	n := packet.BuildTCP(b, packet.TCPSpec{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Flags: flags, Window: 1000, Payload: payload})
	return b[:n]
}

func chainOf(t *testing.T, typ string, b behaviors.Behavior, m behaviors.MatchSpec) *behaviors.Chain {
	t.Helper()
	cm, err := m.Compile(nil)
	must(t, err)
	return behaviors.NewChain("test", 7, []*behaviors.Entry{{Type: typ, Match: cm, Behavior: b}})
}

// eachMode runs a test with per-port readers, in busy-poll mode, and
// polling without ever sleeping.
func eachMode(t *testing.T, test func(t *testing.T, cfg Config)) {
	t.Run("readers", func(t *testing.T) { test(t, Config{}) })
	t.Run("busy-poll", func(t *testing.T) { test(t, Config{BusyPoll: time.Millisecond}) })
	t.Run("poll-always", func(t *testing.T) { test(t, Config{BusyPoll: PollAlways}) })
}

func TestEngine_ForwardsByDestinationBothVersions(t *testing.T) { eachMode(t, forwardsByDestination) }

func forwardsByDestination(t *testing.T, cfg Config) {
	l := newLab(t, cfg)
	for _, c := range []struct{ src, dst netip.Addr }{{clientAddr, serverAddr}, {client6, server6}} {
		syn := tcpSeg(c.src, c.dst, 40000, 80, 1, 0, packet.SYN, nil)
		l.client.Send(syn, tun.Offload{})
		got, _, ok := l.server.Recv(time.Second)
		if !ok || string(got) != string(syn) {
			t.Fatalf("%v: server got %x ok=%v, want the SYN unchanged", c.dst, got, ok)
		}
		synack := tcpSeg(c.dst, c.src, 80, 40000, 100, 2, packet.SYN|packet.ACK, nil)
		l.server.Send(synack, tun.Offload{})
		if got, _, ok := l.client.Recv(time.Second); !ok || string(got) != string(synack) {
			t.Fatalf("client did not get the SYN-ACK")
		}
	}
	st := l.e.Status()
	if st.Counters.In != 4 || st.Counters.Out != 4 || st.Flows.Active != 2 {
		t.Fatalf("counters %+v flows %+v", st.Counters, st.Flows)
	}
}

func TestEngine_NoRouteAndUnreadableAreCounted(t *testing.T) {
	l := newLab(t, Config{})
	l.client.Send(tcpSeg(clientAddr, netip.MustParseAddr("198.19.9.9"), 1, 2, 0, 0, packet.SYN, nil), tun.Offload{})
	l.client.Send([]byte{0x45, 0, 0}, tun.Offload{})
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if c := l.e.Status().Counters; c.NoRoute == 1 && c.Unreadable == 1 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("counters %+v", l.e.Status().Counters)
}

func TestEngine_DropMatchesPortOnly(t *testing.T) {
	l := newLab(t, Config{})
	l.e.SetChain(chainOf(t, "drop", mustNew(t, "drop"), behaviors.MatchSpec{Port: 81}))
	l.client.Send(tcpSeg(clientAddr, serverAddr, 40000, 81, 1, 0, packet.SYN, nil), tun.Offload{})
	l.client.Send(tcpSeg(clientAddr, serverAddr, 40001, 80, 1, 0, packet.SYN, nil), tun.Offload{})
	got, _, ok := l.server.Recv(time.Second)
	if !ok {
		t.Fatal("port 80 SYN not forwarded")
	}
	var p packet.Parsed
	p.Decode(got)
	if p.DstPort != 80 {
		t.Fatalf("forwarded a packet to port %d", p.DstPort)
	}
	if _, _, ok := l.server.Recv(50 * time.Millisecond); ok {
		t.Fatal("port 81 SYN forwarded")
	}
	if c := l.e.Status().Counters; c.Dropped != 1 {
		t.Fatalf("dropped = %d", c.Dropped)
	}
}

// holdFor delays every packet by d: a stand-in for the delay behavior that
// tests the engine's delay line on its own.
type holdFor struct{ d time.Duration }

func (h holdFor) Handle(p *behaviors.Packet) behaviors.Verdict {
	p.Depart = p.Now + int64(h.d)
	return behaviors.Pass
}

func TestEngine_DelayLineReleasesOnTimeAndInOrder(t *testing.T) {
	eachMode(t, delayLineReleasesOnTimeAndInOrder)
}

func delayLineReleasesOnTimeAndInOrder(t *testing.T, cfg Config) {
	l := newLab(t, cfg)
	l.e.SetChain(behaviors.NewChain("t", 1, []*behaviors.Entry{{Type: "hold", Behavior: holdFor{20 * time.Millisecond}}}))
	start := time.Now()
	const n = 50
	for i := 0; i < n; i++ {
		l.client.Send(tcpSeg(clientAddr, serverAddr, 40000, 80, uint32(i), 0, packet.ACK, nil), tun.Offload{})
	}
	for i := 0; i < n; i++ {
		got, _, ok := l.server.Recv(time.Second)
		if !ok {
			t.Fatalf("packet %d not released", i)
		}
		if i == 0 {
			// Never early; how late is the bench's to measure (a loaded
			// machine keeps a spinning device off its CPU for tens of ms).
			if el := time.Since(start); el < 20*time.Millisecond || el > 2*time.Second {
				t.Fatalf("first packet after %v, want 20ms or a little more", el)
			}
		}
		var p packet.Parsed
		p.Decode(got)
		if p.Seq != uint32(i) {
			t.Fatalf("packet %d has seq %d: order lost", i, p.Seq)
		}
	}
	if st := l.e.Status(); st.Queued != 0 || st.Counters.Delayed != n {
		t.Fatalf("queued %d delayed %d", st.Queued, st.Counters.Delayed)
	}
}

// rstOnSyn answers a SYN with a RST injected toward the client.
type rstOnSyn struct{}

func (rstOnSyn) Handle(p *behaviors.Packet) behaviors.Verdict {
	if p.Flags&packet.SYN != 0 {
		p.InjectTCP(1 /* server */, 0, p.Seq+1, packet.RST|packet.ACK, p.Now, "rst")
		return behaviors.Drop
	}
	return behaviors.Pass
}

func TestEngine_InjectedPacketsHaveValidChecksums(t *testing.T) {
	eachMode(t, injectedPacketsHaveValidChecksums)
}

func injectedPacketsHaveValidChecksums(t *testing.T, cfg Config) {
	l := newLab(t, cfg)
	l.e.SetChain(behaviors.NewChain("t", 1, []*behaviors.Entry{{Type: "rst", Behavior: rstOnSyn{}}}))
	for _, c := range []struct{ src, dst netip.Addr }{{clientAddr, serverAddr}, {client6, server6}} {
		l.client.Send(tcpSeg(c.src, c.dst, 40000, 80, 99, 0, packet.SYN, nil), tun.Offload{})
		got, _, ok := l.client.Recv(time.Second)
		if !ok {
			t.Fatal("no RST injected toward the client")
		}
		var p packet.Parsed
		p.Decode(got)
		if p.Flags != packet.RST|packet.ACK || p.Ack != 100 || p.Src != c.dst || !p.ChecksumsValid() {
			t.Fatalf("injected %+v valid=%v", p, p.ChecksumsValid())
		}
	}
}

func mustNew(t *testing.T, name string) behaviors.Behavior {
	b, err := behaviors.New(name)
	must(t, err)
	return b
}

// superPacket builds an offloaded TCP super-packet of n segments of mss bytes.
func superPacket(n, mss int) ([]byte, tun.Offload) {
	raw := tcpSeg(clientAddr, serverAddr, 40000, 80, 1000, 1, packet.ACK|packet.PSH, make([]byte, n*mss))
	return raw, tun.Offload{GSOType: tun.GSOTCPv4, HdrLen: 40, GSOSize: uint16(mss), CsumStart: 20, CsumOffset: 16}
}

// dropSeq drops the segment starting at seq; it wants single segments.
type dropSeq struct{ seq uint32 }

func (d dropSeq) PerSegment() bool { return true }
func (d dropSeq) Handle(p *behaviors.Packet) behaviors.Verdict {
	if p.IsTCP() && p.Seq == d.seq {
		return behaviors.Drop
	}
	return behaviors.Pass
}

func TestEngine_SuperPacketInspectedPerSegmentLeavesWhole(t *testing.T) {
	l := newLab(t, Config{})
	m, _ := behaviors.MatchSpec{Protocol: "tcp"}.Compile(nil)
	l.e.SetChain(behaviors.NewChain("t", 1, []*behaviors.Entry{{Type: "log", Match: m, Behavior: &behaviors.Log{Every: 1}}}))
	raw, off := superPacket(10, 1000)
	l.client.Send(raw, off)
	got, gotOff, ok := l.server.Recv(time.Second)
	if !ok || string(got) != string(raw) || !gotOff.IsGSO() {
		t.Fatalf("want the super-packet forwarded whole: ok=%v len=%d gso=%v", ok, len(got), gotOff.IsGSO())
	}
	st := l.e.Status()
	if st.Counters.Split != 1 || st.Behaviors[0].Counters.Matched != 10 || st.Counters.In != 10 || st.Counters.Out != 10 {
		t.Fatalf("split %d matched %d in %d out %d", st.Counters.Split, st.Behaviors[0].Counters.Matched, st.Counters.In, st.Counters.Out)
	}
}

func TestEngine_SuperPacketWithOneSegmentDroppedLeavesAsSegments(t *testing.T) {
	eachMode(t, superPacketWithOneSegmentDropped)
}

func superPacketWithOneSegmentDropped(t *testing.T, cfg Config) {
	l := newLab(t, cfg)
	l.e.SetChain(behaviors.NewChain("t", 1, []*behaviors.Entry{{Type: "dropseq", Behavior: dropSeq{seq: 1000 + 2*1000}}}))
	raw, off := superPacket(5, 1000)
	l.client.Send(raw, off)
	var seqs []uint32
	for {
		got, gotOff, ok := l.server.Recv(200 * time.Millisecond)
		if !ok {
			break
		}
		seg := tun.Packet{Buf: make([]byte, tun.BufSize), Off: tun.Headroom, Len: len(got), Offload: gotOff}
		copy(seg.Buf[tun.Headroom:], got)
		if err := tun.Complete(&seg); err != nil { // as the receiving kernel would
			t.Fatal(err)
		}
		var p packet.Parsed
		p.Decode(seg.Data())
		if gotOff.IsGSO() || p.PayloadLen() != 1000 || !p.ChecksumsValid() {
			t.Fatalf("segment seq %d: gso=%v len %d valid=%v", p.Seq, gotOff.IsGSO(), p.PayloadLen(), p.ChecksumsValid())
		}
		seqs = append(seqs, p.Seq)
	}
	want := []uint32{1000, 2000, 4000, 5000}
	if len(seqs) != len(want) {
		t.Fatalf("segments %v, want %v", seqs, want)
	}
	for i := range want {
		if seqs[i] != want[i] {
			t.Fatalf("segments %v, want %v", seqs, want)
		}
	}
	if c := l.e.Status().Counters; c.In != 5 || c.Out != 4 || c.Dropped != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// TestEngine_LongHeaderSuperPacketIsStillInspected: an IPv6 super-packet
// with extension headers too long to view in place is split by copying,
// so a per-segment behavior still acts on it (it used to leave uninspected).
func TestEngine_LongHeaderSuperPacketIsStillInspected(t *testing.T) {
	l := newLab(t, Config{})
	l.e.SetChain(behaviors.NewChain("t", 1, []*behaviors.Entry{{Type: "dropseq", Behavior: dropSeq{seq: 1000 + 1000}}}))
	plain := tcpSeg(client6, server6, 40000, 80, 1000, 1, packet.ACK, make([]byte, 3*1000))
	const optLen = 264 // destination options: two PadN options
	raw := make([]byte, len(plain)+optLen)
	copy(raw, plain[:40])
	copy(raw[40+optLen:], plain[40:])
	raw[6], raw[40], raw[41] = 60, packet.ProtoTCP, optLen/8-1
	raw[42], raw[43], raw[244], raw[245] = 1, 200, 1, optLen-2-202-2
	binary.BigEndian.PutUint16(raw[4:], uint16(len(raw)-40))
	l.client.Send(raw, tun.Offload{GSOType: tun.GSOTCPv6, GSOSize: 1000})
	var got int
	for range 4 {
		if _, off, ok := l.server.Recv(200 * time.Millisecond); ok && !off.IsGSO() {
			got++
		}
	}
	if c := l.e.Status().Counters; got != 2 || c.Dropped != 1 || c.Malformed != 0 {
		t.Fatalf("%d segments out, counters %+v; want 2 and one dropped", got, c)
	}
}

// stampSeq writes a mark into the payload and the window of the segment
// starting at seq.
type stampSeq struct{ seq uint32 }

func (d stampSeq) PerSegment() bool { return true }
func (d stampSeq) Handle(p *behaviors.Packet) behaviors.Verdict {
	if p.IsTCP() && p.Seq == d.seq {
		p.Payload()[0] = 0xAB
		p.Buf[p.L4Off+14] = 0x77
		p.MarkModified()
	}
	return behaviors.Pass
}

// TestEngine_SuperPacketWithOneSegmentModified: segments are looked at in
// place; once one is changed, it leaves as changed and every other one
// leaves as SplitPartial would cut it, the earlier ones included.
func TestEngine_SuperPacketWithOneSegmentModified(t *testing.T) {
	l := newLab(t, Config{})
	l.e.SetChain(behaviors.NewChain("t", 1, []*behaviors.Entry{{Type: "stamp", Behavior: stampSeq{seq: 1000 + 3*100}}}))
	raw, off := superPacket(6, 100)
	for i := 40; i < len(raw); i++ {
		raw[i] = byte(i)
	}
	super := tun.Packet{Buf: make([]byte, tun.BufSize), Off: tun.Headroom, Len: len(raw), Offload: off}
	copy(super.Buf[tun.Headroom:], raw)
	want := make([]tun.Packet, 8)
	for i := range want {
		want[i].Buf = make([]byte, tun.BufSize)
	}
	n, err := tun.SplitPartial(&super, want)
	if err != nil || n != 6 {
		t.Fatal(n, err)
	}
	l.client.Send(raw, off)
	for i := 0; i < n; i++ {
		got, gotOff, ok := l.server.Recv(time.Second)
		if !ok {
			t.Fatalf("segment %d missing", i)
		}
		w := append([]byte(nil), want[i].Data()...)
		if i == 3 {
			var p packet.Parsed
			p.Decode(w)
			p.Payload()[0], w[p.L4Off+14] = 0xAB, 0x77
			p.FixChecksums()
			if gotOff.NeedsCsum {
				t.Errorf("modified segment still partial: %+v", gotOff)
			}
		} else if gotOff != want[i].Offload {
			t.Errorf("segment %d: offload %+v, want %+v", i, gotOff, want[i].Offload)
		}
		if string(got) != string(w) {
			t.Fatalf("segment %d differs:\n got %x\nwant %x", i, got[:60], w[:60])
		}
	}
	if _, _, ok := l.server.Recv(50 * time.Millisecond); ok {
		t.Fatal("more than 6 packets")
	}
	if c := l.e.Status().Counters; c.In != 6 || c.Out != 6 || c.Modified != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// TestEngine_InspectedSuperPacketTracksItsFlowAsItsSegmentsWould: the later
// segments of a super-packet reuse its flow without a lookup; the flow ends
// up as if each segment had come on its own.
func TestEngine_InspectedSuperPacketTracksItsFlowAsItsSegmentsWould(t *testing.T) {
	raw, off := superPacket(10, 1000)
	super := tun.Packet{Buf: make([]byte, tun.BufSize), Off: tun.Headroom, Len: len(raw), Offload: off}
	copy(super.Buf[tun.Headroom:], raw)
	segs := make([]tun.Packet, 10)
	for i := range segs {
		segs[i].Buf = make([]byte, tun.BufSize)
	}
	if n, err := tun.Split(&super, segs); err != nil || n != 10 {
		t.Fatal(n, err)
	}
	ends := func(send func(l *lab)) [2]flow.Endpoint {
		l := newLab(t, Config{})
		m, _ := behaviors.MatchSpec{Protocol: "tcp"}.Compile(nil)
		l.e.SetChain(behaviors.NewChain("t", 1, []*behaviors.Entry{{Type: "log", Match: m, Behavior: &behaviors.Log{Every: 1}}}))
		send(l)
		for range 10 {
			if _, _, ok := l.server.Recv(200 * time.Millisecond); !ok {
				break
			}
		}
		var got [2]flow.Endpoint
		l.e.mu.Lock()
		defer l.e.mu.Unlock()
		l.e.flows.Each(func(f *flow.Flow) bool { got = f.Ends; return true })
		got[0].LastSeen, got[1].LastSeen = 0, 0 // clock readings
		return got
	}
	whole := ends(func(l *lab) { l.client.Send(raw, off) })
	single := ends(func(l *lab) {
		for i := range segs {
			l.client.Send(segs[i].Data(), tun.Offload{})
		}
	})
	if whole != single || whole[flow.Client].NextSeq == 0 {
		t.Errorf("flow after the super-packet %+v\nafter its segments one by one %+v", whole, single)
	}
}

// TestEngine_BusyPollCloseIsPrompt: Close ends the polling goroutine, also
// while it sleeps, and only then closes the ports.
func TestEngine_BusyPollCloseIsPrompt(t *testing.T) {
	e := New(Config{BusyPoll: time.Millisecond})
	c, s := tun.NewMemPort("client", 1500, true), tun.NewMemPort("server", 1500, true)
	must(t, e.AddPort("client", c, []netip.Prefix{netip.PrefixFrom(clientAddr, 32)}))
	must(t, e.AddPort("server", s, []netip.Prefix{netip.PrefixFrom(serverAddr, 32)}))
	e.Start()
	time.Sleep(20 * time.Millisecond) // past the polling: asleep
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("Close took %v", el)
	}
	if e.pollWake != -1 {
		t.Error("eventfd not closed")
	}
	// A port that cannot be polled is refused up front.
	e2 := New(Config{BusyPoll: time.Millisecond})
	if err := e2.AddPort("x", plainPort{c}, nil); err == nil {
		t.Error("a port without TryRead accepted for busy-poll")
	}
}

// plainPort hides a MemPort's Poller methods.
type plainPort struct{ tun.Port }

// Reset starts every count over under the new chain: what crossed before
// (a device's start-up checks) is in no counter, flow or event after it,
// and a mid-connection packet afterwards meets the new chain.
func TestEngine_ResetStartsCountsOver(t *testing.T) {
	l := newLab(t, Config{})
	l.e.SetChain(chainOf(t, "log", mustNew(t, "log"), behaviors.MatchSpec{}))
	syn := tcpSeg(clientAddr, serverAddr, 40000, 80, 1, 0, packet.SYN, nil)
	l.client.Send(syn, tun.Offload{})
	if _, _, ok := l.server.Recv(time.Second); !ok {
		t.Fatal("the SYN did not cross")
	}
	if st := l.e.Status(); st.Counters.In != 1 || st.Flows.Active != 1 || st.Events != 1 || st.Ports[0].Stats.ReadPackets != 1 {
		t.Fatalf("before Reset: %+v", st)
	}
	l.e.Reset(chainOf(t, "log", mustNew(t, "log"), behaviors.MatchSpec{}))
	st := l.e.Status()
	if st.Counters != (Counters{}) || st.Flows.Active != 0 || st.Flows.Created != 0 || st.Events != 0 || len(st.FlowState) != 0 {
		t.Errorf("after Reset: counters %+v flows %+v %v events %d", st.Counters, st.Flows, st.FlowState, st.Events)
	}
	if len(st.Ports) != 2 {
		t.Fatalf("after Reset: %d ports, want the lab's 2", len(st.Ports))
	}
	for _, p := range st.Ports {
		if p.Stats != (tun.PortStats{}) {
			t.Errorf("after Reset: port %s %+v", p.Name, p.Stats)
		}
	}
	if evs, _ := l.e.Events(0); len(evs) != 0 {
		t.Errorf("after Reset: events %v", evs)
	}
	ack := tcpSeg(clientAddr, serverAddr, 40000, 80, 2, 101, packet.ACK, []byte("x"))
	l.client.Send(ack, tun.Offload{})
	if _, _, ok := l.server.Recv(time.Second); !ok {
		t.Fatal("the ACK did not cross")
	}
	st = l.e.Status()
	if st.Counters.In != 1 || st.Counters.Out != 1 || st.Events != 1 || st.Behaviors[0].Counters.Matched != 1 || st.Ports[0].Stats.ReadPackets != 1 {
		t.Errorf("one packet after Reset: counters %+v events %d behaviors %+v ports %+v", st.Counters, st.Events, st.Behaviors, st.Ports)
	}
}
