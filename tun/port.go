// Package tun is faultbox's one way to the wire: TUN devices opened inside a
// chosen network namespace, read and written in batches, with the virtio-net
// offload header (IFF_VNET_HDR) handled here so that callers never see it.
//
// Offloaded TCP super-packets (GSO) are handed to callers whole, with their
// Offload descriptor; a caller forwards them untouched on the fast path or
// calls Split when it needs to see every segment.
package tun

import "errors"

// Headroom is the space every packet buffer must leave before the IP packet
// so a port can prepend its virtio header without copying.
const Headroom = 16

// MaxPacket is the largest packet (an offloaded super-packet) a port reads.
const MaxPacket = 65535

// BufSize is the size of a buffer able to hold any packet with headroom.
const BufSize = Headroom + MaxPacket

// GSO types of an offloaded packet.
const (
	GSONone uint8 = iota
	GSOTCPv4
	GSOTCPv6
	GSOUDPL4
)

// Offload describes how the kernel handed over a packet: as a super-packet to
// be segmented (GSO) and/or with a checksum still to be completed. The zero
// value is a plain packet with complete checksums.
type Offload struct {
	GSOType    uint8
	NeedsCsum  bool   // transport checksum holds only the pseudo-header sum
	HdrLen     uint16 // IP + transport header length
	GSOSize    uint16 // payload bytes per segment (MSS)
	CsumStart  uint16 // offset of the transport header
	CsumOffset uint16 // offset of the checksum field from CsumStart
}

// IsGSO reports whether the packet is a super-packet of several segments.
func (o Offload) IsGSO() bool { return o.GSOType != GSONone }

// Packet is one packet in a caller-owned buffer: the IP packet is
// Buf[Off:Off+Len], with at least Headroom bytes before it.
type Packet struct {
	Buf     []byte
	Off     int
	Len     int
	Offload Offload
}

// Data returns the IP packet.
func (p *Packet) Data() []byte { return p.Buf[p.Off : p.Off+p.Len] }

// valid reports whether the packet lies in its buffer with headroom before it.
func (p *Packet) valid() bool {
	return p.Off >= Headroom && p.Len > 0 && p.Off+p.Len <= len(p.Buf)
}

// Port is one TUN device (or an in-memory fake of one).
type Port interface {
	// Name is the interface name inside its namespace.
	Name() string
	// MTU is the interface MTU.
	MTU() int
	// Offloads reports whether Write accepts GSO super-packets and packets
	// whose checksum needs completing; if not, callers must Split and
	// complete checksums first.
	Offloads() bool
	// Read fills pkts[0:n] with the packets available, blocking until at
	// least one is. Each pkts[i].Buf must be BufSize bytes; Read sets Off,
	// Len and Offload.
	Read(pkts []Packet) (n int, err error)
	// Write sends every packet; pkts[i].Off must be >= Headroom. It returns
	// the number written and the first error (a full queue drops the rest
	// of the batch, counted by the port, not reported as an error).
	Write(pkts []Packet) (n int, err error)
	// Stats returns the port's counters.
	Stats() PortStats
	// Close releases the device. A blocked Read returns ErrClosed.
	Close() error
}

// PortStats are a port's lifetime counters.
type PortStats struct {
	ReadPackets uint64 `json:"read_packets"`
	ReadBytes   uint64 `json:"read_bytes"`
	// QueueDrops are packets the kernel dropped before the device read
	// them: its queue was full because the device fell behind.
	QueueDrops   uint64 `json:"queue_drops"`
	ReadDrops    uint64 `json:"read_drops"` // read but not describable (unknown GSO type)
	WritePackets uint64 `json:"write_packets"`
	WriteBytes   uint64 `json:"write_bytes"`
	WriteDrops   uint64 `json:"write_drops"` // the kernel's queue was full
	GSOPackets   uint64 `json:"gso_packets"` // super-packets read
	// Runs of small UDP datagrams written as one super-packet (coalesce.go).
	JoinedWrites  uint64 `json:"joined_writes,omitempty"`
	JoinedPackets uint64 `json:"joined_packets,omitempty"`
}

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("tun: port closed")

// Poller is a Port that can also be polled, for a caller that spins over
// several ports instead of blocking in each (the engine's busy-poll mode).
type Poller interface {
	Port
	// TryRead is Read that returns 0 packets at once when none waits.
	TryRead(pkts []Packet) (int, error)
	// WaitFD is a file descriptor that polls readable when packets wait,
	// or -1 if there is none (then the caller checks again after a while).
	WaitFD() int
}
