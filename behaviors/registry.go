package behaviors

import (
	"fmt"
	"sort"
)

// Factory returns a new behavior with its parameters at their defaults. The
// profile loader then sets the exported fields tagged `param:"name"` and
// calls Validate.
type Factory func() Behavior

type registration struct {
	factory Factory
	summary string
}

var registry = map[string]registration{}

// Register makes a behavior available to profiles under name. It is called
// from each behavior file's init; a duplicate name is a programming error.
func Register(name, summary string, f Factory) {
	if _, dup := registry[name]; dup {
		panic("behaviors: duplicate registration of " + name)
	}
	registry[name] = registration{factory: f, summary: summary}
}

// New returns a fresh behavior registered under name.
func New(name string) (Behavior, error) {
	r, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown behavior %q (known: %v)", name, Names())
	}
	return r.factory(), nil
}

// Names lists the registered behaviors, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Summary is the one-line description a behavior registered with.
func Summary(name string) string { return registry[name].summary }

// FieldError is a parameter error that names the parameter, so the profile
// loader can point at its line.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Errorf returns a *FieldError for field.
func Errorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}
