package flow

import (
	"math/bits"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// Timeouts after which an idle flow is forgotten. A behavior that needs a
// flow longer (idle-timeout, asa forget) keeps it alive by seeing its packets.
type Timeouts struct {
	Handshake   time.Duration // SYN seen, not established
	Established time.Duration
	Closed      time.Duration // closed or reset
}

// DefaultTimeouts follow Linux conntrack's orders of magnitude, shortened
// for the handshake so a SYN flood ages out quickly.
var DefaultTimeouts = Timeouts{Handshake: 30 * time.Second, Established: 2 * time.Hour, Closed: 30 * time.Second}

// Counters are the table's lifetime statistics.
type Counters struct {
	Created  uint64 `json:"created"`
	Evicted  uint64 `json:"evicted"` // removed to make room while full
	Expired  uint64 `json:"expired"` // removed after its idle timeout
	Active   int    `json:"active"`
	Capacity int    `json:"capacity"`
}

// Table is a bounded TCP flow table: open addressing with linear probing
// over a fixed index, flows in a preallocated slab, and an LRU list so that
// eviction and expiry touch the least recently seen flow first. Not safe for
// concurrent use; the engine serialises access.
type Table struct {
	index    []int32 // slab position + 1; 0 is empty
	mask     uint64
	slab     []Flow
	free     []int32
	head     int32 // most recently seen
	tail     int32 // least recently seen
	timeouts Timeouts
	seed     uint64
	c        Counters
}

// NewTable returns a table that holds at most max flows. Memory grows with
// use up to about max × (size of Flow + 8) bytes.
func NewTable(max int, t Timeouts) *Table {
	if max < 1 {
		max = 1
	}
	n := 1 << bits.Len(uint(max*2-1)) // index load factor <= 0.5
	return &Table{
		index:    make([]int32, n),
		mask:     uint64(n - 1),
		slab:     make([]Flow, 0, max),
		head:     -1,
		tail:     -1,
		timeouts: t,
		seed:     0x9e3779b97f4a7c15,
		c:        Counters{Capacity: max},
	}
}

// Counters returns a snapshot of the table's counters.
func (t *Table) Counters() Counters {
	c := t.c
	c.Active = len(t.slab) - len(t.free)
	return c
}

func (t *Table) hash(k *Key) uint64 { return k.Hash(t.seed) }

// slot returns the index position holding k, or the empty position where it
// would go.
func (t *Table) slot(k *Key) (pos uint64, found bool) {
	pos = t.hash(k) & t.mask
	for {
		i := t.index[pos]
		if i == 0 {
			return pos, false
		}
		if t.slab[i-1].Key == *k {
			return pos, true
		}
		pos = (pos + 1) & t.mask
	}
}

// Lookup returns the flow for k, or nil.
func (t *Table) Lookup(k Key) *Flow {
	pos, ok := t.slot(&k)
	if !ok {
		return nil
	}
	return &t.slab[t.index[pos]-1]
}

// Peek returns the flow of p and the side that sent it without creating or
// updating anything; for a packet of no known flow it returns nil and the
// side Track would assume.
func (t *Table) Peek(p *packet.Parsed) (*Flow, Side) {
	if !p.IsTCP() {
		return nil, Client
	}
	k, fromLo := KeyOf(p)
	if pos, ok := t.slot(&k); ok {
		f := &t.slab[t.index[pos]-1]
		return f, f.SideOf(fromLo)
	}
	if (k.LoPort > k.HiPort) == fromLo {
		return nil, Client
	}
	return nil, Server
}

// Track updates the flow of TCP segment p (creating it if needed, evicting
// the least recently seen flow when full) and returns it with the side that
// sent p. It returns nil for packets that are not readable TCP.
func (t *Table) Track(p *packet.Parsed, now int64) (*Flow, Side) {
	if !p.IsTCP() {
		return nil, Client
	}
	k, fromLo := KeyOf(p)
	pos, ok := t.slot(&k)
	var f *Flow
	if ok {
		i := t.index[pos] - 1
		f = &t.slab[i]
		t.touch(i)
		if p.Flags&(packet.SYN|packet.ACK) == packet.SYN && f.SideOf(fromLo) == Client && f.Ends[Client].SawSYN && f.Ends[Client].ISN != p.Seq && f.State >= Closing {
			// A new connection reusing the tuple of a finished one.
			t.reset(f, k, p, fromLo, now)
		}
	} else {
		f = t.insert(pos, k, p, fromLo, now)
	}
	s := f.SideOf(fromLo)
	f.update(p, s, now)
	return f, s
}

// TrackAgain records p, another segment of the super-packet whose first
// segment Track just gave f and side: the same flow, so no lookup. Nothing
// may have been tracked or expired in between.
func (t *Table) TrackAgain(f *Flow, side Side, p *packet.Parsed, now int64) {
	f.update(p, side, now)
}

func (t *Table) insert(pos uint64, k Key, p *packet.Parsed, fromLo bool, now int64) *Flow {
	if len(t.free) == 0 && len(t.slab) == cap(t.slab) {
		t.remove(t.tail)
		t.c.Evicted++
		pos, _ = t.slot(&k) // removal may shift entries
	}
	var i int32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.slab = t.slab[:len(t.slab)+1]
		i = int32(len(t.slab) - 1)
	}
	t.index[pos] = i + 1
	f := &t.slab[i]
	t.reset(f, k, p, fromLo, now)
	t.pushFront(i)
	t.c.Created++
	return f
}

func (t *Table) reset(f *Flow, k Key, p *packet.Parsed, fromLo bool, now int64) {
	// The old flow's behavior state stays for the new one to reuse (see
	// Incarnation): a SYN flood then allocates no state once the table is full.
	*f = Flow{Key: k, Created: now, LastSeen: now, Generation: f.Generation, Incarnation: f.Incarnation + 1,
		Behavior: f.Behavior[:0], prev: f.prev, next: f.next}
	f.Ends[Client].WScale, f.Ends[Server].WScale = -1, -1
	switch {
	case p.Flags&(packet.SYN|packet.ACK) == packet.SYN:
		f.ClientLo = fromLo
	case p.Flags&(packet.SYN|packet.ACK) == packet.SYN|packet.ACK:
		f.ClientLo = !fromLo
		f.State = SynSent
	default:
		// Picked up mid-stream: the end with the higher port is the client.
		f.ClientLo = k.LoPort > k.HiPort
		f.State = Established
	}
}

// remove deletes slab entry i from the index (backward-shift deletion keeps
// probe chains intact without tombstones) and the LRU list.
func (t *Table) remove(i int32) {
	f := &t.slab[i]
	pos, ok := t.slot(&f.Key)
	if !ok {
		return
	}
	t.index[pos] = 0
	for next := (pos + 1) & t.mask; t.index[next] != 0; next = (next + 1) & t.mask {
		j := t.index[next]
		home := t.hash(&t.slab[j-1].Key) & t.mask
		// Move j back into the hole if its home is not in (pos, next].
		if (next-home)&t.mask >= (next-pos)&t.mask {
			t.index[pos] = j
			t.index[next] = 0
			pos = next
		}
	}
	t.unlink(i)
	t.free = append(t.free, i)
}

// Expire removes up to budget flows idle past their timeout, oldest first.
// The engine calls it once per batch so the work per packet stays bounded.
func (t *Table) Expire(now int64, budget int) {
	for ; budget > 0 && t.tail >= 0; budget-- {
		f := &t.slab[t.tail]
		var limit time.Duration
		switch f.State {
		case SynSent, SynReceived:
			limit = t.timeouts.Handshake
		case Closed, Reset:
			limit = t.timeouts.Closed
		default:
			limit = t.timeouts.Established
		}
		// The tail is the oldest flow, but a younger one may have a shorter
		// timeout; expiring only from the tail keeps this O(1) per call.
		if now-f.LastSeen < int64(limit) {
			return
		}
		t.remove(t.tail)
		t.c.Expired++
	}
}

// Each calls fn for every flow, most recently seen first, until fn returns false.
func (t *Table) Each(fn func(*Flow) bool) {
	for i := t.head; i >= 0; i = t.slab[i].next {
		if !fn(&t.slab[i]) {
			return
		}
	}
}

func (t *Table) pushFront(i int32) {
	f := &t.slab[i]
	f.prev, f.next = -1, t.head
	if t.head >= 0 {
		t.slab[t.head].prev = i
	}
	t.head = i
	if t.tail < 0 {
		t.tail = i
	}
}

func (t *Table) unlink(i int32) {
	f := &t.slab[i]
	if f.prev >= 0 {
		t.slab[f.prev].next = f.next
	} else {
		t.head = f.next
	}
	if f.next >= 0 {
		t.slab[f.next].prev = f.prev
	} else {
		t.tail = f.prev
	}
	f.prev, f.next = -1, -1
}

func (t *Table) touch(i int32) {
	if t.head == i {
		return
	}
	t.unlink(i)
	t.pushFront(i)
}
