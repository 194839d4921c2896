package behaviors

import (
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
)

// IdleTimeout (registered as "idle-timeout") expires a flow's state after
// Timeout without packets, as NAT gateways, firewalls and load balancers
// do (AWS NLB and NAT gateway: 350 s; Azure Load Balancer: 4 min by
// default; Google Cloud NAT: 20 min). The expiry is noticed by the first
// packet after the silence (behaviors run no timers), which is also when
// AWS and Google devices act; Azure's "TCP reset on idle" sends its RSTs
// at the timeout itself, which differs only for a connection that never
// speaks again (its sockets stay until their own timeouts here).
//
//   - mode silent drops that packet and every later one of the flow (Azure
//     and Google Cloud NAT by default; the connection hangs until the
//     endpoints time out);
//   - mode rst drops them too, but answers each with RSTs carrying the
//     receiver's exact RCV.NXT, so the endpoints learn at once: rst_to
//     client, server or both (Azure "TCP reset on idle": both), or sender,
//     the side whose packet found the flow gone (AWS NLB, NAT gateway).
//
// transitory_timeout, if set, is the idle timeout of a flow that is not
// established: its handshake has not completed, or a FIN or RST was seen
// (Google Cloud NAT: 30 s against 20 min). The silence counts with the
// state the flow was in when it began.
//
// A new SYN from the client on the same tuple starts a new flow. Silence is
// measured between packets this behavior sees, so match both directions.
type IdleTimeout struct {
	Timeout           time.Duration `param:"timeout" help:"the silence after which the device forgets the flow (required)"`
	TransitoryTimeout time.Duration `param:"transitory_timeout" help:"the same for a flow not established: handshake incomplete, or after a FIN or RST (0: timeout)"`
	Mode              string        `param:"mode" values:"silent|rst" default:"silent" help:"silent: drop the flow's later packets; rst: drop them and answer each with RSTs"`
	RSTTo             string        `param:"rst_to" values:"client|server|both|sender" default:"both" help:"mode rst only: which ends get the RSTs; sender: the side whose packet found the flow gone"`

	rst                        bool
	toClient, toServer, sender bool

	expired, dropped, rstInjected uint64
}

type idleFlow struct {
	seen    bool
	expired bool
	last    int64      // arrival of the previous packet
	state   flow.State // the flow's state after it: the state the silence is in
	rcv     [2]uint32  // each side's RCV.NXT, frozen at expiry (nothing passes afterwards)
}

func (i *IdleTimeout) Validate() error {
	if i.Timeout <= 0 {
		return Errorf("timeout", "must be positive")
	}
	if i.TransitoryTimeout < 0 {
		return Errorf("transitory_timeout", "%v is negative", i.TransitoryTimeout)
	}
	switch strings.ToLower(i.Mode) {
	case "", "silent":
		i.rst = false
	case "rst":
		i.rst = true
	default:
		return Errorf("mode", "%q is not silent or rst", i.Mode)
	}
	if !i.rst && i.RSTTo != "" {
		return Errorf("rst_to", "is only used with mode: rst")
	}
	i.sender = strings.EqualFold(i.RSTTo, "sender")
	if i.sender {
		i.toClient, i.toServer = false, false
		return nil
	}
	var err error
	if i.toClient, i.toServer, err = parseSides("rst_to", i.RSTTo); err != nil {
		return Errorf("rst_to", "%q is not client, server, both or sender", i.RSTTo)
	}
	return nil
}

// PerSegment: the RSTs need the exact sequence state of every segment.
func (*IdleTimeout) PerSegment() bool { return true }

// limit is the idle timeout of a flow in state s.
func (i *IdleTimeout) limit(s flow.State) int64 {
	if i.TransitoryTimeout > 0 && s != flow.Established {
		return int64(i.TransitoryTimeout)
	}
	return int64(i.Timeout)
}

func (i *IdleTimeout) Handle(p *Packet) Verdict {
	st := FlowState[idleFlow](p)
	if st == nil {
		return Pass
	}
	if p.From == flow.Client && p.Flags&(packet.SYN|packet.ACK) == packet.SYN {
		*st = idleFlow{} // a new connection: new state in the device
	}
	if !st.expired {
		silent := st.seen && p.Now-st.last >= i.limit(st.state)
		st.seen, st.last, st.state = true, p.Now, p.Flow.State
		if !silent {
			return Pass
		}
		st.expired = true
		i.expired++
		st.rcv[flow.Client] = rcvNxt(p, flow.Client, true)
		st.rcv[flow.Server] = rcvNxt(p, flow.Server, true)
		p.Event("idle-timeout: flow expired")
	}
	i.dropped++
	p.Note = "idle-timeout: flow expired"
	if i.rst && p.Flags&packet.RST == 0 { // never answer a RST with a RST
		c, s := st.rcv[flow.Client], st.rcv[flow.Server]
		if i.toServer || i.sender && p.From == flow.Server {
			p.InjectTCP(flow.Client, s, c, packet.RST|packet.ACK, p.Depart, "idle-timeout: rst to server")
			i.rstInjected++
		}
		if i.toClient || i.sender && p.From == flow.Client {
			p.InjectTCP(flow.Server, c, s, packet.RST|packet.ACK, p.Depart, "idle-timeout: rst to client")
			i.rstInjected++
		}
	}
	return Drop
}

func (i *IdleTimeout) Stats() map[string]uint64 {
	return map[string]uint64{"flows_expired": i.expired, "dropped": i.dropped, "rst_injected": i.rstInjected}
}

func (i *IdleTimeout) Waiting() Wait {
	return Wait{For: "flows idle for " + i.Timeout.String(), Seen: i.expired}
}

func init() {
	Register("idle-timeout", "expire a flow after an idle timeout (shorter while not established): drop its later packets silently or answer them with RSTs",
		func() Behavior { return &IdleTimeout{Timeout: 350 * time.Second, Mode: "silent"} })
}
