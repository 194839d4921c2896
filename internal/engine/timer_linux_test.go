package engine

import (
	"testing"
	"time"
)

// A delay line arms its timer for packets and waits on it for releases:
// neither may allocate.
func TestTimerfd_ArmAndWaitAllocateNothing(t *testing.T) {
	tm, err := newTimerfd()
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	allocs := testing.AllocsPerRun(20, func() {
		if err := tm.Arm(Monotonic() + int64(100*time.Microsecond)); err != nil {
			t.Fatal(err)
		}
		if err := tm.Wait(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Arm and Wait: %v allocations per run, want 0", allocs)
	}
	// Closed, a waiting timer returns errClosed.
	done := make(chan error, 1)
	go func() { done <- tm.Wait() }()
	time.Sleep(10 * time.Millisecond)
	tm.Close()
	select {
	case err := <-done:
		if err != errClosed {
			t.Errorf("Wait after Close: %v, want errClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
}
