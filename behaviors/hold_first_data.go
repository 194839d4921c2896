package behaviors

import (
	"time"

	"github.com/faultbox/faultbox/internal/flow"
)

// HoldFirstData (registered as "hold-first-data") holds the client's first
// data segment of each flow for Hold: the client opened the connection long
// before it had a request (a load balancer's idle pool,
// docs/field-failures.md#juniper-dx-defer-accept). Client segments that
// occupy sequence space (data, FIN) arriving while it is held leave with
// it, in order, so a retransmission cannot deliver the request early.
//
//	behaviors:
//	  - type: hold-first-data
//	    hold: 40s
type HoldFirstData struct {
	Hold time.Duration `param:"hold" help:"how long the client's first data segment of each flow is held (required)"`

	held uint64
}

type holdFlow struct {
	started bool
	release int64
}

func (h *HoldFirstData) Validate() error {
	if h.Hold <= 0 {
		return Errorf("hold", "is required and must be positive")
	}
	return nil
}

// PerSegment: holds the first data segment, not an offloaded burst.
func (*HoldFirstData) PerSegment() bool { return true }

func (h *HoldFirstData) Handle(p *Packet) Verdict {
	if p.From != flow.Client || p.SeqLen() == 0 {
		return Pass
	}
	st := FlowState[holdFlow](p)
	if st == nil {
		return Pass
	}
	if !st.started {
		if p.PayloadLen() == 0 {
			return Pass // a SYN or a FIN without data: not the request
		}
		st.started, st.release = true, p.Depart+int64(h.Hold)
		h.held++
	}
	if p.Depart < st.release {
		p.Depart = st.release
	}
	return Pass
}

func (h *HoldFirstData) Stats() map[string]uint64 { return map[string]uint64{"flows_held": h.held} }

func (h *HoldFirstData) Waiting() Wait {
	return Wait{For: "flows with client data", Seen: h.held}
}

func init() {
	Register("hold-first-data", "hold the client's first data segment of each flow for a while",
		func() Behavior { return &HoldFirstData{} })
}
