// Package fuzzframe is the input format of faultbox's packet-sequence fuzz
// targets (behaviors' FuzzBehaviors, the engine's FuzzEngine) and of the
// tool that writes their seed corpora (scripts/fuzzcorpus): frames of a
// time step, flags, a 16-bit length and that many bytes (fewer at the end
// of the input). When the flags carry a GSO type or NeedsCsum, the bytes
// start with an 8-byte offload descriptor: gso_size, hdr_len, csum_start,
// csum_offset.
package fuzzframe

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/faultbox/faultbox/tun"
)

// Frame flags.
const (
	FromServer = 1 << 0
	GSOShift   = 1 // bits 1-2: the GSO type
	NeedsCsum  = 1 << 3

	offload = NeedsCsum | 3<<GSOShift
)

// stepUnit is the time of step 1; a step waits step² of it (0 to ~6.5 s, small
// steps fine-grained, so delays, idle timeouts and outages all come round).
const stepUnit = 100 * time.Microsecond

// StepNs is the time a frame's step waits, in ns.
func StepNs(step uint8) int64 { return int64(step) * int64(step) * int64(stepUnit) }

// Step is the smallest step that waits at least d (at most 255).
func Step(d time.Duration) uint8 {
	return uint8(min(255, math.Ceil(math.Sqrt(float64(d)/float64(stepUnit)))))
}

// Each calls fn for each frame of data, bytes as they are.
func Each(data []byte, fn func(step, flags uint8, pkt []byte)) {
	for len(data) >= 4 {
		step, flags, n := data[0], data[1], int(binary.BigEndian.Uint16(data[2:4]))
		data = data[4:]
		n = min(n, len(data))
		fn(step, flags, data[:n])
		data = data[n:]
	}
}

// EachOffload calls fn for each frame of data that a TUN read could return,
// with its offload descriptor taken off the front when the flags say so.
func EachOffload(data []byte, fn func(step, flags uint8, pkt []byte, o tun.Offload)) {
	Each(data, func(step, flags uint8, pkt []byte) {
		var o tun.Offload
		if flags&offload != 0 {
			if len(pkt) < 8 {
				return
			}
			o = tun.Offload{GSOType: flags >> GSOShift & 3, NeedsCsum: flags&NeedsCsum != 0,
				GSOSize: binary.BigEndian.Uint16(pkt[0:]), HdrLen: binary.BigEndian.Uint16(pkt[2:]),
				CsumStart: binary.BigEndian.Uint16(pkt[4:]), CsumOffset: binary.BigEndian.Uint16(pkt[6:])}
			pkt = pkt[8:]
		}
		if len(pkt) == 0 || len(pkt) > tun.MaxPacket {
			return // a TUN read never returns these
		}
		fn(step, flags, pkt, o)
	})
}

// Append appends one frame; with o, its descriptor goes first (the caller
// sets the matching flags).
func Append(b []byte, step, flags uint8, o *tun.Offload, pkt []byte) []byte {
	n := len(pkt)
	if o != nil {
		n += 8
	}
	b = append(b, step, flags, byte(n>>8), byte(n))
	if o != nil {
		b = binary.BigEndian.AppendUint16(b, o.GSOSize)
		b = binary.BigEndian.AppendUint16(b, o.HdrLen)
		b = binary.BigEndian.AppendUint16(b, o.CsumStart)
		b = binary.BigEndian.AppendUint16(b, o.CsumOffset)
	}
	return append(b, pkt...)
}
