package flow

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/faultbox/faultbox/internal/packet"
)

var (
	cli = netip.MustParseAddr("198.18.0.1")
	srv = netip.MustParseAddr("198.18.0.2")
)

func seg(t testing.TB, src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags packet.TCPFlags, payload int) *packet.Parsed {
	buf := make([]byte, 60+payload)
	n := packet.BuildTCP(buf, packet.TCPSpec{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Flags: flags, Window: 100, Payload: make([]byte, payload)})
	p := new(packet.Parsed)
	p.Decode(buf[:n])
	return p
}

func TestTrack_HandshakeDataFinAcrossSequenceWrap(t *testing.T) {
	tb := NewTable(16, DefaultTimeouts)
	var cisn, sisn uint32 = 0xfffffffe, 0xffffff00
	steps := []struct {
		fromClient bool
		seq, ack   uint32
		flags      packet.TCPFlags
		payload    int
		state      State
	}{
		{true, cisn, 0, packet.SYN, 0, SynSent},
		{false, sisn, cisn + 1, packet.SYN | packet.ACK, 0, SynReceived},
		{true, cisn + 1, sisn + 1, packet.ACK, 0, Established},
		{true, cisn + 1, sisn + 1, packet.ACK | packet.PSH, 100, Established}, // wraps past 0
		{false, sisn + 1, cisn + 101, packet.ACK | packet.FIN, 300, Closing},
		{true, cisn + 101, sisn + 302, packet.ACK | packet.FIN, 0, Closing},
		{false, sisn + 302, cisn + 102, packet.ACK, 0, Closed},
	}
	var f *Flow
	for i, s := range steps {
		src, dst, sp, dp := cli, srv, uint16(40000), uint16(80)
		if !s.fromClient {
			src, dst, sp, dp = srv, cli, 80, 40000
		}
		var side Side
		f, side = tb.Track(seg(t, src, dst, sp, dp, s.seq, s.ack, s.flags, s.payload), int64(i))
		if (side == Client) != s.fromClient || f.State != s.state {
			t.Fatalf("step %d: side %v state %v, want client=%v %v", i, side, f.State, s.fromClient, s.state)
		}
	}
	if f.Ends[Client].NextSeq != cisn+102 || f.ExpectedSeq(Server) != cisn+102 {
		t.Fatalf("client NextSeq %d", f.Ends[Client].NextSeq)
	}
	if f.Ends[Server].FinSeq != sisn+301 || !f.Ends[Client].AckedFIN || !f.Ends[Server].AckedFIN {
		t.Fatalf("fin state %+v", f.Ends)
	}
	if f.Addr(Client) != cli || f.Port(Server) != 80 {
		t.Fatalf("sides: %v %d", f.Addr(Client), f.Port(Server))
	}
}

func TestTrack_MidStreamPickupGuessesClientByEphemeralPort(t *testing.T) {
	tb := NewTable(16, DefaultTimeouts)
	f, side := tb.Track(seg(t, srv, cli, 80, 51000, 500, 10, packet.ACK, 10), 0)
	if side != Server || f.Addr(Client) != cli || f.State != Established {
		t.Fatalf("side %v client %v state %v", side, f.Addr(Client), f.State)
	}
}

func TestTable_EvictsLeastRecentlySeenWhenFull(t *testing.T) {
	tb := NewTable(3, DefaultTimeouts)
	for i := 0; i < 3; i++ {
		tb.Track(seg(t, cli, srv, uint16(40000+i), 80, 1, 0, packet.SYN, 0), int64(i))
	}
	tb.Track(seg(t, cli, srv, 40000, 80, 2, 0, packet.ACK, 0), 10) // refresh the oldest
	tb.Track(seg(t, cli, srv, 40003, 80, 1, 0, packet.SYN, 0), 11) // evicts 40001
	c := tb.Counters()
	if c.Active != 3 || c.Evicted != 1 {
		t.Fatalf("counters %+v", c)
	}
	for port, want := range map[uint16]bool{40000: true, 40001: false, 40002: true, 40003: true} {
		k, _ := KeyOf(seg(t, cli, srv, port, 80, 1, 0, packet.SYN, 0))
		if got := tb.Lookup(k) != nil; got != want {
			t.Errorf("port %d present=%v want %v", port, got, want)
		}
	}
}

func TestTable_ExpireRemovesIdleFlowsOldestFirst(t *testing.T) {
	tb := NewTable(100, Timeouts{Handshake: time.Second, Established: time.Hour, Closed: time.Second})
	for i := 0; i < 50; i++ {
		tb.Track(seg(t, cli, srv, uint16(1000+i), 80, 1, 0, packet.SYN, 0), 0)
	}
	tb.Expire(int64(500*time.Millisecond), 100)
	if tb.Counters().Active != 50 {
		t.Fatal("expired too early")
	}
	tb.Expire(int64(2*time.Second), 20)
	if c := tb.Counters(); c.Active != 30 || c.Expired != 20 {
		t.Fatalf("budget not honoured: %+v", c)
	}
	tb.Expire(int64(2*time.Second), 100)
	if c := tb.Counters(); c.Active != 0 {
		t.Fatalf("%+v", c)
	}
}

// TestTable_ChurnKeepsIndexConsistent inserts and removes many flows through
// eviction so backward-shift deletion is exercised on long probe chains.
func TestTable_ChurnKeepsIndexConsistent(t *testing.T) {
	tb := NewTable(64, DefaultTimeouts)
	for i := 0; i < 20000; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		tb.Track(seg(t, a, srv, uint16(i), 80, 1, 0, packet.SYN, 0), int64(i))
	}
	n := 0
	tb.Each(func(f *Flow) bool {
		n++
		if tb.Lookup(f.Key) != f {
			t.Fatalf("flow %v not found by its key", f.Key)
		}
		return true
	})
	if n != 64 || tb.Counters().Evicted != 20000-64 {
		t.Fatalf("%d flows, %+v", n, tb.Counters())
	}
}

func TestTable_NewSYNOnFinishedTupleStartsAFreshFlow(t *testing.T) {
	tb := NewTable(4, DefaultTimeouts)
	f, _ := tb.Track(seg(t, cli, srv, 40000, 80, 100, 0, packet.SYN, 0), 0)
	tb.Track(seg(t, cli, srv, 40000, 80, 101, 0, packet.RST, 0), 1)
	if f.State != Reset {
		t.Fatal("no reset state")
	}
	f.Behavior = append(f.Behavior, "old state")
	old := f.Incarnation
	f, _ = tb.Track(seg(t, cli, srv, 40000, 80, 9000, 0, packet.SYN, 0), 2)
	if f.State != SynSent || f.Ends[Client].ISN != 9000 || len(f.Behavior) != 0 {
		t.Fatalf("reused tuple: state %v isn %d behavior %v", f.State, f.Ends[Client].ISN, f.Behavior)
	}
	// The old state's memory stays for reuse, marked as another flow's.
	if f.Incarnation == old || f.Behavior[:1][0] != "old state" {
		t.Fatalf("reused tuple: incarnation %d (was %d), kept state %v", f.Incarnation, old, f.Behavior[:1])
	}
}

func BenchmarkTrack(b *testing.B) {
	tb := NewTable(1<<16, DefaultTimeouts)
	pkts := make([]*packet.Parsed, 1024)
	for i := range pkts {
		pkts[i] = seg(b, cli, srv, uint16(10000+i), 80, uint32(i), 1, packet.ACK, 100)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tb.Track(pkts[i&1023], int64(i))
		i++
	}
}

// BenchmarkTableMemory fills a table with 1 M flows (a SYN flood of
// distinct tuples) and reports the heap bytes per flow.
func BenchmarkTableMemory(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const n = 1 << 20
		tb := NewTable(n, DefaultTimeouts)
		p := seg(b, cli, srv, 1, 80, 1, 0, packet.SYN, 0)
		for i := 0; i < n+n/4; i++ { // a quarter more than fits: eviction bounds it
			s := p.Buf[12:16]
			s[1], s[2], s[3] = byte(i>>16), byte(i>>8), byte(i)
			p.Src = netip.AddrFrom4([4]byte(s))
			tb.Track(p, int64(i))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n, "bytes/flow")
		b.ReportMetric(float64(unsafe.Sizeof(Flow{})), "sizeof(Flow)")
		b.ReportMetric(float64(tb.Counters().Evicted), "evicted")
		runtime.KeepAlive(tb)
	}
}

// FuzzTrack feeds arbitrary bytes, split into packets, through a small table:
// no panic, and the index always finds every flow the LRU list holds.
func FuzzTrack(f *testing.F) {
	f.Add(seg(f, cli, srv, 40000, 80, 1, 0, packet.SYN, 0).Buf, uint8(3))
	f.Add(seg(f, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 1, 2, 0xffffffff, 5, packet.FIN|packet.ACK|packet.RST, 3).Buf, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, chunks uint8) {
		tb := NewTable(4, Timeouts{Handshake: 3, Established: 5, Closed: 2})
		n := int(chunks%8) + 1
		step := len(b)/n + 1
		var p packet.Parsed
		for i := 0; i < n*3; i++ {
			lo := (i % n) * step
			if lo > len(b) {
				lo = len(b)
			}
			hi := min(lo+step+i, len(b))
			p.Decode(b[lo:hi])
			tb.Track(&p, int64(i))
			tb.Expire(int64(i), 2)
		}
		count := 0
		tb.Each(func(fl *Flow) bool {
			count++
			if tb.Lookup(fl.Key) != fl {
				t.Fatal("flow in LRU list not in index")
			}
			return count < 100
		})
		if count != tb.Counters().Active {
			t.Fatalf("LRU holds %d flows, counters say %d", count, tb.Counters().Active)
		}
	})
}
