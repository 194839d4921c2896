// Package yamlnode reads yaml.Node trees the way faultbox's loaders (profiles
// and the proxy's settings) do: aliases followed, mapping keys in order and
// unique, and nodes named in error messages by what they are.
package yamlnode

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Deref follows aliases to the anchored node. The profile loader has bounded
// alias chains before any of this runs; the limit only guards against loops.
func Deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n != nil && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

// Pair is one key of a mapping with its value.
type Pair struct {
	Key  string
	Line int // the key's
	Val  *yaml.Node
}

// ValLine is the line of the value, or of the key when the value has none.
func (p Pair) ValLine() int {
	if l := Deref(p.Val).Line; l > 0 {
		return l
	}
	return p.Line
}

// LineError is an error about a node other than the one being decoded, e.g.
// a key of a mapping or one element of a list.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return e.Err.Error() }
func (e *LineError) Unwrap() error { return e.Err }

// Pairs returns a mapping's keys in order, refusing duplicates and keys that
// are not plain names.
func Pairs(n *yaml.Node) ([]Pair, *LineError) {
	out := make([]Pair, 0, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := Deref(n.Content[i])
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
			return nil, &LineError{k.Line, fmt.Errorf("keys must be plain names, found %s", Describe(k))}
		}
		if first, dup := seen[k.Value]; dup {
			return nil, &LineError{k.Line, fmt.Errorf("duplicate key %s (first at line %d)", Quote(k.Value), first)}
		}
		seen[k.Value] = k.Line
		out = append(out, Pair{Key: k.Value, Line: k.Line, Val: n.Content[i+1]})
	}
	return out, nil
}

// Describe names what a node is, for "expected X, found Y" messages.
func Describe(n *yaml.Node) string {
	switch n = Deref(n); {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return "no value"
	case n.Kind == yaml.ScalarNode:
		return Quote(n.Value)
	}
	return "nothing"
}

// quoteMax is how many characters of a value an error quotes.
const quoteMax = 40

// Quote quotes a value from the file for an error message, as %q does,
// but at most its first quoteMax characters: a file that is not a
// profile at all (say /etc/passwd) reads as one long scalar, and an error
// must not print it back whole.
func Quote(s string) string {
	n := utf8.RuneCountInString(s)
	if n <= quoteMax+10 {
		return strconv.Quote(s)
	}
	cut := 0
	for range quoteMax {
		_, size := utf8.DecodeRuneInString(s[cut:])
		cut += size
	}
	return fmt.Sprintf("%s… (%d characters)", strconv.Quote(s[:cut]), n)
}
