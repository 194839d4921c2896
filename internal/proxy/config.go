package proxy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/units"
	"github.com/faultbox/faultbox/internal/yamlnode"
	"github.com/faultbox/faultbox/profiles"
	"gopkg.in/yaml.v3"
)

// The two load balancers the proxy emulates.
const (
	ModeJuniperDX = "juniper-dx"
	ModeELB       = "elb"
)

// Config is the `proxy:` mapping of a profile, decoded and validated.
type Config struct {
	Mode string // ModeJuniperDX or ModeELB

	// Both modes.
	Order             string        // which idle pooled connection goes first: "mru" or "lru"
	CheckBeforeReuse  bool          // peek a pooled connection (non-blocking) and drop it if closed
	Balance           string        // backend choice per request: "round-robin" or "random" (seeded)
	ConnectTimeout    time.Duration // one dial to a backend
	ResponseTimeout   time.Duration // from sending a request to the end of the response head
	ClientIdleTimeout time.Duration // a client keep-alive connection waiting for its next request
	MaxHeaderBytes    int           // request or response head, each

	// juniper-dx: a fixed pool opened ahead of any request.
	PoolSize     int           // connections per backend
	MinIdle      time.Duration // a pooled connection is not used before it has been idle this long
	WarmInterval time.Duration // how often the pool is topped up (also right after a close)
	QueueTimeout time.Duration // longest a request waits for a usable pooled connection
	EmptyReply   bool          // a failed exchange closes the client connection with no response; else 502

	// elb: a keep-alive pool filled on demand.
	IdleTimeout     time.Duration // the LB's own idle timeout for pooled backend connections
	MaxIdle         int           // idle connections kept per backend
	RetryIdempotent bool          // retry GET/HEAD once when the backend closed before responding
	HopByHop        string        // "correct" or "buggy" (see package doc)
	Aim             *Aim          // send reused-connection requests at the backend's idle timeout
}

// Aim makes the proxy send the next request on a pooled connection at
// last use + BackendIdle + Offset, holding the client's request until then.
type Aim struct {
	BackendIdle time.Duration
	Offset      time.Duration // may be negative
}

// Defaults returns the settings a profile gets for mode when it names no
// others.
func Defaults(mode string) Config {
	c := Config{
		Mode:              mode,
		Order:             "mru",
		Balance:           "round-robin",
		ConnectTimeout:    5 * time.Second,
		ResponseTimeout:   60 * time.Second,
		ClientIdleTimeout: 60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	switch mode {
	case ModeJuniperDX:
		// Pooled connections taken oldest first: traffic is spread over the
		// whole pool, so at a light load every one of them sits idle long.
		c.Order = "lru"
		c.PoolSize = 6 // the DX default (Launchpad bug 134274)
		c.WarmInterval = time.Second
		c.QueueTimeout = 60 * time.Second
		c.EmptyReply = true
	case ModeELB:
		c.IdleTimeout = 60 * time.Second // the Classic ELB default
		c.MaxIdle = 1024
		c.HopByHop = "correct"
	}
	return c
}

// FromProfile decodes the `proxy:` section of profile p.
func FromProfile(p *profiles.Profile) (*Config, error) {
	if p.Proxy == nil {
		return nil, &profiles.Error{File: p.File, Err: fmt.Errorf("profile %s has no proxy: section (built-ins with one: %s, %s)", p.Name, ModeJuniperDX, ModeELB)}
	}
	return Decode(p.File, p.Proxy)
}

// field is one key of the proxy mapping: the mode it belongs to ("" for
// both) and how its value is set.
type field struct {
	name string
	mode string
	set  func(c *Config, n *yaml.Node) error
}

var fields = []field{
	{"mode", "", nil}, // decoded first
	{"order", "", func(c *Config, n *yaml.Node) error { return enum(&c.Order, n, "mru", "lru") }},
	{"check_before_reuse", "", func(c *Config, n *yaml.Node) error { return boolean(&c.CheckBeforeReuse, n) }},
	{"balance", "", func(c *Config, n *yaml.Node) error { return enum(&c.Balance, n, "round-robin", "random") }},
	{"connect_timeout", "", positive(func(c *Config) *time.Duration { return &c.ConnectTimeout })},
	{"response_timeout", "", positive(func(c *Config) *time.Duration { return &c.ResponseTimeout })},
	{"client_idle_timeout", "", positive(func(c *Config) *time.Duration { return &c.ClientIdleTimeout })},
	{"max_header_bytes", "", func(c *Config, n *yaml.Node) error { return size(&c.MaxHeaderBytes, n, 1<<10, 1<<20) }},
	{"pool_size", ModeJuniperDX, func(c *Config, n *yaml.Node) error { return integer(&c.PoolSize, n, 1, 1000) }},
	{"min_idle", ModeJuniperDX, func(c *Config, n *yaml.Node) error { return duration(&c.MinIdle, n, false) }},
	{"warm_interval", ModeJuniperDX, func(c *Config, n *yaml.Node) error { return duration(&c.WarmInterval, n, false) }},
	{"queue_timeout", ModeJuniperDX, positive(func(c *Config) *time.Duration { return &c.QueueTimeout })},
	{"empty_reply", ModeJuniperDX, func(c *Config, n *yaml.Node) error { return boolean(&c.EmptyReply, n) }},
	{"idle_timeout", ModeELB, positive(func(c *Config) *time.Duration { return &c.IdleTimeout })},
	{"max_idle", ModeELB, func(c *Config, n *yaml.Node) error { return integer(&c.MaxIdle, n, 1, 1<<20) }},
	{"retry_idempotent", ModeELB, func(c *Config, n *yaml.Node) error { return boolean(&c.RetryIdempotent, n) }},
	{"hop_by_hop", ModeELB, func(c *Config, n *yaml.Node) error { return enum(&c.HopByHop, n, "correct", "buggy") }},
	{"aim_at_idle_timeout", ModeELB, decodeAim},
}

func fieldNames(mode string) []string {
	var out []string
	for _, f := range fields {
		if f.mode == "" || f.mode == mode {
			out = append(out, f.name)
		}
	}
	return out
}

// Decode decodes and validates a `proxy:` mapping; file names it in errors,
// which read "FILE:LINE: proxy: KEY: what is wrong".
func Decode(file string, n *yaml.Node) (*Config, error) {
	fail := func(line int, path string, err error) error {
		return &profiles.Error{File: file, Line: line, Path: strings.TrimSuffix("proxy: "+path, ": "), Err: err}
	}
	n = yamlnode.Deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		line := 0
		if n != nil {
			line = n.Line
		}
		return nil, fail(line, "", errors.New("expected a mapping with at least mode: juniper-dx or mode: elb"))
	}
	kvs, lerr := yamlnode.Pairs(n)
	if lerr != nil {
		return nil, fail(lerr.Line, "", lerr.Err)
	}
	var c Config
	var modeSet bool
	for _, kv := range kvs {
		if kv.Key == "mode" {
			var m string
			if err := enum(&m, kv.Val, ModeJuniperDX, ModeELB); err != nil {
				return nil, fail(kv.ValLine(), "mode", err)
			}
			c, modeSet = Defaults(m), true
		}
	}
	if !modeSet {
		return nil, fail(n.Line, "", errors.New("mode is missing (juniper-dx or elb)"))
	}
	lines := map[string]int{}
	for _, kv := range kvs {
		lines[kv.Key] = kv.Line
		if kv.Key == "mode" {
			continue
		}
		f, ok := lookupField(kv.Key)
		switch {
		case !ok:
			return nil, fail(kv.Line, "", unknownKey(kv.Key, fieldNames(c.Mode)))
		case f.mode != "" && f.mode != c.Mode:
			return nil, fail(kv.Line, kv.Key, fmt.Errorf("applies to mode %s only (this profile's mode is %s)", f.mode, c.Mode))
		}
		if err := f.set(&c, kv.Val); err != nil {
			var le *lineErr
			if errors.As(err, &le) {
				return nil, fail(le.line, kv.Key+": "+le.path, le.err)
			}
			return nil, fail(kv.ValLine(), kv.Key, err)
		}
	}
	if c.Mode == ModeJuniperDX && c.QueueTimeout <= c.MinIdle {
		key := "queue_timeout"
		if _, ok := lines[key]; !ok {
			key = "min_idle"
		}
		return nil, fail(lines[key], key, fmt.Errorf("queue_timeout (%v) must be longer than min_idle (%v): a request waits for a connection to become usable", c.QueueTimeout, c.MinIdle))
	}
	return &c, nil
}

func lookupField(name string) (field, bool) {
	for _, f := range fields {
		if f.name == name && f.set != nil {
			return f, true
		}
	}
	return field{}, false
}

// decodeAim decodes aim_at_idle_timeout: {backend_idle: D, offset: D}.
func decodeAim(c *Config, n *yaml.Node) error {
	n = yamlnode.Deref(n)
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("expected a mapping {backend_idle: 1s, offset: 5ms}, found %s", yamlnode.Describe(n))
	}
	kvs, lerr := yamlnode.Pairs(n)
	if lerr != nil {
		return &lineErr{line: lerr.Line, err: lerr.Err}
	}
	a := &Aim{}
	var hasIdle bool
	for _, kv := range kvs {
		var err error
		switch kv.Key {
		case "backend_idle":
			hasIdle = true
			if err = duration(&a.BackendIdle, kv.Val, false); err == nil && a.BackendIdle <= 0 {
				err = errors.New("must be more than 0")
			}
		case "offset":
			err = duration(&a.Offset, kv.Val, true)
		default:
			return &lineErr{line: kv.Line, err: unknownKey(kv.Key, []string{"backend_idle", "offset"})}
		}
		if err != nil {
			return &lineErr{line: kv.ValLine(), path: kv.Key, err: err}
		}
	}
	if !hasIdle {
		return &lineErr{line: n.Line, err: errors.New("backend_idle is missing (the backend's idle timeout, e.g. 1s)")}
	}
	if a.BackendIdle+a.Offset <= 0 {
		return &lineErr{line: n.Line, path: "offset", err: fmt.Errorf("%v makes the aim point %v, not after the last use", a.Offset, a.BackendIdle+a.Offset)}
	}
	c.Aim = a
	return nil
}

// lineErr is an error about a node inside a field's value.
type lineErr struct {
	line int
	path string
	err  error
}

func (e *lineErr) Error() string { return e.err.Error() }

func (e *lineErr) at(file string) error {
	return &profiles.Error{File: file, Line: e.line, Path: "proxy", Err: e.err}
}

// positive sets a duration that must be more than 0.
func positive(get func(*Config) *time.Duration) func(*Config, *yaml.Node) error {
	return func(c *Config, n *yaml.Node) error {
		if err := duration(get(c), n, false); err != nil {
			return err
		}
		if *get(c) <= 0 {
			return errors.New("must be more than 0")
		}
		return nil
	}
}

func scalar(n *yaml.Node, want string) (string, error) {
	n = yamlnode.Deref(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return "", fmt.Errorf("expected %s, found %s", want, yamlnode.Describe(n))
	}
	return strings.TrimSpace(n.Value), nil
}

func duration(d *time.Duration, n *yaml.Node, negOK bool) error {
	s, err := scalar(n, "a duration such as 300ms or 1.5s")
	if err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s is not a duration such as 300ms or 1.5s", yamlnode.Quote(s))
	}
	if v < 0 && !negOK {
		return fmt.Errorf("%s is negative", yamlnode.Quote(s))
	}
	*d = v
	return nil
}

func boolean(b *bool, n *yaml.Node) error {
	n = yamlnode.Deref(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return fmt.Errorf("expected true or false, found %s", yamlnode.Describe(n))
	}
	return n.Decode(b)
}

func integer(i *int, n *yaml.Node, lo, hi int) error {
	n = yamlnode.Deref(n)
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		return fmt.Errorf("expected a whole number from %d to %d, found %s", lo, hi, yamlnode.Describe(n))
	}
	if v < lo || v > hi {
		return fmt.Errorf("%d is out of range (%d to %d)", v, lo, hi)
	}
	*i = v
	return nil
}

func size(i *int, n *yaml.Node, lo, hi int) error {
	s, err := scalar(n, "a size such as 64kib")
	if err != nil {
		return err
	}
	var z units.Size
	if err := z.UnmarshalText([]byte(s)); err != nil {
		return err
	}
	if int(z) < lo || int(z) > hi {
		return fmt.Errorf("%s is out of range (%d to %d bytes)", s, lo, hi)
	}
	*i = int(z)
	return nil
}

func enum(s *string, n *yaml.Node, choices ...string) error {
	want := "one of " + strings.Join(choices, ", ")
	v, err := scalar(n, want)
	if err != nil {
		return err
	}
	for _, c := range choices {
		if v == c {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("%s is not %s", yamlnode.Quote(v), want)
}

func unknownKey(key string, known []string) error {
	return fmt.Errorf("unknown key %s (known: %s)", yamlnode.Quote(key), strings.Join(known, ", "))
}
