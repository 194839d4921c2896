package engine

import (
	"testing"
	"time"
)

// armLog records what a delay line arms its timer for.
type armLog struct{ at []int64 }

func (a *armLog) Arm(at int64) error { a.at = append(a.at, at); return nil }
func (a *armLog) Wait() error        { return errClosed }
func (a *armLog) Close() error       { return nil }

// A departure more than wakeGap away is armed the line's lead early, so
// that the release can spin the rest of the way; a near one is armed on
// time, and a line without a lead always is.
func TestDelayLine_DistantDeparturesArmedEarly(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, c := range []struct {
		lead int64
		want []int64
	}{
		{wakeLead, []int64{5*ms - wakeLead, 4*ms - wakeLead, 5 * ms}},
		{0, []int64{5 * ms, 4 * ms, 5 * ms}},
	} {
		timer := &armLog{}
		d := delayLine{timer: timer, lead: c.lead}
		push := func(now, depart int64) {
			if err := d.push(scheduled{depart: depart, delay: depart - now}); err != nil {
				t.Fatal(err)
			}
		}
		push(0, 5*ms)                   // 5 ms away: early
		push(2*ms, 4*ms)                // 2 ms away, sooner than the armed one: early
		push(3*ms, 6*ms)                // later than the armed one: not re-armed
		due, err := d.popDue(4*ms, nil) // the next, 1 ms away: on time
		if err != nil || len(due) != 1 || due[0].depart != 4*ms {
			t.Fatalf("lead %d: popDue at 4ms: %+v, %v", c.lead, due, err)
		}
		if len(timer.at) != len(c.want) {
			t.Fatalf("lead %d: armed %v, want %v", c.lead, timer.at, c.want)
		}
		for i := range c.want {
			if timer.at[i] != c.want[i] {
				t.Errorf("lead %d: armed %v, want %v", c.lead, timer.at, c.want)
				break
			}
		}
		if d.armed != 5*ms {
			t.Errorf("lead %d: armed for departure %d, want the head's, 5ms", c.lead, d.armed)
		}
	}
}
