package behaviors

import (
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// Conntrack (registered as "conntrack") is the connection table of a
// stateful firewall or NAT with room for max entries, as Linux's
// nf_conntrack with nf_conntrack_max: a TCP packet of a connection the
// table does not hold needs a new entry, and when the table is full that
// packet is dropped ("nf_conntrack: table full, dropping packet"): new
// SYNs are lost, their clients retransmit, while connections that have an
// entry pass untouched.
//
// An entry lives as long as Linux keeps it: each packet refreshes it with
// the timeout of the connection's state (timeout_syn_sent ...
// timeout_close, Linux's defaults), so a closed connection holds its entry
// through time_wait (120 s), and an idle established one for 5 days. The
// occupancy is exact at every packet: expired entries are freed, oldest
// first, before a packet is judged.
//
// Linux frees entries early in two ways, both modelled as it does them:
//
//   - early_drop (default true): a new connection that finds the table
//     full evicts the entries of connections that never completed their
//     handshake ("not assured"), but only those in the 8 hash buckets
//     from its own (of buckets, nf_conntrack_buckets): in a table with
//     many more buckets than entries, it rarely finds one;
//   - the garbage collector, which runs every gc_interval: after a
//     table-full drop, while the table is 95% full or more (integer
//     percent of max, so never below max 100), it frees entries that are
//     not assured or whose connection is closing.
//
// As in Linux with nf_conntrack_tcp_loose (the default), a connection seen
// mid-stream (an ACK of no known connection) is picked up and gets an
// entry; a SYN-ACK, FIN or RST of no known connection gets none but passes
// while there is room. Only TCP is tracked, and only the packets the
// match selects refresh entries: match both directions.
//
//	behaviors:
//	  - type: conntrack
//	    max: 8
//	    timeout_time_wait: 1s
type Conntrack struct {
	Max         int           `param:"max" unit:"entries" help:"the table's size (nf_conntrack_max): connections tracked at once"`
	Buckets     int           `param:"buckets" default:"max, at least 1024, at most 262144" help:"hash buckets (nf_conntrack_buckets): early_drop looks into 8 of them"`
	EarlyDrop   bool          `param:"early_drop" help:"a new connection finding the table full evicts unfinished handshakes from its buckets, as Linux does"`
	GCInterval  time.Duration `param:"gc_interval" help:"how often the garbage collector runs; after a table-full drop it frees closing entries of a table 95% full"`
	SynSent     time.Duration `param:"timeout_syn_sent" help:"an entry's lifetime after a SYN without answer; each timeout_* is Linux's nf_conntrack_tcp_timeout_* of the same name"`
	SynRecv     time.Duration `param:"timeout_syn_recv" help:"after the SYN-ACK"`
	Established time.Duration `param:"timeout_established" help:"of an established connection without packets (5 days)"`
	FinWait     time.Duration `param:"timeout_fin_wait" help:"after one FIN"`
	CloseWait   time.Duration `param:"timeout_close_wait" help:"once that FIN is acknowledged"`
	LastAck     time.Duration `param:"timeout_last_ack" help:"after the second FIN"`
	TimeWait    time.Duration `param:"timeout_time_wait" help:"once both FINs are acknowledged"`
	Close       time.Duration `param:"timeout_close" help:"after a RST"`

	timeouts [ctStates]int64
	buckets  int
	table    ctTable
	gc       struct {
		next      int64 // when the collector runs next; 0 before the first packet
		earlyDrop bool  // a table-full drop happened since its last run
	}

	inserted, fullDrops, earlyDrops, gcDrops, expired uint64
	peak                                              int
}

// Bounds of max and buckets: the table's memory grows with use up to
// about 72 bytes per entry, plus 4 bytes per bucket.
const (
	MaxConntrack        = 1 << 20
	MaxConntrackBuckets = 1 << 20
	ctEvictionRange     = 8 // buckets early_drop looks into (Linux NF_CT_EVICTION_RANGE)
)

// ctState is an entry's state, as Linux's TCP conntrack names them; each
// has its own timeout.
type ctState uint8

const (
	ctSynSent ctState = iota
	ctSynRecv
	ctEstablished
	ctFinWait
	ctCloseWait
	ctLastAck
	ctTimeWait
	ctClose
	ctStates
)

func (c *Conntrack) Validate() error {
	if c.Max < 1 || c.Max > MaxConntrack {
		return Errorf("max", "%d is out of range 1-%d", c.Max, MaxConntrack)
	}
	if c.Buckets < 0 || c.Buckets > MaxConntrackBuckets {
		return Errorf("buckets", "%d is out of range 1-%d (0: derived from max)", c.Buckets, MaxConntrackBuckets)
	}
	c.buckets = c.Buckets
	if c.buckets == 0 {
		c.buckets = min(max(c.Max, 1024), 262144)
	}
	if c.GCInterval <= 0 {
		return Errorf("gc_interval", "must be positive")
	}
	for _, t := range []struct {
		field string
		d     time.Duration
		s     ctState
	}{
		{"timeout_syn_sent", c.SynSent, ctSynSent}, {"timeout_syn_recv", c.SynRecv, ctSynRecv},
		{"timeout_established", c.Established, ctEstablished}, {"timeout_fin_wait", c.FinWait, ctFinWait},
		{"timeout_close_wait", c.CloseWait, ctCloseWait}, {"timeout_last_ack", c.LastAck, ctLastAck},
		{"timeout_time_wait", c.TimeWait, ctTimeWait}, {"timeout_close", c.Close, ctClose},
	} {
		if t.d <= 0 {
			return Errorf(t.field, "must be positive")
		}
		c.timeouts[t.s] = int64(t.d)
	}
	return nil
}

// ctFlow caches where a flow's entry is, to spare the lookup by key.
type ctFlow struct {
	slot int32 // +1; 0: none cached
	gen  uint32
}

func (c *Conntrack) Handle(p *Packet) Verdict {
	if p.Flow == nil {
		return Pass
	}
	t := &c.table
	if t.slab == nil {
		t.init(c.Max, c.buckets) // once, at the first packet: max may be large
		c.gc.next = p.Now + int64(c.GCInterval)
	}
	c.expire(p.Now)
	st := FlowState[ctFlow](p)
	i := int32(-1)
	if st != nil && st.slot > 0 && t.slab[st.slot-1].gen == st.gen && t.slab[st.slot-1].used {
		i = st.slot - 1
	} else {
		i = t.lookup(&p.Flow.Key)
	}
	if i < 0 {
		if t.used == c.Max && !(c.EarlyDrop && c.earlyDrop(&p.Flow.Key)) {
			c.fullDrops++
			c.gc.earlyDrop = true
			p.Note = "conntrack: table full, dropping packet"
			p.Event("conntrack: table full, dropping packet")
			return Drop
		}
		if !opensEntry(p) {
			return Pass // invalid as a new connection: no entry, as in Linux
		}
		i = t.insert(&p.Flow.Key)
		c.inserted++
		c.peak = max(c.peak, t.used)
	}
	t.touch(i, ctStateOf(p.Flow), p.Now)
	if st != nil {
		st.slot, st.gen = i+1, t.slab[i].gen
	}
	return Pass
}

// expire frees the entries whose timeout has passed, and runs the garbage
// collector's early drop if it is due.
func (c *Conntrack) expire(now int64) {
	t := &c.table
	for s := range ctStates {
		for i := t.tail[s]; i >= 0 && now-t.slab[i].seen >= c.timeouts[s]; i = t.tail[s] {
			t.free(i)
			c.expired++
		}
	}
	if now < c.gc.next {
		return
	}
	c.gc.next = now + int64(c.GCInterval)
	limit := c.Max / 100 * 95 // Linux's nf_conntrack_max95, integer arithmetic included
	if !c.gc.earlyDrop || limit == 0 {
		return
	}
	c.gc.earlyDrop = false
	for s := range ctStates {
		if s == ctEstablished {
			continue // assured and not closing: never collected early
		}
		for i := t.tail[s]; i >= 0 && t.used >= limit; {
			prev := t.slab[i].prev
			if !t.slab[i].assured || s >= ctFinWait {
				t.free(i)
				c.gcDrops++
			}
			i = prev
		}
	}
}

// earlyDrop frees the entries that are not assured in the first of the
// ctEvictionRange buckets from k's that has any, and reports whether it
// freed one.
func (c *Conntrack) earlyDrop(k *flow.Key) bool {
	t := &c.table
	b := t.bucket(k)
	for range ctEvictionRange {
		freed := 0
		for i := t.heads[b] - 1; i >= 0; {
			next := t.slab[i].bnext - 1
			if !t.slab[i].assured {
				t.free(i)
				freed++
			}
			i = next
		}
		if freed > 0 {
			c.earlyDrops += uint64(freed)
			return true
		}
		b = (b + 1) % uint64(len(t.heads))
	}
	return false
}

// opensEntry reports whether p may start an entry: a SYN, or an ACK of a
// connection picked up mid-stream.
func opensEntry(p *Packet) bool {
	switch p.Flags & (packet.SYN | packet.ACK | packet.FIN | packet.RST) {
	case packet.SYN, packet.ACK:
		return true
	}
	return false
}

// ctStateOf maps the flow table's view of a connection to conntrack's
// states: FIN_WAIT after one FIN, CLOSE_WAIT once it is acknowledged,
// LAST_ACK after the second FIN, TIME_WAIT once both are acknowledged.
func ctStateOf(f *flow.Flow) ctState {
	switch f.State {
	case flow.SynSent:
		return ctSynSent
	case flow.SynReceived:
		return ctSynRecv
	case flow.Established:
		return ctEstablished
	case flow.Closed:
		return ctTimeWait
	case flow.Reset:
		return ctClose
	}
	c, s := &f.Ends[flow.Client], &f.Ends[flow.Server]
	switch {
	case c.SawFIN && s.SawFIN:
		return ctLastAck
	case c.AckedFIN || s.AckedFIN:
		return ctCloseWait
	}
	return ctFinWait
}

func (c *Conntrack) Stats() map[string]uint64 {
	return map[string]uint64{
		"entries":          uint64(c.table.used), // as of the last packet
		"max":              uint64(c.Max),
		"peak":             uint64(c.peak),
		"inserted":         c.inserted,
		"table_full_drops": c.fullDrops,
		"early_drops":      c.earlyDrops,
		"gc_early_drops":   c.gcDrops,
		"expired":          c.expired,
	}
}

// ctTable holds the entries as Linux does: a hash table of buckets, each a
// chain of entries, in a slab of up to max entries; and, to expire them in
// order, one list per state ordered by last packet (with one timeout per
// state, each list's tail is the next to expire).
type ctTable struct {
	slab       []ctEntry // grows to its capacity, max; freed entries are reused first
	heads      []int32   // each bucket's first entry + 1; 0: empty
	freeList   int32     // first freed slab entry, -1 when none
	head, tail [ctStates]int32
	used       int
	gen        uint32
}

type ctEntry struct {
	key        flow.Key
	seen       int64 // the last packet, ns
	gen        uint32
	bnext      int32 // next entry of its bucket + 1; 0 ends
	prev, next int32 // in its state's list, or the free list (next); -1 ends
	state      ctState
	used       bool
	assured    bool // its connection was established (Linux IPS_ASSURED)
}

// ctSeed keys the bucket hash; any constant spreads lab tuples well.
const ctSeed = 0x2545f4914f6cdd1d

func (t *ctTable) init(max, buckets int) {
	t.heads = make([]int32, buckets)
	t.slab = make([]ctEntry, 0, max) // memory is touched as entries are first used
	t.freeList = -1
	for s := range ctStates {
		t.head[s], t.tail[s] = -1, -1
	}
}

func (t *ctTable) bucket(k *flow.Key) uint64 { return k.Hash(ctSeed) % uint64(len(t.heads)) }

func (t *ctTable) lookup(k *flow.Key) int32 {
	for i := t.heads[t.bucket(k)] - 1; i >= 0; i = t.slab[i].bnext - 1 {
		if t.slab[i].key == *k {
			return i
		}
	}
	return -1
}

// insert takes a free entry for k (there is one: the caller made room)
// and returns it, in no state list yet.
func (t *ctTable) insert(k *flow.Key) int32 {
	i := t.freeList
	if i >= 0 {
		t.freeList = t.slab[i].next
	} else {
		i = int32(len(t.slab))
		t.slab = t.slab[:i+1]
	}
	b := t.bucket(k)
	t.gen++
	t.slab[i] = ctEntry{key: *k, gen: t.gen, used: true, state: ctStates, bnext: t.heads[b], prev: -1, next: -1}
	t.heads[b] = i + 1
	t.used++
	return i
}

// touch records a packet of entry i at now in state s: it moves to the
// front of that state's list.
func (t *ctTable) touch(i int32, s ctState, now int64) {
	e := &t.slab[i]
	if e.state < ctStates {
		t.unlink(i)
	}
	e.state, e.seen = s, now
	e.assured = s == ctEstablished || e.assured && s != ctSynSent // a SYN reopening the tuple starts over
	e.prev, e.next = -1, t.head[s]
	if e.next >= 0 {
		t.slab[e.next].prev = i
	} else {
		t.tail[s] = i
	}
	t.head[s] = i
}

func (t *ctTable) unlink(i int32) {
	e := &t.slab[i]
	if e.prev >= 0 {
		t.slab[e.prev].next = e.next
	} else {
		t.head[e.state] = e.next
	}
	if e.next >= 0 {
		t.slab[e.next].prev = e.prev
	} else {
		t.tail[e.state] = e.prev
	}
}

// free removes entry i from its bucket and its state list and returns it
// to the free list.
func (t *ctTable) free(i int32) {
	e := &t.slab[i]
	for at := &t.heads[t.bucket(&e.key)]; *at != 0; at = &t.slab[*at-1].bnext {
		if *at == i+1 {
			*at = e.bnext
			break
		}
	}
	if e.state < ctStates {
		t.unlink(i)
	}
	e.used, e.state = false, ctStates
	e.next = t.freeList
	t.freeList = i
	t.used--
}

func init() {
	Register("conntrack", "a stateful firewall's or NAT's connection table of max entries: when it is full, packets of new connections are dropped",
		func() Behavior {
			return &Conntrack{Max: 65536, EarlyDrop: true, GCInterval: time.Minute,
				SynSent: 120 * time.Second, SynRecv: 60 * time.Second, Established: 5 * 24 * time.Hour,
				FinWait: 120 * time.Second, CloseWait: 60 * time.Second, LastAck: 30 * time.Second,
				TimeWait: 120 * time.Second, Close: 10 * time.Second}
		})
}
