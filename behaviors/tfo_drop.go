package behaviors

import (
	"strings"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// TFODrop (registered as "tfo-drop") drops TCP Fast Open SYNs (RFC 7413),
// as firewalls do that take data on a SYN, or an option they do not know,
// for an attack: drop lists what marks a SYN for it, data (the SYN carries
// payload: the default) and option (it carries a Fast Open option, cookie
// requests too). With flow, the box also remembers the connection as bad
// and drops every later packet of it, its plain SYN retransmissions
// included.
type TFODrop struct {
	Drop []string `param:"drop" values:"data|option" help:"what marks a client's SYN to drop: data (it carries payload), option (it carries a Fast Open option, cookie requests too)"`
	Flow bool     `param:"flow" help:"also drop every later packet of a connection whose SYN was dropped, its plain SYN retransmissions included"`

	data, option bool

	dropped, flowDropped uint64
}

type tfoFlow struct {
	bad bool
	isn uint32 // of the SYN that marked it, to tell a new connection
}

func (t *TFODrop) Validate() error {
	t.data, t.option = false, false
	if len(t.Drop) == 0 {
		return Errorf("drop", "needs at least one of data, option")
	}
	for _, d := range t.Drop {
		switch strings.ToLower(d) {
		case "data":
			t.data = true
		case "option":
			t.option = true
		default:
			return Errorf("drop", "%q is not data or option", d)
		}
	}
	return nil
}

func (t *TFODrop) Handle(p *Packet) Verdict {
	if !p.IsTCP() {
		return Pass
	}
	syn := p.From == flow.Client && p.Flags&(packet.SYN|packet.ACK) == packet.SYN
	var st *tfoFlow
	if t.Flow {
		st = FlowState[tfoFlow](p)
	}
	if syn && (t.data && p.PayloadLen() > 0 || t.option && p.HasFastOpen()) {
		t.dropped++
		if st != nil {
			st.bad, st.isn = true, p.Seq
		}
		p.Note = "tfo-drop: Fast Open SYN dropped"
		return Drop
	}
	if st == nil || !st.bad {
		return Pass
	}
	if syn && p.Seq != st.isn {
		st.bad = false // a new connection on the same tuple
		return Pass
	}
	t.flowDropped++
	p.Note = "tfo-drop: flow of a Fast Open SYN dropped"
	return Drop
}

func (t *TFODrop) Stats() map[string]uint64 {
	return map[string]uint64{"syns_dropped": t.dropped, "flow_dropped": t.flowDropped}
}

func init() {
	Register("tfo-drop", "drop TCP Fast Open SYNs (with data, or with the option), and with flow the rest of their connection",
		func() Behavior { return &TFODrop{Drop: []string{"data"}} })
}
