package behaviors

import (
	"math/rand/v2"
	"slices"
	"sort"
	"sync/atomic"
)

// Entry is one behavior of a chain with its match and counters.
type Entry struct {
	Name     string // unique in its chain; NewChain names unnamed entries after their type
	Type     string
	Match    Match
	Behavior Behavior
	Line     int // line in the profile, for messages

	// slot indexes the entry's state in every flow. It stays the entry's
	// while the chain is edited (With, Without), so that adding or
	// removing another behavior leaves this one's per-flow state alone.
	slot int
	// id tags the per-flow state the entry makes: a slot freed by a
	// removed entry and taken by a new one reads as empty.
	id         uint32
	perSegment bool
	dropNote   string // precomputed: a drop must not allocate
	rand       *rand.Rand
	Counters   EntryCounters
}

// EntryCounters are kept by the engine for every entry.
type EntryCounters struct {
	Matched  uint64 `json:"matched"`
	Dropped  uint64 `json:"dropped"`
	Delayed  uint64 `json:"delayed"`
	Modified uint64 `json:"modified"`
	Injected uint64 `json:"injected"`
}

// Chain is a profile made executable: the entries in the order packets
// meet them, the run's seed, and a generation that changes on every apply so
// per-flow state from an earlier chain is discarded.
type Chain struct {
	Profile    string
	Seed       uint64
	Entries    []*Entry
	Generation uint32
	anySegment bool
	slots      int // per-flow state slots: one past the highest entry slot
}

var generation, entryIDs atomic.Uint32

// NewChain builds a chain. Each entry draws from its own source seeded from
// (seed, position), so a run's random decisions replay exactly from its
// seed. Entries without a name are named after their type (delay, delay-2,
// ...); names must be unique.
func NewChain(profile string, seed uint64, entries []*Entry) *Chain {
	c := &Chain{Profile: profile, Seed: seed, Entries: entries, Generation: generation.Add(1)}
	for i, e := range entries {
		if e.Name == "" {
			e.Name = UniqueName(e.Type, func(n string) bool { return c.Lookup(n) != nil })
		}
		e.init(seed, i)
	}
	c.index()
	return c
}

// init gives e its slot, identity and random source.
func (e *Entry) init(seed uint64, slot int) {
	e.slot = slot
	e.id = entryIDs.Add(1)
	e.rand = rand.New(rand.NewPCG(seed, uint64(slot)+1))
	e.dropNote = "dropped by " + e.Type
	ps, ok := e.Behavior.(PerSegment)
	e.perSegment = ok && ps.PerSegment()
}

// index recomputes what the chain derives from its entries.
func (c *Chain) index() {
	c.anySegment, c.slots = false, 0
	for _, e := range c.Entries {
		c.anySegment = c.anySegment || e.perSegment
		c.slots = max(c.slots, e.slot+1)
	}
}

// NeedsSegments reports whether a behavior that must see single segments
// matches p; only then does the engine split an offloaded super-packet.
func (c *Chain) NeedsSegments(p *Packet) bool {
	if !c.anySegment {
		return false
	}
	for _, e := range c.Entries {
		if e.perSegment && e.Match.Matches(p) {
			return true
		}
	}
	return false
}

// Run passes p through the chain. It returns the verdict and, for the
// capture, the note of the behavior that decided or changed the packet.
func (c *Chain) Run(p *Packet, env Env, scratch []byte) Verdict {
	f := p.Flow
	if f != nil {
		if f.Generation != c.Generation { // another chain: its state means nothing here
			clear(f.Behavior[:cap(f.Behavior)])
			f.Generation = c.Generation
		}
		if n := c.slots; len(f.Behavior) != n { // a new flow: earlier flows' state memory is reused
			f.Behavior = slices.Grow(f.Behavior[:0], n)[:n]
		}
	}
	for _, e := range c.Entries {
		if !e.Match.Matches(p) {
			continue
		}
		var slot *any
		if f != nil {
			slot = &f.Behavior[e.slot]
		}
		p.Bind(e.rand, slot, env, scratch)
		p.owner = e.id
		p.counters = &e.Counters
		e.Counters.Matched++
		depart, modified := p.Depart, p.modified
		v := e.Behavior.Handle(p)
		if p.Depart > depart {
			e.Counters.Delayed++
		}
		if p.modified && !modified {
			e.Counters.Modified++
		}
		if v == Drop {
			e.Counters.Dropped++
			if p.Note == "" {
				p.Note = e.dropNote
			}
			return Drop
		}
	}
	return Pass
}

// EntryStatus is an entry's report for `lab status`.
type EntryStatus struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Match    string            `json:"match"`
	Counters EntryCounters     `json:"counters"`
	Extra    map[string]uint64 `json:"extra,omitempty"`
	Waits    *Wait             `json:"waits,omitempty"`
}

// Status reports every entry's counters.
func (c *Chain) Status() []EntryStatus {
	out := make([]EntryStatus, 0, len(c.Entries))
	for _, e := range c.Entries {
		out = append(out, e.Status())
	}
	return out
}

// Status reports the entry's counters.
func (e *Entry) Status() EntryStatus {
	st := EntryStatus{Name: e.Name, Type: e.Type, Match: e.Match.String(), Counters: e.Counters}
	if s, ok := e.Behavior.(Stats); ok {
		st.Extra = s.Stats()
	}
	if w, ok := e.Behavior.(Waiter); ok {
		wait := w.Waiting()
		st.Waits = &wait
	}
	return st
}

// SortedKeys is a helper for deterministic output of Stats maps.
func SortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
