// Package flow tracks TCP connections seen by the device: both directions'
// sequence space, the handshake/FIN/RST state, and per-behavior state, in a
// bounded table that never allocates per packet.
package flow

import (
	"encoding/binary"
	"net/netip"

	"github.com/faultbox/faultbox/internal/packet"
)

// Key identifies a flow regardless of direction: the lower endpoint first.
type Key struct {
	LoAddr, HiAddr [16]byte
	LoPort, HiPort uint16
	Proto          uint8
}

// KeyOf returns the direction-free key of p and whether p travels from the
// Lo endpoint to the Hi endpoint.
func KeyOf(p *packet.Parsed) (k Key, fromLo bool) {
	s, d := p.Src.As16(), p.Dst.As16()
	sp, dp := p.SrcPort, p.DstPort
	if less(s, sp, d, dp) {
		return Key{LoAddr: s, HiAddr: d, LoPort: sp, HiPort: dp, Proto: p.Proto}, true
	}
	return Key{LoAddr: d, HiAddr: s, LoPort: dp, HiPort: sp, Proto: p.Proto}, false
}

// Hash mixes k with seed into a well-spread 64-bit value, for tables
// keyed by flow.
func (k *Key) Hash(seed uint64) uint64 {
	h := seed ^ uint64(k.Proto)
	mix := func(v uint64) {
		h ^= v
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	mix(binary.LittleEndian.Uint64(k.LoAddr[0:8]))
	mix(binary.LittleEndian.Uint64(k.LoAddr[8:16]))
	mix(binary.LittleEndian.Uint64(k.HiAddr[0:8]))
	mix(binary.LittleEndian.Uint64(k.HiAddr[8:16]))
	mix(uint64(k.LoPort)<<16 | uint64(k.HiPort))
	return h
}

func less(a [16]byte, ap uint16, b [16]byte, bp uint16) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return ap < bp
}

// State is the connection state as a middlebox in the path sees it.
type State uint8

const (
	SynSent     State = iota // client SYN seen
	SynReceived              // server SYN-ACK seen
	Established              // handshake complete, or picked up mid-stream
	Closing                  // at least one FIN seen
	Closed                   // both FINs seen and acknowledged
	Reset                    // a RST was forwarded
)

var stateNames = [...]string{"syn-sent", "syn-received", "established", "closing", "closed", "reset"}

func (s State) String() string { return stateNames[s] }

// Side names the two ends of a flow. The client is the initiator: the
// sender of the first SYN, or, for a flow picked up mid-stream, the end with
// the higher (ephemeral) port.
type Side uint8

const (
	Client Side = iota
	Server
)

func (s Side) Other() Side { return 1 - s }

func (s Side) String() string {
	if s == Client {
		return "client"
	}
	return "server"
}

// Endpoint is what one side has sent, as observed on the wire.
type Endpoint struct {
	ISN      uint32 // initial sequence number, valid if SawSYN
	NextSeq  uint32 // highest sequence sent + its length (its SND.NXT)
	Ack      uint32 // highest ACK it sent: the peer's RCV.NXT as it sees it
	FinSeq   uint32 // sequence number of its FIN, valid if SawFIN
	Window   uint32 // last advertised window, scaled
	WScale   int8   // window scale it announced, -1 if none
	SawSYN   bool
	SawFIN   bool
	SawRST   bool
	AckedFIN bool // it has acknowledged the peer's FIN
	Packets  uint64
	Bytes    uint64 // payload bytes
	LastSeen int64  // ns, engine clock
}

// Flow is one tracked connection. Its memory is owned by the Table and
// reused after eviction; do not keep a pointer across batches.
type Flow struct {
	Key        Key
	ClientLo   bool // the client is Key's Lo endpoint
	State      State
	Ends       [2]Endpoint // indexed by Side
	Created    int64
	LastSeen   int64
	Generation uint32 // chain generation the behavior state belongs to
	// Incarnation counts the flows this slot has held. Behavior keeps the
	// state of earlier flows, beyond its length too, so a new flow reuses
	// that memory: state made for an older incarnation reads as zero.
	Incarnation uint32
	Behavior    []any // per-behavior state, indexed by chain position

	prev, next int32 // LRU list; -1 terminates
}

// Addr returns the address of one side.
func (f *Flow) Addr(s Side) netip.Addr {
	lo := (s == Client) == f.ClientLo
	var a [16]byte
	if lo {
		a = f.Key.LoAddr
	} else {
		a = f.Key.HiAddr
	}
	ad := netip.AddrFrom16(a)
	if ad.Is4In6() {
		return ad.Unmap()
	}
	return ad
}

// Port returns the port of one side.
func (f *Flow) Port(s Side) uint16 {
	if (s == Client) == f.ClientLo {
		return f.Key.LoPort
	}
	return f.Key.HiPort
}

// SideOf reports which side sent a packet travelling from the Lo endpoint
// (fromLo) or the Hi endpoint.
func (f *Flow) SideOf(fromLo bool) Side {
	if fromLo == f.ClientLo {
		return Client
	}
	return Server
}

// ExpectedSeq is the sequence number side s is expected to receive next
// (its RCV.NXT): what the peer has sent so far.
func (f *Flow) ExpectedSeq(s Side) uint32 { return f.Ends[s.Other()].NextSeq }

// SeqAfter reports a > b in 32-bit sequence space (RFC 1982 arithmetic).
func SeqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// update applies one TCP segment sent by side s.
func (f *Flow) update(p *packet.Parsed, s Side, now int64) {
	e := &f.Ends[s]
	peer := &f.Ends[s.Other()]
	e.Packets++
	e.Bytes += uint64(p.PayloadLen())
	e.LastSeen = now
	f.LastSeen = now

	if p.Flags&packet.SYN != 0 {
		e.ISN = p.Seq
		e.SawSYN = true
		e.WScale = int8(p.WindowScale())
		e.NextSeq = p.Seq + 1
		if p.Flags&packet.ACK == 0 {
			f.State = SynSent
		} else if f.State == SynSent {
			f.State = SynReceived
		}
	}
	if end := p.Seq + p.SeqLen(); !e.SawSYN && e.Packets == 1 || SeqAfter(end, e.NextSeq) {
		e.NextSeq = end
	}
	if p.Flags&packet.ACK != 0 {
		if e.Packets == 1 || SeqAfter(p.Ack, e.Ack) || p.Ack == e.Ack {
			e.Ack = p.Ack
		}
		w := uint32(p.Window)
		if e.WScale > 0 && p.Flags&packet.SYN == 0 && peer.WScale >= 0 {
			w <<= uint(e.WScale)
		}
		e.Window = w
		if f.State == SynReceived && s == Client {
			f.State = Established
		}
		if peer.SawFIN && !SeqAfter(peer.FinSeq+1, p.Ack) {
			e.AckedFIN = true
		}
	}
	if p.Flags&packet.FIN != 0 {
		e.SawFIN = true
		e.FinSeq = p.Seq + uint32(p.PayloadLen())
		if f.State < Closing {
			f.State = Closing
		}
	}
	if p.Flags&packet.RST != 0 {
		e.SawRST = true
		f.State = Reset
	}
	if f.State == Closing && e.AckedFIN && peer.AckedFIN {
		f.State = Closed
	}
}
