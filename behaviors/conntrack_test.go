package behaviors

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

func newConntrack(t testing.TB, max int, mut func(*Conntrack)) *Conntrack {
	b, _ := New("conntrack")
	c := b.(*Conntrack)
	c.Max = max
	if mut != nil {
		mut(c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// connFrom is a connection from client port 40000+i.
func connFrom(i int, c, s netip.Addr) *tcpConn {
	k := newConn(c, s, uint32(1000*i), uint32(7000*i))
	k.cport = uint16(40000 + i)
	return k
}

func TestConntrack_FullTableDropsNewSYNsOnly(t *testing.T) {
	ct := newConntrack(t, 3, nil)
	h := newHarness(t, "conntrack", ct, Match{})
	var open []*tcpConn
	for i := range 3 {
		k := connFrom(i, client4, server4)
		for _, s := range append(k.handshake(), k.seg(true, packet.ACK|packet.PSH, []byte("GET /"))) {
			if v, _ := h.send(s); v != Pass {
				t.Fatalf("connection %d: dropped with room in the table", i)
			}
		}
		open = append(open, k)
	}
	late := connFrom(3, client6, server6)
	for try := range 3 {
		h.now += int64(time.Second)
		if v, _ := h.send(late.seg(true, packet.SYN, nil)); v != Drop || h.p.Note != "conntrack: table full, dropping packet" {
			t.Fatalf("SYN %d into a full table: verdict %v, note %q", try, v, h.p.Note)
		}
		late.cseq-- // a retransmission
	}
	for i, k := range open { // the tracked connections still flow, both ways
		for _, s := range [][]byte{k.seg(false, packet.ACK|packet.PSH, []byte("200 OK")), k.seg(true, packet.ACK, nil)} {
			if v, _ := h.send(s); v != Pass {
				t.Fatalf("established connection %d dropped", i)
			}
		}
	}
	st := ct.Stats()
	if st["entries"] != 3 || st["table_full_drops"] != 3 || st["early_drops"] != 0 || st["peak"] != 3 {
		t.Fatalf("stats %v", st)
	}
	if len(h.events) != 3 {
		t.Fatalf("%d events, want one per drop", len(h.events))
	}
}

// A closed connection holds its entry through TIME_WAIT (without
// early_drop): the next SYN gets in only when that has passed.
func TestConntrack_ClosedEntryFreedAfterTimeWait(t *testing.T) {
	ct := newConntrack(t, 1, func(c *Conntrack) { c.EarlyDrop, c.TimeWait = false, 2*time.Second })
	h := newHarness(t, "conntrack", ct, Match{})
	k := connFrom(1, client4, server4)
	for _, s := range append(k.handshake(),
		k.seg(true, packet.ACK|packet.FIN, nil), k.seg(false, packet.ACK|packet.FIN, nil), k.seg(true, packet.ACK, nil)) {
		h.send(s)
	}
	next := connFrom(2, client4, server4)
	h.now += int64(1900 * time.Millisecond)
	if v, _ := h.send(next.seg(true, packet.SYN, nil)); v != Drop {
		t.Fatal("SYN admitted while the closed connection is in TIME_WAIT")
	}
	next.cseq--
	h.now += int64(100 * time.Millisecond)
	if v, _ := h.send(next.seg(true, packet.SYN, nil)); v != Pass {
		t.Fatal("SYN dropped after TIME_WAIT ended")
	}
	if st := ct.Stats(); st["expired"] != 1 || st["entries"] != 1 {
		t.Fatalf("stats %v", st)
	}
}

// early_drop frees the entries of handshakes that never completed in the
// new connection's buckets (one bucket here: all of them); an established
// or closing connection's entry is assured and stays.
func TestConntrack_EarlyDropTakesUnassuredOnly(t *testing.T) {
	ct := newConntrack(t, 3, func(c *Conntrack) { c.Buckets = 1 })
	h := newHarness(t, "conntrack", ct, Match{})
	est := connFrom(0, client4, server4)
	for _, s := range est.handshake() {
		h.send(s)
	}
	half := connFrom(1, client4, server4) // SYN only: not assured
	h.send(half.seg(true, packet.SYN, nil))
	closing := connFrom(2, client4, server4)
	for _, s := range append(closing.handshake(), closing.seg(true, packet.ACK|packet.FIN, nil)) {
		h.send(s)
	}
	for i, want := range []Verdict{Pass, Drop} { // evicts the half-open one, then finds nothing
		k := connFrom(10+i, client4, server4)
		for _, s := range k.handshake() {
			if v, _ := h.send(s); v != want {
				t.Fatalf("new connection %d: verdict %v, want %v", i, v, want)
			}
			if want == Drop {
				break
			}
		}
	}
	for _, s := range [][]byte{est.seg(true, packet.ACK|packet.PSH, []byte("still here")), closing.seg(false, packet.ACK, nil)} {
		if v, _ := h.send(s); v != Pass {
			t.Fatal("an assured connection lost its entry")
		}
	}
	if v, _ := h.send(half.seg(false, packet.SYN|packet.ACK, nil)); v != Drop {
		t.Fatal("the evicted half-open connection's SYN-ACK passed a full table")
	}
	if st := ct.Stats(); st["early_drops"] != 1 || st["table_full_drops"] != 2 {
		t.Fatalf("stats %v", st)
	}
}

// With Linux's bucket count (1024 for a small table) the 8 buckets next to
// a new connection's hold no entry of a 3-entry table: nothing is evicted.
func TestConntrack_EarlyDropLooksNearbyOnly(t *testing.T) {
	ct := newConntrack(t, 3, nil)
	h := newHarness(t, "conntrack", ct, Match{})
	for i := range 3 {
		h.send(connFrom(i, client4, server4).seg(true, packet.SYN, nil)) // half-open: evictable
	}
	drops := 0
	for i := range 50 {
		if v, _ := h.send(connFrom(100+i, client4, server4).seg(true, packet.SYN, nil)); v == Drop {
			drops++
		}
	}
	if st := ct.Stats(); drops < 40 || st["early_drops"] > 10 {
		t.Fatalf("%d of 50 SYNs dropped, %v: early_drop reached beyond its buckets", drops, st)
	}
}

// The garbage collector, after a table-full drop, frees closing entries
// while the table is 95% full: at its next run, not before.
func TestConntrack_GCFreesClosingEntries(t *testing.T) {
	ct := newConntrack(t, 100, func(c *Conntrack) { c.GCInterval = 10 * time.Second })
	h := newHarness(t, "conntrack", ct, Match{})
	for i := range 100 {
		k := connFrom(i, client4, server4)
		segs := k.handshake()
		if i < 10 { // closed: TIME_WAIT, assured
			segs = append(segs, k.seg(true, packet.ACK|packet.FIN, nil), k.seg(false, packet.ACK|packet.FIN, nil), k.seg(true, packet.ACK, nil))
		}
		for _, s := range segs {
			h.send(s)
		}
	}
	late := connFrom(200, client4, server4)
	if v, _ := h.send(late.seg(true, packet.SYN, nil)); v != Drop {
		t.Fatal("SYN admitted into a full table")
	}
	late.cseq--
	h.now += int64(9 * time.Second)
	if v, _ := h.send(late.seg(true, packet.SYN, nil)); v != Drop {
		t.Fatal("SYN admitted before the collector ran")
	}
	late.cseq--
	h.now += int64(time.Second)
	if v, _ := h.send(late.seg(true, packet.SYN, nil)); v != Pass {
		t.Fatal("SYN dropped after the collector ran")
	}
	if st := ct.Stats(); st["gc_early_drops"] != 6 || st["entries"] != 95 {
		t.Fatalf("stats %v: want 6 collected (100 down to 94), then the SYN's entry", st)
	}
}

// Mid-stream pickup: an ACK of no known connection takes an entry; a RST
// takes none and passes while there is room. (Without early_drop: the
// picked-up connection saw a RST, so its entry would be evictable.)
func TestConntrack_PickupAndStrays(t *testing.T) {
	ct := newConntrack(t, 1, func(c *Conntrack) { c.EarlyDrop = false })
	h := newHarness(t, "conntrack", ct, Match{})
	a := connFrom(1, client4, server4)
	a.cseq, a.sseq = 5000, 9000
	if v, _ := h.send(a.seg(true, packet.RST, nil)); v != Pass || ct.Stats()["entries"] != 0 {
		t.Fatal("a stray RST was dropped or took an entry")
	}
	if v, _ := h.send(a.seg(true, packet.ACK|packet.PSH, []byte("mid-stream"))); v != Pass || ct.Stats()["entries"] != 1 {
		t.Fatal("a mid-stream connection was not picked up")
	}
	b := connFrom(2, client4, server4)
	if v, _ := h.send(b.seg(false, packet.RST|packet.ACK, nil)); v != Drop {
		t.Fatal("a packet of an untracked connection passed a full table")
	}
}

// ctModel is the table as a plain map, scanned in full at every packet:
// what Conntrack must agree with at every step.
type ctModel struct {
	c       *Conntrack
	gcNext  int64
	gcFlag  bool
	entries map[flow.Key]*ctModelEntry
}

type ctModelEntry struct {
	seen    int64
	state   ctState
	assured bool
}

func (m *ctModel) bucket(k flow.Key) uint64 { return k.Hash(ctSeed) % uint64(m.c.buckets) }

func (m *ctModel) packet(f *flow.Flow, p *Packet) Verdict {
	if m.gcNext == 0 {
		m.gcNext = p.Now + int64(m.c.GCInterval)
	}
	for k, e := range m.entries {
		if p.Now-e.seen >= m.c.timeouts[e.state] {
			delete(m.entries, k)
		}
	}
	if p.Now >= m.gcNext {
		m.gcNext = p.Now + int64(m.c.GCInterval)
		if limit := m.c.Max / 100 * 95; m.gcFlag && limit > 0 {
			m.gcFlag = false
			var cands []flow.Key
			for k, e := range m.entries {
				if !e.assured || e.state >= ctFinWait {
					cands = append(cands, k)
				}
			}
			slices.SortFunc(cands, func(a, b flow.Key) int {
				ea, eb := m.entries[a], m.entries[b]
				if ea.state != eb.state {
					return int(ea.state) - int(eb.state)
				}
				return cmp.Compare(ea.seen, eb.seen)
			})
			for _, k := range cands {
				if len(m.entries) < limit {
					break
				}
				delete(m.entries, k)
			}
		}
	}
	e, ok := m.entries[f.Key]
	if !ok {
		if len(m.entries) == m.c.Max && !(m.c.EarlyDrop && m.earlyDrop(f.Key)) {
			m.gcFlag = true
			return Drop
		}
		if !opensEntry(p) {
			return Pass
		}
		e = &ctModelEntry{}
		m.entries[f.Key] = e
	}
	e.seen, e.state = p.Now, ctStateOf(f)
	e.assured = e.state == ctEstablished || e.assured && e.state != ctSynSent
	return Pass
}

func (m *ctModel) earlyDrop(k flow.Key) bool {
	b := m.bucket(k)
	for range ctEvictionRange {
		freed := false
		for k2, e := range m.entries {
			if m.bucket(k2) == b && !e.assured {
				delete(m.entries, k2)
				freed = true
			}
		}
		if freed {
			return true
		}
		b = (b + 1) % uint64(m.c.buckets)
	}
	return false
}

// Many connections in random order and at random times through a small
// table: verdicts and occupancy match the model at every packet, so
// entries are freed exactly when they time out or are evicted, and the
// buckets and lists survive every deletion.
func TestConntrack_MatchesAModelAtEveryPacket(t *testing.T) {
	for _, tc := range []struct {
		early        bool
		max, buckets int
	}{{true, 16, 4}, {false, 16, 0}, {true, 100, 64}} {
		ct := newConntrack(t, tc.max, func(c *Conntrack) {
			c.EarlyDrop, c.Buckets, c.GCInterval = tc.early, tc.buckets, 2*time.Second
			c.SynSent, c.SynRecv, c.Established = 3*time.Second, 2*time.Second, 20*time.Second
			c.FinWait, c.CloseWait, c.LastAck, c.TimeWait, c.Close = 4*time.Second, 3*time.Second, time.Second, 5*time.Second, 500*time.Millisecond
		})
		h := newHarness(t, "conntrack", ct, Match{})
		model := &ctModel{c: ct, entries: map[flow.Key]*ctModelEntry{}}
		rnd := rand.New(rand.NewPCG(7, uint64(tc.max+tc.buckets)))
		conns := make([]*tcpConn, 4*tc.max)
		steps := make([]int, len(conns))
		for n := 0; n < 20000; n++ {
			i := rnd.IntN(len(conns))
			if conns[i] == nil || steps[i] > 8 {
				conns[i], steps[i] = connFrom(i, client4, server4), 0
				conns[i].cseq = rnd.Uint32()
			}
			k := conns[i]
			var seg []byte
			switch steps[i] {
			case 0:
				seg = k.seg(true, packet.SYN, nil)
			case 1:
				seg = k.seg(false, packet.SYN|packet.ACK, nil)
			case 2:
				seg = k.seg(true, packet.ACK, nil)
			case 3, 4:
				seg = k.seg(rnd.IntN(2) == 0, packet.ACK|packet.PSH, []byte("data"))
			case 5:
				if rnd.IntN(4) == 0 {
					seg = k.seg(true, packet.RST, nil)
					steps[i] = 8
				} else {
					seg = k.seg(true, packet.ACK|packet.FIN, nil)
				}
			case 6:
				seg = k.seg(false, packet.ACK, nil)
			case 7:
				seg = k.seg(false, packet.ACK|packet.FIN, nil)
			default:
				seg = k.seg(true, packet.ACK, nil)
			}
			steps[i]++
			h.now += int64(1+rnd.IntN(200)) * int64(time.Millisecond)
			got, _ := h.send(seg)
			want := model.packet(h.p.Flow, &h.p)
			if got != want || int(ct.Stats()["entries"]) != len(model.entries) {
				t.Fatalf("%+v, packet %d: verdict %v, %d entries; the model: %v, %d",
					tc, n, got, ct.Stats()["entries"], want, len(model.entries))
			}
		}
		st := ct.Stats()
		t.Logf("%+v: %v", tc, st)
		if st["table_full_drops"] == 0 || st["expired"] == 0 || (tc.early && st["early_drops"] == 0) || (tc.max >= 100 && st["gc_early_drops"] == 0) {
			t.Fatalf("the run did not fill the table, expire or evict: %v", st)
		}
	}
}

func TestConntrack_Validate(t *testing.T) {
	for field, mut := range map[string]func(*Conntrack){
		"max":               func(c *Conntrack) { c.Max = 0 },
		"timeout_syn_sent":  func(c *Conntrack) { c.SynSent = 0 },
		"timeout_time_wait": func(c *Conntrack) { c.TimeWait = -time.Second },
		"buckets":           func(c *Conntrack) { c.Buckets = -1 },
		"gc_interval":       func(c *Conntrack) { c.GCInterval = 0 },
	} {
		b, _ := New("conntrack")
		c := b.(*Conntrack)
		mut(c)
		var fe *FieldError
		if err := c.Validate(); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: error %v", field, err)
		}
	}
	b, _ := New("conntrack")
	c := b.(*Conntrack)
	c.Max = MaxConntrack + 1
	if c.Validate() == nil {
		t.Error("max over the bound accepted")
	}
}

func BenchmarkConntrack_Established(b *testing.B) {
	r := newBenchRig(b, "conntrack", newConntrack(b, 1024, nil))
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}

func BenchmarkConntrack_SYNIntoFullTable(b *testing.B) {
	r := newBenchRig(b, "conntrack", newConntrack(b, 1, nil))
	benchEstablished(r)
	syn := connFrom(9, client4, server4).seg(true, packet.SYN, nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if r.run(syn, int64(i)) != Drop {
			b.Fatal("admitted")
		}
	}
}
