package behaviors

import (
	"math/rand/v2"
	"slices"
	"sort"
)

// Entry is one behavior of a chain with its match and counters.
type Entry struct {
	Type     string
	Match    Match
	Behavior Behavior
	Line     int // line in the profile, for messages

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
}

var generation uint32

// NewChain builds a chain. Each entry draws from its own source seeded from
// (seed, position), so a run's random decisions replay exactly from its seed.
func NewChain(profile string, seed uint64, entries []*Entry) *Chain {
	generation++
	c := &Chain{Profile: profile, Seed: seed, Entries: entries, Generation: generation}
	for i, e := range entries {
		e.rand = rand.New(rand.NewPCG(seed, uint64(i)+1))
		e.dropNote = "dropped by " + e.Type
		if ps, ok := e.Behavior.(PerSegment); ok && ps.PerSegment() {
			e.perSegment = true
			c.anySegment = true
		}
	}
	return c
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
		if n := len(c.Entries); len(f.Behavior) != n { // a new flow: earlier flows' state memory is reused
			f.Behavior = slices.Grow(f.Behavior[:0], n)[:n]
		}
	}
	for i, e := range c.Entries {
		if !e.Match.Matches(p) {
			continue
		}
		var slot *any
		if f != nil {
			slot = &f.Behavior[i]
		}
		p.Bind(e.rand, slot, env, scratch)
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
	Type     string            `json:"type"`
	Match    string            `json:"match"`
	Counters EntryCounters     `json:"counters"`
	Extra    map[string]uint64 `json:"extra,omitempty"`
}

// Status reports every entry's counters.
func (c *Chain) Status() []EntryStatus {
	out := make([]EntryStatus, 0, len(c.Entries))
	for _, e := range c.Entries {
		st := EntryStatus{Type: e.Type, Match: e.Match.String(), Counters: e.Counters}
		if s, ok := e.Behavior.(Stats); ok {
			st.Extra = s.Stats()
		}
		out = append(out, st)
	}
	return out
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
