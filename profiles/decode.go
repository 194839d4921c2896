package profiles

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/yamlnode"
	"gopkg.in/yaml.v3"
)

// Limits on hostile input. Real profiles are a few dozen lines, a handful of
// levels deep, and need no repetition through aliases.
const (
	MaxSize       = 1 << 20 // bytes in a profile file
	maxDepth      = 32      // nesting of mappings and lists
	maxAliasNodes = 1000    // nodes reached through aliases, all together
	maxBehaviors  = 256     // entries in one chain: each costs every packet a match
)

// Error is a profile error that points at its place: it prints as
// "FILE:LINE: PATH: what is wrong", always on one line.
type Error struct {
	File string
	Line int    // 0 when the error is about the whole file
	Path string // e.g. `behaviors[1] (delay): jitter`; may be empty
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(capped(oneLine(e.Err.Error())))
	return b.String()
}

// maxMessage bounds an error's message. The values it quotes are cut to
// an excerpt where they are quoted (yamlnode.Quote); this catches any
// that is not, so that no error prints back a whole file: it keeps the
// message's head and its tail, which says what was wrong.
const maxMessage = 500

func capped(s string) string {
	r := []rune(s)
	if len(r) <= maxMessage {
		return s
	}
	head, tail := maxMessage*2/3, maxMessage/3
	return fmt.Sprintf("%s… (%d characters cut) …%s", string(r[:head]), len(r)-head-tail, string(r[len(r)-tail:]))
}

func (e *Error) Unwrap() error { return e.Err }

// oneLine folds a message onto one line so every error reads as one line
// in a terminal and in a log.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// check walks the document once, following aliases, and refuses what no
// profile needs but an attacker might send: deep nesting, alias expansion
// beyond a small budget (the "billion laughs"), cycles, merge keys and
// custom tags. After it passes, the decoder may follow aliases freely.
type checker struct {
	aliasNodes int
}

func (c *checker) check(n *yaml.Node, depth, aliasLine int) (int, error) {
	if depth > maxDepth {
		return n.Line, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	if aliasLine > 0 {
		c.aliasNodes++
		if c.aliasNodes > maxAliasNodes {
			// Point at the alias the user wrote, not deep inside its anchor.
			return aliasLine, fmt.Errorf("aliases expand to more than %d nodes; a profile needs no such repetition", maxAliasNodes)
		}
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return n.Line, fmt.Errorf("alias *%s has no anchor", n.Value)
		}
		if aliasLine == 0 {
			aliasLine = n.Line
		}
		return c.check(n.Alias, depth, aliasLine)
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp":
		case "!!merge":
			return n.Line, errors.New("merge keys (<<) are not supported; write the keys out")
		default:
			return n.Line, fmt.Errorf("tag %s is not supported", yamlnode.Quote(tag))
		}
	case yaml.MappingNode, yaml.SequenceNode:
		if tag := n.ShortTag(); tag != "!!map" && tag != "!!seq" {
			return n.Line, fmt.Errorf("tag %s is not supported", yamlnode.Quote(tag))
		}
		for _, k := range n.Content {
			if line, err := c.check(k, depth+1, aliasLine); err != nil {
				return line, err
			}
		}
	default:
		return n.Line, errors.New("unexpected YAML node")
	}
	return 0, nil
}

// param is one settable field of a behavior or a match, by its YAML name.
type param struct {
	name  string
	v     reflect.Value
	field reflect.StructField // its declaration: the help tags
}

// params lists the fields tagged `param:"name"` of the struct v points to
// (or is), including those of embedded structs.
func params(v reflect.Value) []param {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || !v.CanAddr() {
		return nil // a struct held by value cannot be configured
	}
	var out []param
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, tagged := f.Tag.Lookup("param")
		switch {
		case tagged && name != "" && f.IsExported():
			out = append(out, param{name: name, v: v.Field(i), field: f})
		case !tagged && f.Anonymous && f.Type.Kind() == reflect.Struct:
			out = append(out, params(v.Field(i))...)
		}
	}
	return out
}

func paramNames(ps []param) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return strings.Join(names, ", ")
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decodeStruct sets the params of v from mapping n. lines receives each
// key's line under prefix (e.g. "match."), so later errors about a field
// can point at it.
func decodeStruct(v reflect.Value, n *yaml.Node, prefix string, lines map[string]int) *Error {
	n = yamlnode.Deref(n)
	ps := params(v)
	if n.Kind != yaml.MappingNode {
		return &Error{Line: n.Line, Path: strings.TrimSuffix(prefix, "."), Err: fmt.Errorf("expected a mapping of %s, found %s", paramNames(ps), yamlnode.Describe(n))}
	}
	kvs, lerr := yamlnode.Pairs(n)
	if lerr != nil {
		return &Error{Line: lerr.Line, Path: strings.TrimSuffix(prefix, "."), Err: lerr.Err}
	}
	for _, kv := range kvs {
		p, ok := lookup(ps, kv.Key)
		if !ok {
			return &Error{Line: kv.Line, Path: strings.TrimSuffix(prefix, "."), Err: unknown("key", kv.Key, ps)}
		}
		lines[prefix+kv.Key] = kv.Line
		if err := setValue(p.v, kv.Val); err != nil {
			return fieldErr(kv, prefix+kv.Key, err)
		}
	}
	return nil
}

func lookup(ps []param, name string) (param, bool) {
	for _, p := range ps {
		if p.name == name {
			return p, true
		}
	}
	return param{}, false
}

// fieldErr places err from decoding kv's value at its line.
func fieldErr(kv yamlnode.Pair, path string, err error) *Error {
	line := yamlnode.Deref(kv.Val).Line
	var le *yamlnode.LineError
	if errors.As(err, &le) {
		line, err = le.Line, le.Err
	}
	if line == 0 {
		line = kv.Line
	}
	return &Error{Line: line, Path: path, Err: err}
}

// unknown reports an unknown key, with a suggestion when one is close.
func unknown(what, key string, ps []param) error {
	if len(ps) == 0 {
		return fmt.Errorf("unknown %s %s (none are accepted here)", what, yamlnode.Quote(key))
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return unknownOf(what, key, names)
}

func unknownOf(what, key string, known []string) error {
	if s := suggest(key, known); s != "" {
		return fmt.Errorf("unknown %s %s; did you mean %q? (known: %s)", what, yamlnode.Quote(key), s, strings.Join(known, ", "))
	}
	return fmt.Errorf("unknown %s %s (known: %s)", what, yamlnode.Quote(key), strings.Join(known, ", "))
}

// setValue decodes scalar or list n into v according to v's type.
func setValue(v reflect.Value, n *yaml.Node) error {
	n = yamlnode.Deref(n)
	t := v.Type()
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return fmt.Errorf("has no value (expected %s)", typeName(t))
	}
	switch {
	case t == durationType:
		return setDuration(v, n)
	case reflect.PointerTo(t).Implements(textUnmarshalerType) && v.CanAddr():
		if err := expectScalar(t, n); err != nil {
			return err
		}
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value))
	}
	switch t.Kind() {
	case reflect.String:
		if err := expectScalar(t, n); err != nil {
			return err
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		return setBool(v, n)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return setInt(v, n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return setUint(v, n)
	case reflect.Float32, reflect.Float64:
		return setFloat(v, n)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return setStrings(v, n)
		}
	}
	return fmt.Errorf("parameter of unsupported type %s (a bug in the behavior)", t)
}

// expectScalar refuses a mapping or a list where a value of type t goes.
func expectScalar(t reflect.Type, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected %s, found %s", typeName(t), yamlnode.Describe(n))
	}
	return nil
}

func setDuration(v reflect.Value, n *yaml.Node) error {
	if err := expectScalar(v.Type(), n); err != nil {
		return err
	}
	d, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return fmt.Errorf("%s is not a duration such as 300ms or 1.5s", yamlnode.Quote(n.Value))
	}
	if d < 0 {
		return fmt.Errorf("%s is negative", yamlnode.Quote(n.Value))
	}
	v.SetInt(int64(d))
	return nil
}

func setBool(v reflect.Value, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return fmt.Errorf("expected true or false, found %s", yamlnode.Describe(n))
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		return fmt.Errorf("%s is not true or false", yamlnode.Quote(n.Value))
	}
	v.SetBool(b)
	return nil
}

func setInt(v reflect.Value, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return fmt.Errorf("expected an integer, found %s", yamlnode.Describe(n))
	}
	var x int64
	if err := n.Decode(&x); err != nil || v.OverflowInt(x) {
		return fmt.Errorf("%s is out of range for an integer of %d bits", n.Value, v.Type().Bits())
	}
	v.SetInt(x)
	return nil
}

func setUint(v reflect.Value, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return fmt.Errorf("expected a whole number, found %s", yamlnode.Describe(n))
	}
	if strings.HasPrefix(strings.TrimSpace(n.Value), "-") {
		return fmt.Errorf("%s is negative (expected 0 or more)", n.Value)
	}
	var x uint64
	if err := n.Decode(&x); err != nil || v.OverflowUint(x) {
		return fmt.Errorf("%s is out of range for a whole number of %d bits", n.Value, v.Type().Bits())
	}
	v.SetUint(x)
	return nil
}

func setFloat(v reflect.Value, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		return fmt.Errorf("expected a number, found %s", yamlnode.Describe(n))
	}
	var f float64
	if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || v.OverflowFloat(f) {
		return fmt.Errorf("%s is not a finite number", yamlnode.Quote(n.Value))
	}
	v.SetFloat(f)
	return nil
}

// setStrings takes a list of strings, or one string as a list of one.
func setStrings(v reflect.Value, n *yaml.Node) error {
	t := v.Type()
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	out := reflect.MakeSlice(t, 0, len(items))
	for _, it := range items {
		it = yamlnode.Deref(it)
		if it.Kind != yaml.ScalarNode || it.ShortTag() == "!!null" {
			return &yamlnode.LineError{Line: it.Line, Err: fmt.Errorf("expected a string or a list of strings, found %s in the list", yamlnode.Describe(it))}
		}
		out = reflect.Append(out, reflect.ValueOf(it.Value).Convert(t.Elem()))
	}
	v.Set(out)
	return nil
}

// typeName says in words what a parameter of type t takes.
func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 300ms or 1.5s"
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		return "a " + strings.ToLower(t.Name())
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
	}
	return t.String()
}

// supported reports whether setValue can decode into type t.
func supported(t reflect.Type) bool {
	if t == durationType || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// suggest returns the known name closest to s when it is a likely typo.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the edit distance counting a transposition as one edit
// (optimal string alignment), for short names only.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1) // a transposition
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// Param describes one parameter of a registered behavior or of a match,
// for help output. Besides its `param` tag, a parameter's field carries
// `help:"what it means"` (required), and where they apply
// `values:"a|b|c"` (the values it accepts), `unit:"bytes"` (for a number
// whose type does not say it) and `default:"x"` (what its zero value
// stands for).
type Param struct {
	Name    string
	Type    string   // in words: "a duration such as 300ms or 1.5s"
	Unit    string   // "bytes", "packets", ...; "" when the type says it
	Values  []string // the values it accepts, when they are a fixed set
	Default string   // "" when none
	Help    string   // what it means
}

// Accepts says in words what the parameter takes: its values, or its type
// and unit ("one of forward, swallow"; "an integer (bytes)").
func (p Param) Accepts() string {
	switch {
	case len(p.Values) > 0 && strings.HasPrefix(p.Type, "a list"):
		return "a list of " + strings.Join(p.Values, ", ")
	case len(p.Values) > 0:
		return "one of " + strings.Join(p.Values, ", ")
	case p.Unit != "":
		return p.Type + " (" + p.Unit + ")"
	}
	return p.Type
}

// parameters lists the parameters of behavior b in declaration order, with
// the values it has (the defaults, for a fresh one).
func parameters(b any) []Param {
	ps := params(reflect.ValueOf(b))
	out := make([]Param, 0, len(ps))
	for _, p := range ps {
		d := p.field.Tag.Get("default")
		if !p.v.IsZero() {
			d = fmt.Sprint(p.v.Interface())
		}
		var values []string
		if v := p.field.Tag.Get("values"); v != "" {
			values = strings.Split(v, "|")
		}
		out = append(out, Param{Name: p.name, Type: typeName(p.v.Type()), Unit: p.field.Tag.Get("unit"),
			Values: values, Default: d, Help: p.field.Tag.Get("help")})
	}
	return out
}
