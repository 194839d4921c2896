package engine

import (
	"time"

	"golang.org/x/sys/unix"
)

// The engine clock is CLOCK_MONOTONIC in nanoseconds, the clock timerfd
// deadlines are set on. It is read through Go's vDSO-backed monotonic time
// (a clock_gettime system call costs far more) plus a fixed offset.
var (
	clockStart = time.Now()
	clockBase  = func() int64 {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		return ts.Nano() - int64(time.Since(clockStart))
	}()
)

// Monotonic returns the engine clock: CLOCK_MONOTONIC in ns.
func Monotonic() int64 { return clockBase + int64(time.Since(clockStart)) }
