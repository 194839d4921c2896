package profiles

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/yamlnode"
	"gopkg.in/yaml.v3"
)

// The control API edits a running profile one behavior at a time: it adds
// one written as a profile lists it, patches some of a behavior's keys, and
// shows the result as a profile document. Errors read like a profile's,
// "FILE:LINE: PATH: what is wrong", with the request as the file.

// behaviorPath names a single behavior in errors, as behaviors[i] does in
// a profile.
const behaviorPath = "behavior"

// ParseBehavior decodes one behavior written as a profile's behaviors list
// holds it (type, optional name and match, parameters), in YAML or JSON;
// file names it in errors. Without a name it has none: the chain it joins
// names it after its type.
func ParseBehavior(file string, data []byte) (*Spec, error) {
	n, err := parseDoc(file, data)
	if err != nil {
		return nil, err
	}
	s, perr := decodeSpec(behaviorPath, n)
	if perr != nil {
		perr.File = file
		return nil, perr
	}
	if !s.named {
		s.Name = ""
	}
	return s, nil
}

// parseDoc parses a document that must be one mapping, with the limits a
// profile has.
func parseDoc(file string, data []byte) (*yaml.Node, error) {
	if len(data) > MaxSize {
		return nil, &Error{File: file, Err: tooBig(int64(len(data)))}
	}
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &Error{File: file, Err: errors.New("is empty; expected a mapping with a type and parameters")}
	}
	var c checker
	if line, err := c.check(root, 1, 0); err != nil {
		return nil, &Error{File: file, Line: line, Err: err}
	}
	if root = yamlnode.Deref(root); root.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: root.Line, Err: fmt.Errorf("expected a mapping, found %s", yamlnode.Describe(root))}
	}
	return root, nil
}

// Patch returns s with the keys of the mapping in data (YAML or JSON) set
// over its own: parameters replace or join s's, a match replaces s's whole
// match. The type and the name cannot change. The result is validated as a
// whole; errors name the request's lines, file names it.
func (s *Spec) Patch(file string, data []byte) (*Spec, error) {
	patch, err := parseDoc(file, data)
	if err != nil {
		return nil, err
	}
	kvs, lerr := yamlnode.Pairs(patch)
	if lerr != nil {
		return nil, &Error{File: file, Line: lerr.Line, Err: lerr.Err}
	}
	// s's own keys keep no line: an error about one of them points at no
	// line of the request.
	merged := cloneNode(s.node, true)
	where := fmt.Sprintf("%s (%s)", behaviorPath, s.Type)
	for _, kv := range kvs {
		switch kv.Key {
		case "type", "name":
			var v string
			err := setValue(reflect.ValueOf(&v).Elem(), kv.Val)
			want := map[string]string{"type": s.Type, "name": s.Name}[kv.Key]
			if err == nil && v != want {
				err = fmt.Errorf("cannot change (%q to %q): remove the behavior and add another", want, v)
			}
			if err != nil {
				e := fieldErr(kv, where+": "+kv.Key, err)
				e.File = file
				return nil, e
			}
			continue
		}
		setPair(merged, patch.Content[keyIndex(patch, kv.Key)], kv.Val)
	}
	p, perr := decodeSpec(behaviorPath, merged)
	if perr != nil {
		perr.File = file
		return nil, perr
	}
	p.Name, p.named = s.Name, s.named
	return p, nil
}

// Entry makes s executable: a fresh behavior with s's parameters and its
// match resolved with resolve (DefaultResolver when nil).
func (s *Spec) Entry(file string, resolve behaviors.Resolver) (*behaviors.Entry, error) {
	return s.entry(file, behaviorPath, resolve)
}

// Update sets the parameters of b, a running behavior of s's type, to s's
// and validates them, keeping the rest of b's state (its counters, its
// per-direction queues). s must be valid (decoded, or Patch's result): then
// Update cannot fail but for a programming error.
func (s *Spec) Update(b behaviors.Behavior) error {
	if reflect.TypeOf(b) != reflect.TypeOf(s.Behavior) {
		return fmt.Errorf("behavior is a %T, not a %T", b, s.Behavior)
	}
	dst, src := params(reflect.ValueOf(b)), params(reflect.ValueOf(s.Behavior))
	copyParams(dst, src)
	return validate(b)
}

// copyParams sets each of dst to src's value; slices are copied, so that
// the two never share memory.
func copyParams(dst, src []param) {
	for i := range dst {
		v := src[i].v
		if v.Kind() == reflect.Slice && !v.IsNil() {
			c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			reflect.Copy(c, v)
			v = c
		}
		dst[i].v.Set(v)
	}
}

// Document renders the profile as YAML with behaviors in place of its own:
// what a running profile has become after behaviors were added, removed
// or patched. Every behavior carries its name.
func (p *Profile) Document(specs []*Spec) ([]byte, error) {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	doc.Content = append(doc.Content, str("name"), str(p.Name))
	if p.Description != "" {
		doc.Content = append(doc.Content, str("description"), str(p.Description))
	}
	if len(p.Sources) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, src := range p.Sources {
			seq.Content = append(seq.Content, str(src))
		}
		doc.Content = append(doc.Content, str("sources"), seq)
	}
	if p.Seed != nil {
		doc.Content = append(doc.Content, str("seed"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(*p.Seed)})
	}
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for _, s := range specs {
		n := cloneNode(s.node, true)
		blockStyle(n)
		if keyIndex(n, "name") < 0 {
			n.Content = append(n.Content, str("name"), str(s.Name))
		}
		list.Content = append(list.Content, ordered(n))
	}
	if len(specs) == 0 {
		list.Style = yaml.FlowStyle // behaviors: []
	}
	doc.Content = append(doc.Content, str("behaviors"), list)
	if p.Proxy != nil {
		doc.Content = append(doc.Content, str("proxy"), cloneNode(p.Proxy, true))
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// cloneNode deep-copies n with aliases expanded (the copy stands alone);
// with dropLines, the copy has no line numbers.
func cloneNode(n *yaml.Node, dropLines bool) *yaml.Node {
	n = yamlnode.Deref(n)
	c := *n
	c.Anchor, c.Alias = "", nil
	if dropLines {
		c.Line, c.Column = 0, 0
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, k := range n.Content {
		c.Content[i] = cloneNode(k, dropLines)
	}
	return &c
}

// ordered puts a behavior's type, name and match first, where a reader
// looks for them (a behavior sent as JSON may have them anywhere), and
// its parameters after them as they were written.
func ordered(n *yaml.Node) *yaml.Node {
	var head, rest []*yaml.Node
	for _, key := range []string{"type", "name", "match"} {
		if i := keyIndex(n, key); i >= 0 {
			head = append(head, n.Content[i], n.Content[i+1])
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := yamlnode.Deref(n.Content[i]).Value; k != "type" && k != "name" && k != "match" {
			rest = append(rest, n.Content[i], n.Content[i+1])
		}
	}
	n.Content = append(head, rest...)
	return n
}

// blockStyle sets the mappings under n in block style and lets the encoder
// quote scalars only where it must, so that a behavior sent as JSON reads
// like the rest of the profile. Lists keep their style.
func blockStyle(n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		n.Style = 0
	case yaml.ScalarNode:
		n.Style &^= yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// setPair sets key k to v in mapping m, replacing the pair if m has the
// key: k is kept as given, with its line.
func setPair(m, k, v *yaml.Node) {
	if i := keyIndex(m, k.Value); i >= 0 {
		m.Content[i], m.Content[i+1] = k, v
		return
	}
	m.Content = append(m.Content, k, v)
}

// keyIndex is the index in m.Content of key's node, or -1.
func keyIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if yamlnode.Deref(m.Content[i]).Value == key {
			return i
		}
	}
	return -1
}

func str(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
