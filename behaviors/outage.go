package behaviors

import (
	"math/rand/v2"
	"time"
)

// Outage takes the link down for periods, on a schedule or at random, and
// drops the packets that meet it down (mode drop) or holds them until it
// comes back (mode hold: they all leave, in order, when the outage ends, as
// a mobile link's buffer drains after a radio stall).
//
// Scheduled: down for `duration` every `every`, the first time `start`
// after the first packet. Random: up for exponentially distributed times
// with mean `mean_interval` (the first counted from `start`), down for
// exponentially distributed times with mean `mean_duration`, drawn in
// sequence from the behavior's own seeded source. Either way the schedule
// is a function of time and seed only: packets do not shift it, and no
// timer runs. Time counts from the first packet the behavior sees.
type Outage struct {
	Every        time.Duration `param:"every" help:"scheduled outages: one every this long"`
	Duration     time.Duration `param:"duration" help:"scheduled outages: how long each lasts (shorter than every)"`
	Start        time.Duration `param:"start" help:"when the first outage, or the first random up time, begins after the first packet"`
	MeanInterval time.Duration `param:"mean_interval" help:"random outages: the mean up time between two (exponential, at least 1ms)"`
	MeanDuration time.Duration `param:"mean_duration" help:"random outages: the mean length of one (exponential)"`
	Mode         string        `param:"mode" values:"drop|hold" default:"drop" help:"drop: packets that meet the link down are lost; hold: they wait and leave in order when it comes back"`

	hold      bool
	origin    epoch
	prev, cur span // random outages around the present, relative to origin
	drawn     bool // cur holds the first random outage
}

// span is one outage, [from, to) ns after the origin.
type span struct{ from, to int64 }

func (o *Outage) Validate() error {
	switch o.Mode {
	case "", "drop":
		o.hold = false
	case "hold":
		o.hold = true
	default:
		return Errorf("mode", "%q is not drop or hold", o.Mode)
	}
	switch {
	case o.Start < 0:
		return Errorf("start", "must not be negative")
	case o.Every > 0 && o.MeanInterval > 0:
		return Errorf("every", "give a schedule (every, duration) or random outages (mean_interval, mean_duration), not both")
	case o.Every > 0 && (o.Duration <= 0 || o.Duration >= o.Every):
		return Errorf("duration", "must be positive and shorter than every (%v)", o.Every)
	case o.Every == 0 && o.MeanInterval <= 0:
		return Errorf("every", "give every and duration, or mean_interval and mean_duration")
	case o.MeanInterval > 0 && o.MeanInterval < time.Millisecond:
		// Catching up over a long idle time draws once per outage missed.
		return Errorf("mean_interval", "must be at least 1ms")
	case o.MeanInterval > 0 && o.MeanDuration <= 0:
		return Errorf("mean_duration", "must be positive")
	}
	return nil
}

func (o *Outage) Handle(p *Packet) Verdict {
	t := o.origin.rel(p)
	end, down := o.down(t, p.Rand)
	if !down {
		return Pass
	}
	if !o.hold {
		return Drop
	}
	holdUntil(p, o.origin.t+end)
	return Pass
}

// down reports whether the link is down at t (relative to the origin) and
// when it comes back up.
func (o *Outage) down(t int64, r *rand.Rand) (end int64, down bool) {
	if o.Every > 0 {
		since := t - int64(o.Start)
		if since < 0 {
			return 0, false
		}
		phase := since % int64(o.Every)
		return t - phase + int64(o.Duration), phase < int64(o.Duration)
	}
	if !o.drawn {
		o.cur, o.drawn = o.next(int64(o.Start), r), true
	}
	for t >= o.cur.to {
		o.prev, o.cur = o.cur, o.next(o.cur.to, r)
	}
	switch {
	case t >= o.cur.from:
		return o.cur.to, true
	case t >= o.prev.from && t < o.prev.to: // reaches the link before the previous packet did
		return o.prev.to, true
	}
	return 0, false
}

// next draws the outage after an up time that starts at up.
func (o *Outage) next(up int64, r *rand.Rand) span {
	from := up + max(1, int64(r.ExpFloat64()*float64(o.MeanInterval)))
	return span{from, from + max(1, int64(r.ExpFloat64()*float64(o.MeanDuration)))}
}

func init() {
	Register("outage", "scheduled or random link-down periods: packets dropped or held", func() Behavior { return &Outage{} })
}
