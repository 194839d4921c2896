package e2e

import (
	"testing"
	"time"
)

// TestBlockPort81_BlocksThatPortOnly: with the block-port-81 profile, HTTP
// servers listen in the server host on ports 80 and 81; from the client,
// port 80 answers over IPv4 and IPv6 and port 81 times out (curl exit 28:
// the SYN vanished, no refusal), and the device counted the drops.
func TestBlockPort81_BlocksThatPortOnly(t *testing.T) {
	l := startLab(t, "--profile", "block-port-81")
	dir := t.TempDir()
	want := randomFile(t, dir, "small", 64<<10)
	l.httpServer(dir, 80)
	l.httpServer(dir, 81)

	for _, fam := range []string{"-4", "-6"} {
		out := l.mustExec(30*time.Second, "client", "curl", "-sS", "--fail", "--max-time", "10", fam,
			"-o", "-", "http://server:80/small")
		if got := sha256Hex([]byte(out)); got != want {
			t.Errorf("port 80 %s: body sha256 %s, want %s", fam, got, want)
		}
		r := l.exec(30*time.Second, "client", "curl", "-sS", "--max-time", "3", fam, "-o", "/dev/null",
			"http://server:81/small")
		if r.Code != 28 {
			t.Errorf("port 81 %s: curl exit %d, want 28 (timeout): %s", fam, r.Code, r)
		}
	}
	// The server on 81 is there: it answers inside its own host.
	l.mustExec(30*time.Second, "server", "curl", "-sS", "--fail", "--max-time", "5", "-o", "/dev/null",
		"http://127.0.0.1:81/small")

	st := l.status()
	if d := l.counter(st, "dropped_by_behavior"); d == 0 {
		t.Errorf("device counted no drops by behavior; port 81 should have been dropped")
	}
	if d := l.counter(st, "write_drops"); d != 0 {
		t.Errorf("device counted %v write drops, want 0", d)
	}
}
