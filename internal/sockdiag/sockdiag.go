// Package sockdiag reads the kernel's TCP sockets in a network namespace
// with netlink sock_diag (what `ss -tanoi` shows): state, addresses, queues,
// the pending timer, and struct tcp_info (rtt, rto, unacked, retransmits).
// Scenarios use it as evidence that "the server socket sits in CLOSE_WAIT
// with unacknowledged data until ...", sampled over time by a Sampler.
//
// Pure Go over golang.org/x/sys/unix: no cgo, no exec of ss.
package sockdiag

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// State is a kernel TCP state (include/net/tcp_states.h).
type State uint8

// TCP states, with the kernel's numbers.
const (
	Established State = 1 + iota
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
)

// stateNames are ss's names, except Close: ss prints "UNCONN" (its UDP
// word); for TCP the state is CLOSE.
var stateNames = [...]string{
	Established: "ESTAB", SynSent: "SYN-SENT", SynRecv: "SYN-RECV",
	FinWait1: "FIN-WAIT-1", FinWait2: "FIN-WAIT-2", TimeWait: "TIME-WAIT",
	Close: "CLOSE", CloseWait: "CLOSE-WAIT", LastAck: "LAST-ACK",
	Listen: "LISTEN", Closing: "CLOSING",
}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE-%d", uint8(s))
}

// MarshalText makes JSON show the ss name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n != "" && n == string(b) {
			*s = State(i)
			return nil
		}
	}
	var n uint8
	if _, err := fmt.Sscanf(string(b), "STATE-%d", &n); err == nil {
		*s = State(n)
		return nil
	}
	return fmt.Errorf("sockdiag: unknown TCP state %q", b)
}

// StateMask returns the Filter.States mask selecting the given states.
func StateMask(states ...State) uint32 {
	var m uint32
	for _, s := range states {
		if s < 32 {
			m |= 1 << s
		}
	}
	return m
}

// Timer is the socket's pending timer as inet_diag reports it.
type Timer uint8

// Timers, with inet_diag's numbers and ss's names.
const (
	TimerOff       Timer = iota // no timer
	TimerOn                     // retransmission (also RACK reorder and tail loss probe)
	TimerKeepalive              // keepalive, or the orphaned FIN-WAIT-2 timer
	TimerTimeWait               // TIME-WAIT (and FIN-WAIT-2 kept as a timewait socket)
	TimerPersist                // zero-window probe
)

var timerNames = [...]string{"off", "on", "keepalive", "timewait", "persist"}

func (t Timer) String() string {
	if int(t) < len(timerNames) {
		return timerNames[t]
	}
	return "unknown"
}

// MarshalText makes JSON show the ss name.
func (t Timer) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (t *Timer) UnmarshalText(b []byte) error {
	for i, n := range timerNames {
		if n == string(b) {
			*t = Timer(i)
			return nil
		}
	}
	if string(b) == "unknown" {
		*t = Timer(len(timerNames))
		return nil
	}
	return fmt.Errorf("sockdiag: unknown timer %q", b)
}

// Socket is one TCP socket. Durations from the kernel have its resolution:
// milliseconds for timers and last-* ages, microseconds for rtt and rto.
type Socket struct {
	Family       uint8          `json:"family"` // unix.AF_INET or unix.AF_INET6
	State        State          `json:"state"`
	Src          netip.AddrPort `json:"src"` // local end; IPv4-mapped addresses stay as the kernel reports them
	Dst          netip.AddrPort `json:"dst"` // remote end; unspecified:0 for a listener
	Timer        Timer          `json:"timer"`
	TimerExpires time.Duration  `json:"timer_expires_ns"`
	Retrans      uint8          `json:"retrans"` // retransmits (or probes) of the pending timer: ss timer:(on,200ms,N)
	RecvQ        uint32         `json:"recvq"`   // bytes not read by the application; listeners: accept queue length
	SendQ        uint32         `json:"sendq"`   // bytes written and not acked by the peer; listeners: backlog
	UID          uint32         `json:"uid"`
	Inode        uint32         `json:"inode"` // 0 once the application closed it (orphan)
	Cookie       uint64         `json:"cookie"`

	// From struct tcp_info. TIME-WAIT and SYN-RECV minisockets have none
	// (HasInfo false); fields an older kernel's tcp_info lacks stay zero.
	HasInfo       bool          `json:"has_info"`
	Retransmits   uint8         `json:"retransmits"` // consecutive timeouts without progress
	Probes        uint8         `json:"probes"`      // unanswered zero-window or keepalive probes
	Backoff       uint8         `json:"backoff"`     // exponential RTO backoff
	RTO           time.Duration `json:"rto_ns"`
	RTT           time.Duration `json:"rtt_ns"` // smoothed
	RTTVar        time.Duration `json:"rttvar_ns"`
	MinRTT        time.Duration `json:"min_rtt_ns"`
	Cwnd          uint32        `json:"cwnd"`          // segments
	Unacked       uint32        `json:"unacked"`       // segments sent and not acked
	Lost          uint32        `json:"lost"`          // segments thought lost
	RetransOut    uint32        `json:"retrans_out"`   // retransmitted segments not yet acked
	TotalRetrans  uint32        `json:"total_retrans"` // retransmitted segments over the socket's life
	LastDataSent  time.Duration `json:"last_data_sent_ns"`
	LastDataRecv  time.Duration `json:"last_data_recv_ns"`
	LastAckRecv   time.Duration `json:"last_ack_recv_ns"`
	BytesAcked    uint64        `json:"bytes_acked"`
	BytesReceived uint64        `json:"bytes_received"`

	// What the handshake negotiated and how the windows went: options
	// (TCPI_OPT_* bits), the window scales (valid with OptWScale), the
	// peer's and our advertised windows after scaling, time the sender
	// was held by the peer's window, bytes retransmitted, and why an
	// active Fast Open failed (the TFO* reasons; 0 when it did not).
	Options            uint8         `json:"options"`
	SndWScale          uint8         `json:"snd_wscale"` // the peer's shift, applied to the windows it advertises
	RcvWScale          uint8         `json:"rcv_wscale"` // ours
	SndWnd             uint32        `json:"snd_wnd"`    // since Linux 5.4
	RcvWnd             uint32        `json:"rcv_wnd"`    // since Linux 6.1
	RwndLimited        time.Duration `json:"rwnd_limited_ns"`
	BytesRetrans       uint64        `json:"bytes_retrans"`
	FastOpenClientFail uint8         `json:"fastopen_client_fail"`
}

// TCPI_OPT_* bits of Socket.Options (include/uapi/linux/tcp.h).
const (
	OptTimestamps = 1
	OptSACK       = 2
	OptWScale     = 4
	OptECN        = 8  // ECN was negotiated in the handshake
	OptECNSeen    = 16 // a packet with ECT was received
	OptSYNData    = 32 // the SYN's data was acknowledged (active Fast Open)
)

// Reasons of Socket.FastOpenClientFail (enum tfo_client_fail).
const (
	TFOCookieUnavailable = 1 // no cookie was cached: a cookie request went out
	TFODataNotAcked      = 2 // the SYN-ACK acknowledged the SYN but not its data
	TFOSYNRetransmitted  = 3 // the SYN timed out and was sent again without data
)

// Key is a socket's 4-tuple, seen from its own side.
type Key struct {
	Src netip.AddrPort `json:"src"`
	Dst netip.AddrPort `json:"dst"`
}

func (k Key) String() string { return k.Src.String() + " -> " + k.Dst.String() }

// Key returns the socket's 4-tuple.
func (s *Socket) Key() Key { return Key{s.Src, s.Dst} }

// Filter selects sockets. The zero Filter selects every TCP socket.
type Filter struct {
	States uint32 `json:"states,omitempty"` // StateMask(...) of wanted states; 0 = all
	Port   uint16 `json:"port,omitempty"`   // local or remote port; 0 = any
	Family uint8  `json:"family,omitempty"` // unix.AF_INET or unix.AF_INET6; 0 = both
}

// Match reports whether s passes f.
func (f Filter) Match(s *Socket) bool {
	if f.States != 0 && (s.State >= 32 || f.States&(1<<s.State) == 0) {
		return false
	}
	if f.Port != 0 && s.Src.Port() != f.Port && s.Dst.Port() != f.Port {
		return false
	}
	return f.Family == 0 || f.Family == s.Family
}

// kernelStates is the mask asked of the kernel. It also asks for states the
// kernel files wanted sockets under: an orphaned FIN-WAIT-2 socket may live
// as a timewait socket, and a SYN-RECV one as a request socket
// (TCP_NEW_SYN_RECV = 12). Match then applies the exact mask.
func (f Filter) kernelStates() uint32 {
	if f.States == 0 {
		return ^uint32(0)
	}
	m := f.States
	if m&(1<<FinWait2) != 0 {
		m |= 1 << TimeWait
	}
	if m&(1<<SynRecv) != 0 {
		m |= 1 << 12
	}
	return m
}

func (f Filter) families() ([]uint8, error) {
	switch f.Family {
	case 0:
		return []uint8{unix.AF_INET, unix.AF_INET6}, nil
	case unix.AF_INET, unix.AF_INET6:
		return []uint8{f.Family}, nil
	}
	return nil, fmt.Errorf("sockdiag: filter family %d: want AF_INET, AF_INET6 or 0", f.Family)
}

// Dump returns the TCP sockets of namespace netns that pass f. netns is a
// name under /run/netns, a path such as /proc/PID/ns/net, or "" for the
// calling thread's namespace.
func Dump(netns string, f Filter) ([]Socket, error) {
	c, err := Open(netns)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Dump(f)
}
