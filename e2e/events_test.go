package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
)

// synLog logs every SYN to port 80: one event per connection.
const synLog = `name: syn-log
description: log every SYN to port 80 (an e2e fixture)
sources: ["e2e test"]
behaviors:
  - type: log
    match: {port: 80, tcp_flags: [syn]}
`

// TestLabEvents_PrintsAndFollows: lab events prints the device's event log
// as text or JSON lines, and --follow prints events as they happen
// (issue 17, item 5).
func TestLabEvents_PrintsAndFollows(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "syn-log.yaml")
	if err := os.WriteFile(profile, []byte(synLog), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLab(t, "--profile", profile)
	l.serve(80)
	get := func() {
		t.Helper()
		l.mustExec(20*time.Second, "client", "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "http://"+serverV4+"/")
	}
	get()
	get()

	r := fb(30*time.Second, "lab", "events", "--name", l.name)
	if r.Code != 0 || strings.Count(r.Stdout, " log "+clientV4+":") != 2 || !strings.Contains(r.Stdout, "> "+serverV4+":80 [S]") {
		t.Fatalf("lab events: %s\nwant two lines of the SYNs to port 80", r)
	}
	r = fb(30*time.Second, "lab", "events", "--name", l.name, "--json")
	var evs []client.Event
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var ev client.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("lab events --json: line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	if r.Code != 0 || len(evs) != 2 || evs[1].Seq != 1 || evs[0].Note != "log" || evs[0].DstPort != 80 || evs[0].Flags != "S" ||
		time.Since(evs[0].Time) > 5*time.Minute {
		t.Fatalf("lab events --json: %+v (%s)", evs, r)
	}

	// --follow: the two events so far, then a third as it happens.
	cmd := exec.Command(faultbox, "lab", "events", "--name", l.name, "--follow")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // ours, by the pid exec gave us
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("lab events --follow: not gone 10s after SIGKILL")
		}
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("lab events --follow ended before %s", what)
			}
			return line
		case <-time.After(20 * time.Second):
			t.Fatalf("lab events --follow: no line for %s within 20s", what)
		}
		return ""
	}
	next("the first event")
	next("the second event")
	get()
	if line := next("the new connection's SYN"); !strings.Contains(line, " log "+clientV4+":") {
		t.Fatalf("followed event %q", line)
	}
	// Interrupted, it ends quietly with status 0.
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		done <- err // for the cleanup's wait
		if err != nil {
			t.Fatalf("lab events --follow after SIGINT: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lab events --follow did not end 10s after SIGINT")
	}
}
