// Package profiles loads and validates faultbox profiles: YAML documents
// naming the behaviors a run applies, in the order packets meet them, with
// their matches and parameters. Built-in profiles are embedded in the
// binary; any other profile is a file the user names.
//
// Every error names the file, the line and the field, on one line:
//
//	gprs.yaml:12: behaviors[1] (delay): jitter: "10 sec" is not a duration such as 300ms or 1.5s
package profiles

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/yamlnode"
	"gopkg.in/yaml.v3"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Profile is a parsed, validated profile.
type Profile struct {
	Name        string
	Description string
	Sources     []string
	Seed        *uint64 // nil when the profile names none; a run's --seed wins
	Behaviors   []Spec
	// Proxy is the optional top-level `proxy:` mapping: the settings of the
	// load-balancer emulation (faultbox proxy). It is kept as written and
	// decoded, strictly, by internal/proxy; nil when the profile has none.
	Proxy *yaml.Node
	File  string // where it came from: a path, or builtin/NAME.yaml
	YAML  []byte // the document as written
}

// Spec is one behavior of a profile as written, decoded and validated.
type Spec struct {
	Name     string // as written, or named after its type (delay, delay-2, ...)
	Type     string
	Line     int // line of the behavior's first key
	Match    behaviors.MatchSpec
	Behavior behaviors.Behavior // a template: Chain builds fresh instances from it

	named bool           // the name was written, not made up
	lines map[string]int // line of each key: "delay", "match.port", ...
	node  *yaml.Node     // the mapping as written, to patch and render it
}

// Builtin lists the names of the built-in profiles, sorted.
func Builtin() []string {
	files, _ := fs.Glob(builtinFS, "builtin/*.yaml")
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, strings.TrimSuffix(path.Base(f), ".yaml"))
	}
	slices.Sort(names)
	return names
}

// builtinFile is the name a built-in's errors and File carry.
func builtinFile(name string) string { return "builtin/" + name + ".yaml" }

// Load returns the built-in profile called nameOrFile or, when there is
// none by that name, the profile in the file at path nameOrFile. Only that
// one path is ever opened; nothing inside a profile names a file.
func Load(nameOrFile string) (*Profile, error) {
	if !strings.ContainsAny(nameOrFile, `/\`) && slices.Contains(Builtin(), nameOrFile) {
		data, err := builtinFS.ReadFile(builtinFile(nameOrFile))
		if err != nil {
			return nil, err
		}
		return Parse(builtinFile(nameOrFile), data)
	}
	data, err := readFile(nameOrFile)
	if err != nil {
		return nil, err
	}
	return Parse(nameOrFile, data)
}

// readFile reads a profile the user named, refusing what is not a regular
// file (a directory, a FIFO, /dev/zero) and anything over MaxSize. It opens
// without blocking and checks the opened file, so a FIFO swapped in after a
// check cannot hang it.
func readFile(name string) ([]byte, error) {
	fail := func(err error) error { return &Error{File: name, Err: err} }
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fail(fmt.Errorf("no such built-in profile or file (built-ins: %s)", strings.Join(Builtin(), ", ")))
	}
	if err != nil {
		return nil, fail(errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fail(errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fail(errors.New("is not a regular file"))
	}
	if fi.Size() > MaxSize {
		return nil, fail(tooBig(fi.Size()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fail(errors.Unwrap(err))
	}
	return data, nil // Parse refuses it if it grew past MaxSize
}

func tooBig(n int64) error {
	return fmt.Errorf("is %d bytes; a profile may be at most %d bytes (1 MiB)", n, MaxSize)
}

var (
	yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	topKeys  = []string{"name", "description", "sources", "seed", "behaviors", "proxy"}
)

// Parse decodes and validates the profile in data; file names it in errors.
func Parse(file string, data []byte) (*Profile, error) {
	fail := func(line int, path string, err error) error {
		return &Error{File: file, Line: line, Path: path, Err: err}
	}
	if len(data) > MaxSize {
		return nil, fail(0, "", tooBig(int64(len(data))))
	}
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, fail(0, "", errors.New("is empty; a profile needs at least name and behaviors"))
	}
	var c checker
	if line, err := c.check(root, 1, 0); err != nil {
		return nil, fail(line, "", err)
	}
	root = yamlnode.Deref(root)
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "", fmt.Errorf("the top level must be a mapping with keys %s; found %s", strings.Join(topKeys, ", "), yamlnode.Describe(root)))
	}
	kvs, lerr := yamlnode.Pairs(root)
	if lerr != nil {
		return nil, fail(lerr.Line, "", lerr.Err)
	}
	p := &Profile{File: file, YAML: data}
	seen := map[string]bool{}
	for _, kv := range kvs {
		seen[kv.Key] = true
		var err error
		switch kv.Key {
		case "name":
			err = setValue(reflect.ValueOf(&p.Name).Elem(), kv.Val)
			if err == nil && !behaviors.ValidName(p.Name) {
				err = fmt.Errorf("%s is not a name of letters, digits, '.', '_' and '-' (at most 64)", yamlnode.Quote(p.Name))
			}
		case "description":
			err = setValue(reflect.ValueOf(&p.Description).Elem(), kv.Val)
		case "sources":
			err = setValue(reflect.ValueOf(&p.Sources).Elem(), kv.Val)
		case "seed":
			var s uint64
			if err = setValue(reflect.ValueOf(&s).Elem(), kv.Val); err == nil {
				p.Seed = &s
			}
		case "behaviors":
			if err := p.decodeBehaviors(kv.Val); err != nil {
				err.File = file
				return nil, err
			}
		case "proxy":
			if v := yamlnode.Deref(kv.Val); v.Kind == yaml.MappingNode {
				p.Proxy = v
			} else {
				err = fmt.Errorf("expected a mapping of proxy settings, found %s", yamlnode.Describe(v))
			}
		default:
			return nil, fail(kv.Line, "", unknownOf("key", kv.Key, topKeys))
		}
		if err != nil {
			e := fieldErr(kv, kv.Key, err)
			e.File = file
			return nil, e
		}
	}
	if !seen["name"] {
		return nil, fail(root.Line, "", errors.New("name is missing"))
	}
	if !seen["behaviors"] {
		return nil, fail(root.Line, "", errors.New("behaviors is missing (write `behaviors: []` for none)"))
	}
	return p, nil
}

// parseYAML returns the single document's top node, nil for an empty file.
func parseYAML(file string, data []byte) (root *yaml.Node, err error) {
	defer func() {
		// yaml.v3 turns its own failures into errors; this is the last guard
		// so hostile input can never crash the caller.
		if r := recover(); r != nil {
			root, err = nil, &Error{File: file, Err: fmt.Errorf("is not valid YAML (%v)", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, yamlError(file, data, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &Error{File: file, Line: next.Line, Err: errors.New("holds more than one YAML document; a profile is one document")}
	case err != io.EOF:
		return nil, yamlError(file, data, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// yamlError turns "yaml: line 3: did not find expected key" into an Error
// at line 3, with a hint for the commonest cause: tab indentation.
func yamlError(file string, data []byte, err error) error {
	msg := strings.TrimPrefix(oneLine(err.Error()), "yaml: ")
	e := &Error{File: file}
	if m := yamlLine.FindStringSubmatch(oneLine(err.Error())); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if strings.Contains(msg, "exceeded max depth") {
		msg = fmt.Sprintf("nested deeper than %d levels", maxDepth)
	}
	if e.Line > 0 && strings.Contains(msg, "cannot start any token") {
		lines := bytes.Split(data, []byte("\n"))
		if e.Line <= len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[e.Line-1], " "), []byte("\t")) {
			msg += " (tabs are not allowed for indentation; use spaces)"
		}
	}
	e.Err = errors.New(msg)
	return e
}

// decodeBehaviors decodes the behaviors list. Errors lack only the file.
func (p *Profile) decodeBehaviors(n *yaml.Node) *Error {
	n = yamlnode.Deref(n)
	if n.Kind != yaml.SequenceNode {
		return &Error{Line: n.Line, Path: "behaviors", Err: fmt.Errorf("expected a list of behaviors (`[]` for none), found %s", yamlnode.Describe(n))}
	}
	if len(n.Content) > maxBehaviors {
		return &Error{Line: n.Line, Path: "behaviors", Err: fmt.Errorf("has %d entries; a profile may have at most %d", len(n.Content), maxBehaviors)}
	}
	for i, item := range n.Content {
		s, err := decodeSpec(fmt.Sprintf("behaviors[%d]", i), item)
		if err != nil {
			return err
		}
		if j := slices.IndexFunc(p.Behaviors, func(o Spec) bool { return s.named && o.Name == s.Name }); j >= 0 {
			return &Error{Line: s.lines["name"], Path: fmt.Sprintf("behaviors[%d] (%s): name", i, s.Type),
				Err: fmt.Errorf("%q is taken by behaviors[%d] (line %d)", s.Name, j, p.Behaviors[j].Line)}
		}
		p.Behaviors = append(p.Behaviors, *s)
	}
	// Written names first, so that a made-up one never takes a written one.
	for i := range p.Behaviors {
		if s := &p.Behaviors[i]; !s.named {
			s.Name = behaviors.UniqueName(s.Type, func(n string) bool {
				return slices.ContainsFunc(p.Behaviors, func(o Spec) bool { return o.Name == n })
			})
		}
	}
	return nil
}

// decodeSpec decodes one behavior (where names it in errors, e.g.
// behaviors[2]): its name, type, match and parameters, then validates the
// parameters and the match.
func decodeSpec(where string, n *yaml.Node) (*Spec, *Error) {
	n = yamlnode.Deref(n)
	if n.Kind != yaml.MappingNode {
		return nil, &Error{Line: n.Line, Path: where, Err: fmt.Errorf("expected a mapping with a type, found %s", yamlnode.Describe(n))}
	}
	kvs, lerr := yamlnode.Pairs(n)
	if lerr != nil {
		return nil, &Error{Line: lerr.Line, Path: where, Err: lerr.Err}
	}
	s := &Spec{Line: n.Line, lines: map[string]int{}, node: n}
	for _, kv := range kvs {
		if kv.Key != "type" {
			continue
		}
		if err := setValue(reflect.ValueOf(&s.Type).Elem(), kv.Val); err != nil {
			return nil, fieldErr(kv, where+": type", err)
		}
		b, err := behaviors.New(s.Type)
		if err != nil {
			return nil, &Error{Line: kv.Line, Path: where + ": type", Err: unknownOf("behavior", s.Type, behaviors.Names())}
		}
		s.Behavior = b
	}
	if s.Behavior == nil {
		return nil, &Error{Line: n.Line, Path: where, Err: fmt.Errorf("type is missing (one of %s)", strings.Join(behaviors.Names(), ", "))}
	}
	where += " (" + s.Type + ")"
	ps := params(reflect.ValueOf(s.Behavior))
	for _, kv := range kvs {
		switch kv.Key {
		case "type":
		case "name":
			s.lines["name"] = kv.Line
			err := setValue(reflect.ValueOf(&s.Name).Elem(), kv.Val)
			if err == nil {
				err = behaviors.CheckName(s.Name)
			}
			if err != nil {
				return nil, fieldErr(kv, where+": name", err)
			}
			s.named = true
		case "match":
			s.lines["match"] = kv.Line
			if err := decodeStruct(reflect.ValueOf(&s.Match).Elem(), kv.Val, "match.", s.lines); err != nil {
				err.Path = where + ": " + err.Path
				return nil, err
			}
		default:
			p, ok := lookup(ps, kv.Key)
			if !ok {
				return nil, &Error{Line: kv.Line, Path: where, Err: unknownParam(s.Type, kv.Key, ps)}
			}
			s.lines[kv.Key] = kv.Line
			if err := setValue(p.v, kv.Val); err != nil {
				return nil, fieldErr(kv, where+": "+kv.Key, err)
			}
		}
	}
	if err := validate(s.Behavior); err != nil {
		return nil, s.errorAt(where, err)
	}
	if _, err := s.Match.Compile(syntaxResolver); err != nil {
		return nil, s.errorAt(where, err)
	}
	return s, nil
}

// unknownParam lists what behavior typ does take, with a suggestion.
func unknownParam(typ, key string, ps []param) error {
	known := []string{"type", "name", "match"}
	for _, p := range ps {
		known = append(known, p.name)
	}
	hint := ""
	if s := suggest(key, known); s != "" {
		hint = fmt.Sprintf("; did you mean %q?", s)
	}
	return fmt.Errorf("unknown parameter %s%s (%s takes: %s)", yamlnode.Quote(key), hint, typ, strings.Join(known, ", "))
}

func validate(b behaviors.Behavior) error {
	if v, ok := b.(behaviors.Validator); ok {
		return v.Validate()
	}
	return nil
}

// errorAt places err at the line of the field a *behaviors.FieldError
// names, or at the behavior's first line.
func (s *Spec) errorAt(where string, err error) *Error {
	e := &Error{Line: s.Line, Path: where, Err: err}
	var fe *behaviors.FieldError
	if errors.As(err, &fe) {
		e.Path, e.Err = where+": "+fe.Field, fe.Err
		if line, ok := s.lines[fe.Field]; ok {
			e.Line = line
		} else if line, ok := s.lines[strings.SplitN(fe.Field, ".", 2)[0]]; ok {
			e.Line = line
		}
	}
	return e
}

// Chain makes the profile executable with the run's seed. Host names in
// matches are resolved with resolve (DefaultResolver when nil). Every call
// builds fresh behavior instances, so chains never share state.
func (p *Profile) Chain(seed uint64, resolve behaviors.Resolver) (*behaviors.Chain, error) {
	if resolve == nil {
		resolve = DefaultResolver
	}
	entries := make([]*behaviors.Entry, 0, len(p.Behaviors))
	for i := range p.Behaviors {
		e, err := p.Behaviors[i].entry(p.File, fmt.Sprintf("behaviors[%d]", i), resolve)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return behaviors.NewChain(p.Name, seed, entries), nil
}

// entry makes s executable: a fresh behavior with s's parameters, and its
// match resolved. file and where name s in errors.
func (s *Spec) entry(file, where string, resolve behaviors.Resolver) (*behaviors.Entry, error) {
	if resolve == nil {
		resolve = DefaultResolver
	}
	where += " (" + s.Type + ")"
	fail := func(err *Error) (*behaviors.Entry, error) {
		err.File = file
		return nil, err
	}
	b, err := s.instance()
	if err != nil {
		return fail(&Error{Line: s.Line, Path: where, Err: err})
	}
	if err := validate(b); err != nil {
		return fail(s.errorAt(where, err))
	}
	m, err := s.Match.Compile(resolve)
	if err != nil {
		return fail(s.errorAt(where, err))
	}
	return &behaviors.Entry{Name: s.Name, Type: s.Type, Match: m, Behavior: b, Line: s.Line}, nil
}

// instance returns a new behavior of s's type whose parameters are copied
// from s.Behavior: the factory sets up fresh internal state.
func (s *Spec) instance() (behaviors.Behavior, error) {
	b, err := behaviors.New(s.Type)
	if err != nil {
		return nil, err
	}
	if s.Behavior == nil {
		return b, nil
	}
	if reflect.TypeOf(b) != reflect.TypeOf(s.Behavior) {
		return nil, fmt.Errorf("behavior is a %T, but type %s makes a %T", s.Behavior, s.Type, b)
	}
	copyParams(params(reflect.ValueOf(b)), params(reflect.ValueOf(s.Behavior)))
	return b, nil
}

// Lab host addresses (the address plan every lab uses).
var labHosts = map[string][]netip.Addr{
	"client": {netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")},
	"server": {netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")},
	"lb":     {netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("2001:db8::3")},
}

// DefaultResolver resolves the lab host names client, server and lb to
// their IPv4 and IPv6 addresses.
var DefaultResolver behaviors.Resolver = func(name string) ([]netip.Addr, bool) {
	a, ok := labHosts[name]
	return slices.Clone(a), ok
}

// hostNameRE is the lab's rule for host names.
var hostNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// syntaxResolver checks matches when a profile is parsed: any well-formed
// host name passes, since a lab may have hosts beyond client, server and lb;
// the lab's own resolver decides when the chain is built.
func syntaxResolver(name string) ([]netip.Addr, bool) {
	if a, ok := DefaultResolver(name); ok {
		return a, true
	}
	return []netip.Addr{netip.IPv4Unspecified()}, hostNameRE.MatchString(name)
}

// Parameters lists the parameters behavior type typ takes, in declaration
// order, with its defaults.
func Parameters(typ string) ([]Param, error) {
	b, err := behaviors.New(typ)
	if err != nil {
		return nil, unknownOf("behavior", typ, behaviors.Names())
	}
	return parameters(b), nil
}

// MatchParameters lists the keys of a behavior's match, which every
// behavior takes.
func MatchParameters() []Param { return parameters(&behaviors.MatchSpec{}) }
