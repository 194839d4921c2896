package device_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/control"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/profiles"
)

// WriteEvents prints the log as text or JSON lines; following, it prints
// an event as it happens and ends without an error when interrupted.
func TestWriteEvents_PrintsAndFollows(t *testing.T) {
	d := startMemDevice(t, "evs", "")
	p, err := profiles.Parse("log.yaml", []byte("name: log\nbehaviors:\n  - type: log\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply(control.ApplyRequest{Profile: p, Source: "log.yaml", Wait: true}); err != nil {
		t.Fatal(err)
	}
	if !crosses(d, packet.SYN) {
		t.Fatal("a SYN did not cross")
	}
	ctx := context.Background()

	var text strings.Builder
	if err := device.WriteEvents(ctx, &text, "evs", false, false); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(text.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], " log ") || !strings.Contains(lines[0], "[S]") {
		t.Errorf("text: %q, want one line of the logged SYN", text.String())
	}
	var js strings.Builder
	if err := device.WriteEvents(ctx, &js, "evs", false, true); err != nil {
		t.Fatal(err)
	}
	var ev client.Event
	if err := json.Unmarshal([]byte(js.String()), &ev); err != nil || ev.Note != "log" || ev.Flags != "S" || ev.DstPort != 80 {
		t.Errorf("JSON: %q (%v), want the logged SYN", js.String(), err)
	}

	// Following: the event so far, then one as it happens, then the end.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- device.WriteEvents(ctx, w, "evs", true, false); w.Close() }()
	lines := bufio.NewScanner(r)
	next := func(what string) string {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			if lines.Scan() {
				got <- lines.Text()
			}
			close(got)
		}()
		select {
		case line, ok := <-got:
			if !ok {
				t.Fatalf("the follow ended before %s", what)
			}
			return line
		case <-time.After(10 * time.Second):
			t.Fatalf("no line for %s within 10s", what)
		}
		return ""
	}
	next("the first event")
	crosses(d, packet.SYN|packet.ACK)
	if line := next("the new event"); !strings.Contains(line, "[S.]") {
		t.Errorf("followed %q, want the SYN-ACK", line)
	}
	cancel()
	go io.Copy(io.Discard, r)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("an interrupted follow: %v, want no error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follow did not end 10s after its context")
	}
}
