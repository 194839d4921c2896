package device_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/device"
)

// A command that asks a device many times (a scenario reading its event
// log page by page) leaves no connection open behind each request: on
// the device, each would hold a goroutine and a socket until its idle
// timeout, minutes later.
func TestDevice_RequestsLeaveNoConnectionOpen(t *testing.T) {
	startMemDevice(t, "conns", "")
	if _, err := device.GetStatus("conns"); err != nil { // the server's own goroutines start
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	const n = 20
	for range n {
		if _, err := device.GetStatus("conns"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := device.Events("conns", 0); err != nil {
			t.Fatal(err)
		}
	}
	// Connections closed by the client end on the server a moment later.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine()-before > n/2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if grown := runtime.NumGoroutine() - before; grown > n/2 {
		t.Errorf("%d goroutines more after %d requests: connections are left open", grown, 2*n)
	}
}
