package behaviors

import (
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// A client that closes with unread data sends a RST, which asa-teardown
// (on: [fin]) never acts on: the wait says so, and counts FINs when they come.
func TestASATeardown_WaitingCountsClientCloses(t *testing.T) {
	a := newASA(nil)
	e := newHarness(t, "asa-teardown", a, Match{})
	k := asaSession(t, e, client4, server4, 1000, 5000)
	e.send(k.seg(true, packet.RST|packet.ACK, nil))
	w := a.Waiting()
	if w.For != "client FINs" || w.Seen != 0 || !strings.Contains(w.Note, "1 client RST came instead") {
		t.Fatalf("after a client RST: %+v", w)
	}
	if s := w.String(); !strings.HasPrefix(s, "0 client FINs seen (") {
		t.Fatalf("String() = %q", s)
	}
	k = newConn(client4, server4, 9000, 7000)
	k.cport++
	for _, seg := range k.handshake() {
		e.send(seg)
	}
	e.send(k.seg(true, packet.FIN|packet.ACK, nil))
	if w := a.Waiting(); w.Seen != 1 || w.Note != "" {
		t.Fatalf("after a client FIN: %+v", w)
	}
}

func TestWaiting_TriggerBehaviorsSayWhatTheyWaitFor(t *testing.T) {
	v := &Vanish{Trigger: Trigger{Kind: "client-acked-server-fin"}}
	r := &Reset{Trigger: Trigger{Kind: "bytes", AfterBytes: 10240, Direction: "upstream"}}
	i := &IdleTimeout{Timeout: 5 * time.Second}
	for _, b := range []Validator{v, r, i} {
		if err := b.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		w    Waiter
		want string
	}{
		{v, "0 flows where the client acknowledged the server's FIN seen"},
		{r, "0 flows reaching 10240 payload bytes upstream seen"},
		{i, "0 flows idle for 5s seen"},
	} {
		if got := c.w.Waiting().String(); got != c.want {
			t.Errorf("%T: %q, want %q", c.w, got, c.want)
		}
	}
}
