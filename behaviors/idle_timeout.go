package behaviors

import (
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// IdleTimeout (registered as "idle-timeout") expires a flow's state after
// Timeout without packets, as NAT gateways, firewalls and load balancers
// do (AWS NAT gateway: 350 s; Azure Load Balancer: 4 min by default). The
// expiry is noticed by the first packet after the silence (behaviors run no
// timers; the real devices also act only when the flow speaks again):
//
//   - mode silent drops that packet and every later one of the flow (the
//     Azure default; the connection hangs until the endpoints time out);
//   - mode rst drops them too, but answers each with RSTs to rst_to
//     (client, server or both) carrying the receiver's exact RCV.NXT, so
//     the endpoints learn at once (AWS NAT: RST to the side inside; Azure
//     "TCP reset on idle": both).
//
// A new SYN from the client on the same tuple starts a new flow. Silence is
// measured between packets this behavior sees, so match both directions.
type IdleTimeout struct {
	Timeout time.Duration `param:"timeout" help:"the silence after which the device forgets the flow (required)"`
	Mode    string        `param:"mode" values:"silent|rst" default:"silent" help:"silent: drop the flow's later packets; rst: drop them and answer each with RSTs"`
	RSTTo   string        `param:"rst_to" values:"client|server|both" default:"both" help:"mode rst only: which ends get the RSTs"`

	trig               Trigger
	rst                bool
	toClient, toServer bool

	expired, dropped, rstInjected uint64
}

type idleFlow struct {
	trig TriggerState
	rcv  [2]uint32 // each side's RCV.NXT, frozen at expiry (nothing passes afterwards)
}

func (i *IdleTimeout) Validate() error {
	if i.Timeout <= 0 {
		return Errorf("timeout", "must be positive")
	}
	switch strings.ToLower(i.Mode) {
	case "", "silent":
		i.rst = false
	case "rst":
		i.rst = true
	default:
		return Errorf("mode", "%q is not silent or rst", i.Mode)
	}
	var err error
	if i.toClient, i.toServer, err = parseSides("rst_to", i.RSTTo); err != nil {
		return err
	}
	if !i.rst && i.RSTTo != "" {
		return Errorf("rst_to", "is only used with mode: rst")
	}
	i.trig = Trigger{Kind: "idle", After: i.Timeout}
	return i.trig.Validate()
}

// PerSegment: the RSTs need the exact sequence state of every segment.
func (*IdleTimeout) PerSegment() bool { return true }

func (i *IdleTimeout) Handle(p *Packet) Verdict {
	st := FlowState[idleFlow](p)
	if st == nil {
		return Pass
	}
	if p.From == flow.Client && p.Flags&(packet.SYN|packet.ACK) == packet.SYN {
		*st = idleFlow{} // a new connection: new state in the device
	}
	if !st.trig.Fired() {
		if !i.trig.Fires(p, &st.trig) {
			return Pass
		}
		i.expired++
		st.rcv[flow.Client] = rcvNxt(p, flow.Client, true)
		st.rcv[flow.Server] = rcvNxt(p, flow.Server, true)
		p.Event("idle-timeout: flow expired")
	}
	i.dropped++
	p.Note = "idle-timeout: flow expired"
	if i.rst && p.Flags&packet.RST == 0 { // never answer a RST with a RST
		c, s := st.rcv[flow.Client], st.rcv[flow.Server]
		if i.toServer {
			p.InjectTCP(flow.Client, s, c, packet.RST|packet.ACK, p.Depart, "idle-timeout: rst to server")
			i.rstInjected++
		}
		if i.toClient {
			p.InjectTCP(flow.Server, c, s, packet.RST|packet.ACK, p.Depart, "idle-timeout: rst to client")
			i.rstInjected++
		}
	}
	return Drop
}

func (i *IdleTimeout) Stats() map[string]uint64 {
	return map[string]uint64{"flows_expired": i.expired, "dropped": i.dropped, "rst_injected": i.rstInjected}
}

func init() {
	Register("idle-timeout", "expire a flow after an idle timeout: drop its later packets silently or answer them with RSTs",
		func() Behavior { return &IdleTimeout{Timeout: 350 * time.Second, Mode: "silent"} })
}
