package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// schedIdle is SCHED_IDLE (linux/sched.h): the thread runs only when the
// CPU would otherwise idle, and any other thread that wakes preempts it.
const schedIdle = 5

func init() { probes["idle-spin"] = idleSpin }

// idleSpin keeps one CPU out of its idle state for a bounded time without
// taking it from anyone: a SCHED_IDLE thread that spins. The sparse
// section's third group runs the endpoints this way, which removes the
// cost of waking an idle (halted) virtual CPU from their round trips.
func idleSpin(args []string) error {
	fs := flag.NewFlagSet("idle-spin", flag.ContinueOnError)
	cpu := fs.Int("cpu", 0, "the CPU to keep out of idle")
	d := fs.Duration("for", time.Minute, "how long (at most 1h)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *d <= 0 || *d > time.Hour {
		return fmt.Errorf("-for %v: want more than 0 and at most 1h", *d)
	}
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(*cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("cpu %d: %w", *cpu, err)
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: schedIdle}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return fmt.Errorf("SCHED_IDLE: %w", err)
	}
	for end := monoNow() + int64(*d); monoNow() < end; {
	}
	return nil
}

// startIdleSpinners starts an idle-spin process on every CPU in cpus for
// at most d; the returned function stops them (by PID, also at exit).
func startIdleSpinners(ctx context.Context, self string, cpus []int, d time.Duration) (func(), error) {
	var procs []*exec.Cmd
	stop := func() {
		for _, c := range procs {
			c.Process.Signal(syscall.SIGKILL)
			c.Wait()
		}
		procs = nil
	}
	for _, cpu := range cpus {
		c := exec.CommandContext(ctx, self, "idle-spin", "-cpu", strconv.Itoa(cpu), "-for", d.String())
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			stop()
			return nil, err
		}
		procs = append(procs, c)
	}
	atExit.add(stop)
	return stop, nil
}
