package behaviors

import (
	"math"
	"time"

	"github.com/faultbox/faultbox/internal/units"
)

// RateLimit is a bandwidth limit per direction with a byte-counted
// tail-drop queue, like tbf or netem's `rate`.
//
// It is a departure-time (virtual clock) shaper, not a token bucket
// refilled by a ticker: each direction remembers when its link is free
// again, and a packet reaching the link at time a leaves at
// max(a, free) + (len + overhead) * 8 / rate. a is the packet's Depart as
// earlier behaviors of the chain left it, so a delay placed before the rate
// delays the packet's arrival at the bottleneck. The sub-nanosecond rest of
// every transmission time is carried over, so over many packets the rate is
// exact, not rounded per packet.
//
// The queue is the backlog the link still has to send when the packet
// arrives: (free - a) * rate / 8 bytes. A packet is dropped when the
// backlog including it would exceed limit (bytes) or, written as time,
// when it would leave more than limit_time after it arrived. Without
// either, the queue holds the larger of 64 KiB and 100 ms at the rate.
type RateLimit struct {
	Rate      units.Rate    `param:"rate" help:"the bandwidth of each direction (required)"`
	Limit     units.Size    `param:"limit" help:"the queue limit in bytes: a packet is dropped when the backlog with it would exceed it; with neither limit: the larger of 64 KiB and 100 ms at the rate"`
	LimitTime time.Duration `param:"limit_time" help:"the queue limit as time: a packet is dropped when it would leave more than this after it arrived"`
	Overhead  int           `param:"overhead" unit:"bytes" help:"added to each packet's length, e.g. link-layer framing"`

	limitNs int64     // the queue limit as time to drain it
	free    [2]int64  // per direction: when the link is idle again, ns
	rest    [2]uint64 // per direction: sub-ns part of free, in ns/Rate
}

func (l *RateLimit) Validate() error {
	switch {
	case l.Rate == 0:
		return Errorf("rate", "is required, e.g. 40kbit")
	case l.Limit > 0 && l.LimitTime > 0:
		return Errorf("limit_time", "give the queue limit either in bytes (limit) or as time, not both")
	case l.LimitTime < 0:
		return Errorf("limit_time", "must not be negative")
	case l.Overhead < 0 || l.Overhead > 1<<16:
		return Errorf("overhead", "%d is out of range 0-65536 bytes", l.Overhead)
	}
	limit := float64(l.Limit)
	if l.LimitTime == 0 && l.Limit == 0 {
		limit = max(64<<10, 0.1*float64(l.Rate)/8)
	}
	l.limitNs = int64(min(limit*8e9/float64(l.Rate), math.MaxInt64/2))
	if l.LimitTime > 0 {
		l.limitNs = int64(l.LimitTime)
	}
	return nil
}

// PerSegment: the transmission time and the queue count wire packets.
func (l *RateLimit) PerSegment() bool { return true }

func (l *RateLimit) Handle(p *Packet) Verdict {
	i := dir(p)
	at := p.Depart
	start, rest := l.free[i], l.rest[i]
	if start < at { // idle link: transmission starts on arrival
		start, rest = at, 0
	}
	bits := uint64(len(p.Buf)+l.Overhead) * 8
	rate := uint64(l.Rate)
	num := bits*1e9 + rest // < 2^64: bits < 2^20, rest < rate <= 1e12
	end := start + int64(num/rate)
	if end-at > l.limitNs {
		return Drop // tail drop: the queue is full
	}
	l.free[i], l.rest[i] = end, num%rate
	p.Depart = end
	return Pass
}

func init() {
	Register("rate", "bandwidth limit per direction with a tail-drop queue (virtual-clock shaper)", func() Behavior { return &RateLimit{} })
}
