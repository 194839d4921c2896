package scenario

import (
	"fmt"
	"time"
)

// How reasons, tables and timelines write numbers, the same in every
// scenario.

// Secs renders a duration in seconds with two decimals ("6.21 s"), or in
// milliseconds below one second.
func Secs(d time.Duration) string {
	if d < time.Second && d > -time.Second {
		return Millis(d)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// Millis renders a duration in milliseconds ("870 ms"; "2.5 ms" below 10 ms).
func Millis(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// Tenths renders a duration in seconds with one decimal ("31.6 s").
func Tenths(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// ByteSize renders a byte count in bytes, KiB or MiB ("300 KiB").
func ByteSize(n uint32) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
