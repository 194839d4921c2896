package behaviors

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// A running chain is edited one behavior at a time (the control API's
// POST, DELETE and PATCH on a behavior), Toxiproxy-style. An edit makes a
// new chain that shares every other entry, with its counters, random
// source and slot, and keeps the generation: the flows keep the state of
// every behavior that stays.

// nameRE is what a behavior's or a profile's name may be: it appears in
// URLs and tables.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether name may name a behavior or a profile: 1-64
// letters, digits, '.', '_' and '-', starting with a letter or digit.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// CheckName reports whether name can name a behavior of a chain.
func CheckName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("%q is not a name of letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)", name)
	}
	return nil
}

// UniqueName returns typ, or typ-2, typ-3 ... : the first that taken
// does not report as taken.
func UniqueName(typ string, taken func(string) bool) string {
	name := typ
	for i := 2; taken(name); i++ {
		name = typ + "-" + strconv.Itoa(i)
	}
	return name
}

// Lookup returns the entry called name, or nil.
func (c *Chain) Lookup(name string) *Entry {
	for _, e := range c.Entries {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// With returns a chain with e inserted before position at (at == the
// number of entries, or -1, appends). e must be new to the chain; without
// a name it is named after its type.
func (c *Chain) With(e *Entry, at int) (*Chain, error) {
	if at < 0 {
		at = len(c.Entries)
	}
	if at > len(c.Entries) {
		return nil, fmt.Errorf("position %d is past the end of the chain (%d behaviors)", at, len(c.Entries))
	}
	if e.Name == "" {
		e.Name = UniqueName(e.Type, func(n string) bool { return c.Lookup(n) != nil })
	}
	if err := CheckName(e.Name); err != nil {
		return nil, err
	}
	if c.Lookup(e.Name) != nil {
		return nil, fmt.Errorf("the chain already has a behavior called %q", e.Name)
	}
	// The lowest slot no entry holds: slots stay few however many edits
	// come, and the entry's id keeps it from reading what a removed entry
	// left there.
	used := make([]bool, len(c.Entries)+1)
	for _, x := range c.Entries {
		if x.slot < len(used) {
			used[x.slot] = true
		}
	}
	e.init(c.Seed, slices.Index(used, false))
	n := c.derive()
	n.Entries = slices.Insert(n.Entries, at, e)
	n.index()
	return n, nil
}

// Without returns a chain without the entry called name, and that entry.
func (c *Chain) Without(name string) (*Chain, *Entry, error) {
	i := slices.IndexFunc(c.Entries, func(e *Entry) bool { return e.Name == name })
	if i < 0 {
		return nil, nil, fmt.Errorf("no behavior called %q", name)
	}
	n := c.derive()
	removed := n.Entries[i]
	n.Entries = slices.Delete(n.Entries, i, i+1)
	n.index()
	return n, removed, nil
}

// derive returns a copy of c sharing its entries and generation.
func (c *Chain) derive() *Chain {
	return &Chain{Profile: c.Profile, Seed: c.Seed, Entries: slices.Clone(c.Entries), Generation: c.Generation}
}
