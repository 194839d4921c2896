// Package control is what every device (lab, attach, run) offers its
// control API, whatever its ports are: the running profile and its chain,
// changed whole or one behavior at a time, the flow table, the event log
// and the capture. It speaks in the API's types (package client) and
// knows nothing of HTTP.
package control

import (
	"errors"
	"fmt"
	"io"
	"log"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/profiles"
)

// Kind says how a request failed, for the API's status codes.
type Kind uint8

const (
	BadRequest Kind = iota + 1
	NotFound
	Conflict           // the name is taken, a capture runs, another change is under way
	PreconditionFailed // the profile's version is not the one the request named
	Forbidden
)

// Error is a refused request.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func refuse(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}

// KindOf returns how err failed: a *Error's kind, BadRequest for a profile
// error, 0 for anything else (the device's own failure).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var pe *profiles.Error
	if errors.As(err, &pe) {
		return BadRequest
	}
	return 0
}

// Config is what a device hands its controller.
type Config struct {
	Engine *engine.Engine
	// Resolve turns host names in matches into addresses (the lab's
	// hosts); nil: profiles.DefaultResolver.
	Resolve behaviors.Resolver
	// Applied, if not nil, is told of every profile applied, to keep it
	// where the device keeps its state. It runs with changes held off.
	Applied func(source string, seed uint64)
	Log     *log.Logger
}

// Controller serves one device's engine. Its methods are safe for
// concurrent use; changes to the profile and chain happen one at a time.
type Controller struct {
	cfg Config

	// change is held for the whole of a change, from checking the request
	// to installing the chain: a profile is never half-applied, and two
	// changes never interleave.
	change sync.Mutex

	mu      sync.Mutex // guards what follows
	profile *profiles.Profile
	specs   []*profiles.Spec // the running chain's, in order
	source  string
	seed    uint64
	version uint64
	edited  bool
	capture *captureRun

	wallOffset int64 // wall clock minus engine clock, ns
}

// New returns a controller of cfg.Engine. Until Apply, the engine runs
// the chain it has (a new engine: passthrough) and Profile reports the
// passthrough profile.
func New(cfg Config) *Controller {
	if cfg.Resolve == nil {
		cfg.Resolve = profiles.DefaultResolver
	}
	if cfg.Log == nil {
		cfg.Log = log.New(io.Discard, "", 0)
	}
	p, err := profiles.Load("passthrough")
	if err != nil {
		panic("control: the built-in passthrough profile does not load: " + err.Error())
	}
	return &Controller{cfg: cfg, profile: p, source: "passthrough", wallOffset: time.Now().UnixNano() - engine.Monotonic()}
}

// ApplyRequest is a profile to apply.
type ApplyRequest struct {
	Profile *profiles.Profile
	Source  string  // where it came from: a built-in's name or a file
	Seed    *uint64 // the run's seed if given; else the profile's, else the current one
	// IfVersion, when not 0, applies only if the profile's version is
	// still this one.
	IfVersion uint64
	// Wait, when false, refuses the change (Conflict) if another one is
	// under way instead of waiting for it: a PUT of a whole profile that
	// races another should learn that it did.
	Wait bool
	// Fresh starts every count over (engine.Reset): for a device's first
	// profile, after its own start-up traffic.
	Fresh bool
}

// Apply replaces the running chain with the profile's. Flows and packets
// in delay lines are kept; per-flow behavior state starts over.
func (c *Controller) Apply(r ApplyRequest) (client.Profile, error) {
	if !r.Wait {
		if !c.change.TryLock() {
			return client.Profile{}, refuse(Conflict, "another change to the profile is under way; retry, or read the profile first and send its version in If-Match")
		}
	} else {
		c.change.Lock()
	}
	defer c.change.Unlock()
	if err := c.checkVersion(r.IfVersion); err != nil {
		return client.Profile{}, err
	}
	c.mu.Lock()
	seed := c.seed
	c.mu.Unlock()
	switch {
	case r.Seed != nil:
		seed = *r.Seed
	case r.Profile.Seed != nil:
		seed = *r.Profile.Seed
	}
	chain, err := r.Profile.Chain(seed, c.cfg.Resolve)
	if err != nil {
		return client.Profile{}, err
	}
	if r.Fresh {
		c.cfg.Engine.Reset(chain)
	} else {
		c.cfg.Engine.SetChain(chain)
	}
	specs := make([]*profiles.Spec, len(r.Profile.Behaviors))
	for i := range r.Profile.Behaviors {
		specs[i] = &r.Profile.Behaviors[i]
	}
	c.mu.Lock()
	c.profile, c.specs, c.source, c.seed, c.edited = r.Profile, specs, r.Source, seed, false
	c.version++
	c.mu.Unlock()
	if c.cfg.Applied != nil {
		c.cfg.Applied(r.Source, seed)
	}
	c.cfg.Log.Printf("applied profile %s (%s), seed %d", r.Profile.Name, r.Source, seed)
	return c.Profile()
}

// checkVersion refuses a change made against another version (0: any).
func (c *Controller) checkVersion(want uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if want != 0 && want != c.version {
		return refuse(PreconditionFailed, "the profile is at version %d, not %d: it changed since it was read", c.version, want)
	}
	return nil
}

// Profile returns the running profile: as applied, or as behavior edits
// have made it.
func (c *Controller) Profile() (client.Profile, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := client.Profile{Name: c.profile.Name, Source: c.source, Seed: c.seed, Version: c.version, Edited: c.edited, YAML: string(c.profile.YAML)}
	if c.edited {
		doc, err := c.profile.Document(c.specs)
		if err != nil {
			return client.Profile{}, err
		}
		p.YAML = string(doc)
	}
	return p, nil
}

// Version is the running profile's version.
func (c *Controller) Version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Source is where the running profile came from.
func (c *Controller) Source() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.source
}

// Behaviors returns the running chain's behaviors with their counters.
func (c *Controller) Behaviors() []client.Behavior {
	_, _, entries := c.cfg.Engine.ChainStatus()
	out := make([]client.Behavior, len(entries))
	for i, e := range entries {
		out[i] = behaviorOf(e)
	}
	return out
}

// Behavior returns the behavior called name.
func (c *Controller) Behavior(name string) (client.Behavior, error) {
	for _, b := range c.Behaviors() {
		if b.Name == name {
			return b, nil
		}
	}
	return client.Behavior{}, c.notFound(name)
}

func (c *Controller) notFound(name string) error {
	var names []string
	for _, b := range c.Behaviors() {
		names = append(names, strconv.Quote(b.Name))
	}
	if len(names) == 0 {
		return refuse(NotFound, "no behavior called %q: the chain is empty", name)
	}
	return refuse(NotFound, "no behavior called %q (the chain has %s)", name, strings.Join(names, ", "))
}

// EditRequest is a change to one behavior of the running chain.
type EditRequest struct {
	File      string // names the request in errors ("request")
	Body      []byte // the behavior (add) or the keys to set (patch), YAML or JSON
	Index     int    // add: the position it takes; -1 appends
	IfVersion uint64
}

// AddBehavior adds one behavior to the running chain. The others keep
// their counters and their state in every flow.
func (c *Controller) AddBehavior(r EditRequest) (client.Behavior, error) {
	c.change.Lock()
	defer c.change.Unlock()
	if err := c.checkVersion(r.IfVersion); err != nil {
		return client.Behavior{}, err
	}
	spec, err := profiles.ParseBehavior(r.File, r.Body)
	if err != nil {
		return client.Behavior{}, err
	}
	entry, err := spec.Entry(r.File, c.cfg.Resolve)
	if err != nil {
		return client.Behavior{}, err
	}
	var at int
	err = c.cfg.Engine.EditChain(func(ch *behaviors.Chain) (*behaviors.Chain, error) {
		if r.Index > len(ch.Entries) {
			return nil, refuse(BadRequest, "index %d is past the end of the chain (%d behaviors)", r.Index, len(ch.Entries))
		}
		if entry.Name != "" && ch.Lookup(entry.Name) != nil {
			return nil, refuse(Conflict, "the chain already has a behavior called %q; PATCH it, or DELETE it first", entry.Name)
		}
		n, err := ch.With(entry, r.Index)
		if err != nil {
			return nil, refuse(BadRequest, "%v", err)
		}
		at = slices.Index(n.Entries, entry)
		return n, nil
	})
	if err != nil {
		return client.Behavior{}, err
	}
	spec.Name = entry.Name // With named it if the request did not
	c.mu.Lock()
	c.specs = slices.Insert(c.specs, at, spec)
	c.changed()
	c.mu.Unlock()
	c.cfg.Log.Printf("added behavior %s (%s) at %d", entry.Name, entry.Type, at)
	return behaviorOf(entry.Status()), nil
}

// PatchBehavior sets some of a running behavior's parameters, or its
// match. It keeps the behavior's counters, its own state (a delay's
// queue, a rate's backlog) and its state in every flow.
func (c *Controller) PatchBehavior(name string, r EditRequest) (client.Behavior, error) {
	c.change.Lock()
	defer c.change.Unlock()
	if err := c.checkVersion(r.IfVersion); err != nil {
		return client.Behavior{}, err
	}
	c.mu.Lock()
	i := slices.IndexFunc(c.specs, func(s *profiles.Spec) bool { return s.Name == name })
	var old *profiles.Spec
	if i >= 0 {
		old = c.specs[i]
	}
	c.mu.Unlock()
	if old == nil {
		return client.Behavior{}, c.notFound(name)
	}
	// Edits are serialised by c.change: i stays old's place.
	spec, err := old.Patch(r.File, r.Body)
	if err != nil {
		return client.Behavior{}, err
	}
	// A fresh entry checks the new parameters and compiles the match
	// before anything changes; the running behavior then takes them.
	fresh, err := spec.Entry(r.File, c.cfg.Resolve)
	if err != nil {
		return client.Behavior{}, err
	}
	var st behaviors.EntryStatus
	err = c.cfg.Engine.EditChain(func(ch *behaviors.Chain) (*behaviors.Chain, error) {
		// Changes are serialised: the chain has what the specs have.
		e := ch.Lookup(name)
		if err := spec.Update(e.Behavior); err != nil {
			return nil, err
		}
		e.Match = fresh.Match
		st = e.Status()
		return ch, nil
	})
	if err != nil {
		return client.Behavior{}, err
	}
	c.mu.Lock()
	c.specs[i] = spec
	c.changed()
	c.mu.Unlock()
	c.cfg.Log.Printf("patched behavior %s: %s", name, oneLine(r.Body))
	return behaviorOf(st), nil
}

// RemoveBehavior takes a behavior out of the running chain. What it
// delayed leaves on time; the others keep their state.
func (c *Controller) RemoveBehavior(name string, ifVersion uint64) error {
	c.change.Lock()
	defer c.change.Unlock()
	if err := c.checkVersion(ifVersion); err != nil {
		return err
	}
	if !c.has(name) {
		return c.notFound(name)
	}
	err := c.cfg.Engine.EditChain(func(ch *behaviors.Chain) (*behaviors.Chain, error) {
		n, _, err := ch.Without(name)
		return n, err
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.specs = slices.DeleteFunc(c.specs, func(s *profiles.Spec) bool { return s.Name == name })
	c.changed()
	c.mu.Unlock()
	c.cfg.Log.Printf("removed behavior %s", name)
	return nil
}

// has reports whether the running chain has a behavior called name.
func (c *Controller) has(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.specs, func(s *profiles.Spec) bool { return s.Name == name })
}

// changed records a behavior edit (c.mu held).
func (c *Controller) changed() {
	c.version++
	c.edited = true
}

func behaviorOf(e behaviors.EntryStatus) client.Behavior {
	b := client.Behavior{Name: e.Name, Type: e.Type, Match: e.Match, Extra: e.Extra,
		Counters: client.BehaviorCounters(e.Counters)}
	if e.Waits != nil {
		b.Waits = &client.Wait{For: e.Waits.For, Seen: e.Waits.Seen, Note: e.Waits.Note}
	}
	return b
}

// oneLine is a request body for the log: on one line, and not too long.
func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
