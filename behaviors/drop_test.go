package behaviors

import (
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

func TestDrop_MatchedPortOnly(t *testing.T) {
	spec := MatchSpec{Port: 81}
	m, err := spec.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "drop", &Discard{}, m)
	on81 := newConn(client4, server4, 1, 1000)
	on81.sport = 81
	on80 := newConn(client4, server4, 1, 1000)
	if v, _ := h.send(on81.seg(true, packet.SYN, nil)); v != Drop {
		t.Fatalf("SYN to port 81: verdict %v, want Drop", v)
	}
	if v, _ := h.send(on80.seg(true, packet.SYN, nil)); v != Pass {
		t.Fatalf("SYN to port 80: verdict %v, want Pass", v)
	}
	if v, _ := h.send(udpPacket(client6, server6, 5000, 81, []byte("x"))); v != Drop {
		t.Fatalf("UDP to port 81: verdict %v, want Drop", v)
	}
	if got := h.chain.Entries[0].Counters.Dropped; got != 2 {
		t.Fatalf("dropped counter = %d, want 2", got)
	}
}

func TestDrop_CountPerFlow(t *testing.T) {
	h := newHarness(t, "drop", &Discard{Count: 2}, Match{})
	c := newConn(client4, server4, 1, 1000)
	syn := c.seg(true, packet.SYN, nil)
	var verdicts []Verdict
	for i := 0; i < 4; i++ {
		v, _ := h.send(syn)
		verdicts = append(verdicts, v)
	}
	want := []Verdict{Drop, Drop, Pass, Pass}
	for i := range want {
		if verdicts[i] != want[i] {
			t.Fatalf("verdicts %v, want %v", verdicts, want)
		}
	}
}

func TestDrop_ProbabilityIsSeeded(t *testing.T) {
	run := func() []Verdict {
		h := newHarness(t, "drop", &Discard{Probability: 0.3}, Match{})
		var out []Verdict
		for i := 0; i < 200; i++ {
			v, _ := h.send(udpPacket(client4, server4, 5000, 53, nil))
			out = append(out, v)
		}
		return out
	}
	a, b := run(), run()
	drops := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed gave different decisions at packet %d", i)
		}
		if a[i] == Drop {
			drops++
		}
	}
	if drops < 30 || drops > 90 {
		t.Fatalf("%d of 200 dropped at p=0.3", drops)
	}
}

func TestLog_RecordsEverySample(t *testing.T) {
	h := newHarness(t, "log", &Log{Every: 3}, Match{})
	for i := 0; i < 9; i++ {
		if v, _ := h.send(udpPacket(client4, server4, 5000, 53, nil)); v != Pass {
			t.Fatal("log must pass packets")
		}
	}
	if len(h.events) != 3 {
		t.Fatalf("%d events for 9 packets at every=3, want 3", len(h.events))
	}
}

func TestPassthrough_PassesAll(t *testing.T) {
	h := newHarness(t, "passthrough", &Passthrough{}, Match{})
	c := newConn(client6, server6, 0xfffffff0, 7)
	for _, s := range c.handshake() {
		if v, d := h.send(s); v != Pass || d != 0 {
			t.Fatalf("verdict %v delay %d", v, d)
		}
	}
}
