package device

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/engine"
)

// maxCPU bounds CPU numbers: unix.CPUSet holds 1024.
const maxCPU = 1024

// ParseCPUs reads a CPU list as taskset and cpusets write it ("1",
// "0,2", "2-3"), sorted, without repeats; "" is none (the device may run
// on any CPU).
func ParseCPUs(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= maxCPU {
			return nil, InputErrorf("cpus %q: want a list such as 1, 0,2 or 2-3", s)
		}
		for c := a; c <= b; c++ {
			seen[c] = true
		}
	}
	var cpus []int
	for c := range maxCPU {
		if seen[c] {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// FormatCPUs writes cpus as a comma-separated list.
func FormatCPUs(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// SharedBusyPoll is the longest busy-poll allowed without CPUs of its own:
// long enough to catch a request's answer through a local server (a round
// trip is 20-40 µs), short enough that light traffic does not keep a CPU
// busy.
const SharedBusyPoll = 100 * time.Microsecond

// CheckBusyPoll refuses a busy-poll outside 0 to 1s (or always), and one
// longer than SharedBusyPoll unless the device has CPUs of its own.
func CheckBusyPoll(d time.Duration, cpus []int) error {
	if d == engine.PollAlways && len(cpus) == 0 {
		return InputErrorf("busy-poll %s keeps a CPU busy at all times: give the device a CPU of its own with --cpus", BusyPollAlways)
	}
	if d < 0 || d > time.Second && d != engine.PollAlways {
		return InputErrorf("busy-poll %v: want 0 (off) to 1s, or %s", d, BusyPollAlways)
	}
	if d > SharedBusyPoll && len(cpus) == 0 {
		return InputErrorf("busy-poll %v keeps a CPU busy: give the device CPUs of its own with --cpus, or poll at most %v", d, SharedBusyPoll)
	}
	return nil
}

// CheckCPUs reports CPUs this process may not run on.
func CheckCPUs(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	var have unix.CPUSet
	if err := unix.SchedGetaffinity(0, &have); err != nil {
		return fmt.Errorf("reading CPU affinity: %w", err)
	}
	for _, c := range cpus {
		if !have.IsSet(c) {
			return InputErrorf("cpus %s: CPU %d is not one this process may use (%d available)", FormatCPUs(cpus), c, have.Count())
		}
	}
	return nil
}

// withCPUs runs start (which forks the device process) on a thread limited to cpus,
// so the device process starts there, and Go sizes its GOMAXPROCS to them. The
// thread gets its CPUs back afterwards.
func withCPUs(cpus []int, start func() error) error {
	if len(cpus) == 0 {
		return start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("reading CPU affinity: %w", err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("cpus %s: %w", FormatCPUs(cpus), err)
	}
	defer unix.SchedSetaffinity(0, &old)
	return start()
}
