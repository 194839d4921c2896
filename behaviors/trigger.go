package behaviors

import (
	"regexp"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/units"
)

// Trigger is the moment at which a stateful behavior acts on a flow. It is
// shared by vanish and reset; behaviors embed it, so its
// parameters sit flat in the profile beside theirs:
//
//	trigger: bytes         # which kind, see below
//	after_bytes: 10kb      # bytes: payload bytes seen in the flow
//	direction: upstream    # bytes, regex: which way they travel (default both)
//
//	trigger: idle          # idle: after T without packets; time: T after the flow began
//	after: 5s
//
//	trigger: regex         # on the first payload of the flow (in direction)
//	pattern: "^POST"
//
// The flow-state kinds need no parameter: client-acked-server-fin (the
// client has acknowledged the server's FIN: the server sits in FIN_WAIT_2),
// server-fin, client-fin, client-rst.
//
// A trigger fires once per flow, on the first packet the behavior sees at
// which its condition holds; that packet is the trigger packet. Behaviors
// run no timers, so "idle" and "time" fire on the first packet of the flow
// that arrives after the time, never at the time itself: a flow that stays
// silent is acted upon when it next speaks, which is also when a real NAT or
// firewall finds out its state is gone. "idle" measures the silence between
// packets the behavior sees (its match), so give it a match in both
// directions.
type Trigger struct {
	Kind       string        `param:"trigger" values:"client-acked-server-fin|server-fin|client-fin|client-rst|bytes|idle|time|regex" help:"when the behavior acts on a flow: at a flow state, after payload bytes, after idle or elapsed time, or on a regex in the first payload"`
	AfterBytes units.Size    `param:"after_bytes" help:"trigger bytes: after this many payload bytes of the flow (in direction)"`
	After      time.Duration `param:"after" help:"trigger idle: after this long without packets; trigger time: this long after the flow began"`
	Pattern    string        `param:"pattern" help:"trigger regex: a Go regular expression matched against the flow's first payload (in direction)"`
	Direction  string        `param:"direction" values:"upstream|downstream|both" default:"both" help:"trigger bytes or regex: which way the payload travels"`

	kind triggerKind
	dir  Direction
	re   *regexp.Regexp
}

type triggerKind uint8

const (
	trigNone triggerKind = iota
	trigClientAckedServerFIN
	trigServerFIN
	trigClientFIN
	trigClientRST
	trigBytes
	trigIdle
	trigTime
	trigRegex
)

var triggerKinds = map[string]triggerKind{
	"client-acked-server-fin": trigClientAckedServerFIN,
	"server-fin":              trigServerFIN,
	"client-fin":              trigClientFIN,
	"client-rst":              trigClientRST,
	"bytes":                   trigBytes,
	"idle":                    trigIdle,
	"time":                    trigTime,
	"regex":                   trigRegex,
}

const triggerKindList = "client-acked-server-fin, server-fin, client-fin, client-rst, bytes, idle, time or regex"

// TriggerState is a trigger's per-flow state; behaviors keep one in their
// own per-flow state.
type TriggerState struct {
	fired   bool
	started bool
	last    int64 // arrival of the previous packet seen, for idle
}

// Fired reports whether the trigger has fired for this flow.
func (s *TriggerState) Fired() bool { return s.fired }

// Validate checks the trigger's parameters and compiles its pattern; the
// embedding behavior's Validate calls it. Parameters that the chosen kind
// does not use are errors, so that a typo in the kind does not go unseen.
func (t *Trigger) Validate() error {
	if t.Kind == "" {
		return Errorf("trigger", "is required: one of %s", triggerKindList)
	}
	k, ok := triggerKinds[strings.ToLower(t.Kind)]
	if !ok {
		return Errorf("trigger", "%q is not one of %s", t.Kind, triggerKindList)
	}
	t.kind = k
	if k == trigBytes {
		if t.AfterBytes == 0 {
			return Errorf("after_bytes", "is required and must be positive with trigger: bytes")
		}
	} else if t.AfterBytes != 0 {
		return Errorf("after_bytes", "is only used with trigger: bytes, not %s", t.Kind)
	}
	if k == trigIdle || k == trigTime {
		if t.After <= 0 {
			return Errorf("after", "is required and must be positive with trigger: %s", t.Kind)
		}
	} else if t.After != 0 {
		return Errorf("after", "is only used with trigger: idle or time, not %s", t.Kind)
	}
	if k == trigRegex {
		if t.Pattern == "" {
			return Errorf("pattern", "is required with trigger: regex")
		}
		re, err := regexp.Compile(t.Pattern)
		if err != nil {
			return Errorf("pattern", "%v", err)
		}
		t.re = re // compiled once; matching it allocates nothing
	} else if t.Pattern != "" {
		return Errorf("pattern", "is only used with trigger: regex, not %s", t.Kind)
	}
	var err error
	if t.dir, err = parseDirection("direction", t.Direction); err != nil {
		return err
	}
	if t.Direction != "" && k != trigBytes && k != trigRegex {
		return Errorf("direction", "is only used with trigger: bytes or regex, not %s", t.Kind)
	}
	return nil
}

// Fires reports whether p is the packet at which the trigger fires for its
// flow: true exactly once per flow. Afterwards st.Fired() is true. p must
// belong to a flow (p.Flow != nil).
func (t *Trigger) Fires(p *Packet, st *TriggerState) bool {
	if st.fired {
		return false
	}
	f := p.Flow
	prev, started := st.last, st.started
	st.last, st.started = p.Now, true
	var hit bool
	switch t.kind {
	case trigClientAckedServerFIN:
		hit = f.Ends[flow.Server].SawFIN && f.Ends[flow.Client].AckedFIN
	case trigServerFIN:
		hit = f.Ends[flow.Server].SawFIN
	case trigClientFIN:
		hit = f.Ends[flow.Client].SawFIN
	case trigClientRST:
		hit = f.Ends[flow.Client].SawRST
	case trigBytes:
		hit = t.bytes(f) >= uint64(t.AfterBytes)
	case trigIdle:
		hit = started && p.Now-prev >= int64(t.After)
	case trigTime:
		hit = p.Now-f.Created >= int64(t.After)
	case trigRegex:
		// The first payload in the direction is the segment that carries
		// all the bytes counted so far; retransmissions never qualify.
		n := p.PayloadLen()
		hit = n > 0 && t.dir.selects(p) && t.bytes(f) == uint64(n) && t.re.Match(p.Payload())
	}
	st.fired = hit
	return hit
}

// bytes is the payload the flow has carried in the trigger's direction
// (retransmissions included), counted by the flow table.
func (t *Trigger) bytes(f *flow.Flow) uint64 {
	switch t.dir {
	case Upstream:
		return f.Ends[flow.Client].Bytes
	case Downstream:
		return f.Ends[flow.Server].Bytes
	}
	return f.Ends[flow.Client].Bytes + f.Ends[flow.Server].Bytes
}
