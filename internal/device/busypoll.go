package device

import (
	"time"

	"github.com/faultbox/faultbox/internal/engine"
)

// BusyPollAlways is --busy-poll's word for a device that never sleeps
// (engine.PollAlways).
const BusyPollAlways = "always"

// ParseBusyPoll reads a busy-poll as lab up takes it: a duration, or
// "always".
func ParseBusyPoll(s string) (time.Duration, error) {
	if s == BusyPollAlways {
		return engine.PollAlways, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, InputErrorf("busy-poll %q: want a duration such as 20us or 1ms, or %s", s, BusyPollAlways)
	}
	return d, nil
}

// FormatBusyPoll writes d as ParseBusyPoll reads it.
func FormatBusyPoll(d time.Duration) string {
	if d == engine.PollAlways {
		return BusyPollAlways
	}
	return d.String()
}
