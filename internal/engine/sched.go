package engine

import (
	"time"

	"github.com/faultbox/faultbox/tun"
)

// scheduled is a packet waiting in a port's delay line.
type scheduled struct {
	depart int64
	seq    uint64 // arrival order: equal departures leave in order
	pkt    tun.Packet
	note   string
	delay  int64
}

// delayLine is a min-heap of scheduled packets ordered by (depart, seq),
// kept by value in one slice: no allocation once it has grown. It belongs
// to one output port and is guarded by the engine lock.
type delayLine struct {
	h     []scheduled
	seq   uint64
	armed int64 // departure the timer is armed for; 0 if none
	timer Timer
	lead  int64 // how early a distant departure's timer fires (arm)
}

// A departure more than wakeGap away finds the device's threads asleep,
// and waking them is most of a delay's error at low packet rates
// (docs/benchmarks.md). With a timer that sleeps (not busy-poll), its timer
// is armed wakeLead early and the release spins the rest of the way
// (Engine.untilDue): at most one spin of wakeLead per release of a sparse
// line; a busy line, whose next departure is near, is armed on time and
// never spins.
const (
	wakeGap  = int64(time.Millisecond)
	wakeLead = int64(100 * time.Microsecond)
)

// arm sets the timer for departure at, seen at now.
func (d *delayLine) arm(at, now int64) error {
	d.armed = at
	if d.lead > 0 && at-now > wakeGap {
		at -= d.lead
	}
	return d.timer.Arm(at)
}

func (d *delayLine) less(i, j int) bool {
	a, b := &d.h[i], &d.h[j]
	return a.depart < b.depart || a.depart == b.depart && a.seq < b.seq
}

func (d *delayLine) push(s scheduled) error {
	d.seq++
	s.seq = d.seq
	d.h = append(d.h, s)
	for i := len(d.h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !d.less(i, parent) {
			break
		}
		d.h[i], d.h[parent] = d.h[parent], d.h[i]
		i = parent
	}
	if d.armed == 0 || s.depart < d.armed {
		return d.arm(s.depart, s.depart-s.delay)
	}
	return nil
}

// popDue moves every packet due at now into out (in departure order) and
// re-arms the timer for the next one.
func (d *delayLine) popDue(now int64, out []scheduled) ([]scheduled, error) {
	for len(d.h) > 0 && d.h[0].depart <= now {
		out = append(out, d.h[0])
		last := len(d.h) - 1
		d.h[0] = d.h[last]
		d.h[last] = scheduled{}
		d.h = d.h[:last]
		for i := 0; ; {
			l, r, m := 2*i+1, 2*i+2, i
			if l < len(d.h) && d.less(l, m) {
				m = l
			}
			if r < len(d.h) && d.less(r, m) {
				m = r
			}
			if m == i {
				break
			}
			d.h[i], d.h[m] = d.h[m], d.h[i]
			i = m
		}
	}
	d.armed = 0
	if len(d.h) > 0 {
		return out, d.arm(d.h[0].depart, now)
	}
	return out, nil
}

// next is the departure time of the first packet waiting, 0 if none.
func (d *delayLine) next() int64 {
	if len(d.h) == 0 {
		return 0
	}
	return d.h[0].depart
}
