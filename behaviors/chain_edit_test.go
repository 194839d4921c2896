package behaviors

import (
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// dataAt sends a client data segment of k at t and returns when it departs.
func (h *harness) dataAt(k *tcpConn, t time.Duration) time.Duration {
	h.now = int64(t)
	_, d := h.send(k.seg(true, packet.ACK|packet.PSH, []byte("data")))
	return t + time.Duration(d)
}

func established(t *testing.T, h *harness) *tcpConn {
	t.Helper()
	k := newConn(client4, server4, 1, 2)
	for _, s := range k.handshake() {
		h.send(s)
	}
	return k
}

func TestChainWith_KeepsFlowStateOfEntriesAfterTheInsertion(t *testing.T) {
	h := newHarness(t, "hold-first-data", &HoldFirstData{Hold: 10 * time.Millisecond}, Match{})
	k := established(t, h)
	if got := h.dataAt(k, time.Second); got != 1010*time.Millisecond {
		t.Fatalf("first data departs at %v, want 1.01s", got)
	}
	// In front of it, so that its position in the chain changes.
	c, err := h.chain.With(&Entry{Type: "delay", Behavior: &Delay{}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.chain = c
	if got := h.dataAt(k, 1002*time.Millisecond); got != 1010*time.Millisecond {
		t.Fatalf("after the insertion, data departs at %v, want 1.01s: the hold's flow state was lost", got)
	}
	if names := entryNames(c); names != "delay hold-first-data" {
		t.Fatalf("chain is %q", names)
	}
}

func TestChainWithout_KeepsOthersStateAndNewEntriesStartEmpty(t *testing.T) {
	h := newHarness(t, "hold-first-data", &HoldFirstData{Hold: 10 * time.Millisecond}, Match{})
	h.chain.Entries[0].Name = "a"
	c, err := h.chain.With(&Entry{Name: "b", Type: "hold-first-data", Behavior: &HoldFirstData{Hold: time.Millisecond}}, -1)
	if err != nil {
		t.Fatal(err)
	}
	h.chain = c
	k := established(t, h)
	if got := h.dataAt(k, time.Second); got != 1011*time.Millisecond {
		t.Fatalf("first data departs at %v, want 1.011s", got)
	}
	c, removed, err := h.chain.Without("a")
	if err != nil || removed.Name != "a" {
		t.Fatalf("Without(a) = %v, %v", removed, err)
	}
	// c takes the slot a left, where a's state for this flow still lies.
	c, err = c.With(&Entry{Name: "c", Type: "hold-first-data", Behavior: &HoldFirstData{Hold: 30 * time.Millisecond}}, -1)
	if err != nil {
		t.Fatal(err)
	}
	h.chain = c
	// b still holds until 1.011 s; c meets the flow's data for the first
	// time and holds it 30 ms from there.
	if got := h.dataAt(k, 1002*time.Millisecond); got != 1041*time.Millisecond {
		t.Fatalf("data departs at %v, want 1.041s (1.011s if c read a's state, 1.033s if b lost its own)", got)
	}
}

func TestChainEdits_Refused(t *testing.T) {
	c := NewChain("p", 1, []*Entry{{Type: "delay", Behavior: &Delay{}}, {Type: "delay", Behavior: &Delay{}}})
	if names := entryNames(c); names != "delay delay-2" {
		t.Fatalf("names %q", names)
	}
	for _, tc := range []struct {
		name string
		at   int
		want string
	}{
		{"delay-2", -1, "already has a behavior called"},
		{"bad/name", -1, "is not a name"},
		{"ok", 3, "past the end"},
	} {
		_, err := c.With(&Entry{Name: tc.name, Type: "delay", Behavior: &Delay{}}, tc.at)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("With(%q, %d) = %v, want %q", tc.name, tc.at, err, tc.want)
		}
	}
	if _, _, err := c.Without("nope"); err == nil {
		t.Error("Without an unknown name succeeded")
	}
	n, err := c.With(&Entry{Type: "delay", Behavior: &Delay{}}, -1)
	if err != nil || entryNames(n) != "delay delay-2 delay-3" || entryNames(c) != "delay delay-2" {
		t.Fatalf("With unnamed: %v, %q (the original: %q)", err, entryNames(n), entryNames(c))
	}
	if n.Generation != c.Generation {
		t.Fatal("an edit changed the generation, which discards every flow's state")
	}
}

func entryNames(c *Chain) string {
	var s []string
	for _, e := range c.Entries {
		s = append(s, e.Name)
	}
	return strings.Join(s, " ")
}
