package behaviors

import (
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

func TestECNSYNDrop_DropsOnlyECNSetupSYNs(t *testing.T) {
	b, _ := New("ecn-syn-drop")
	h := newHarness(t, "ecn-syn-drop", b, Match{})
	k := newConn(client4, server4, 1000, 5000)
	ecnSetup := packet.SYN | packet.ECE | packet.CWR
	for _, c := range []struct {
		name string
		seg  []byte
		want Verdict
	}{
		{"ECN-setup SYN", k.seg(true, ecnSetup, nil), Drop},
		{"its retransmission without ECE and CWR (RFC 3168 6.1.1.1)", newConn(client4, server4, 1000, 5000).seg(true, packet.SYN, nil), Pass},
		{"SYN with ECE only", newConn(client4, server4, 1000, 5000).seg(true, packet.SYN|packet.ECE, nil), Pass},
		{"ECN-setup SYN-ACK", k.seg(false, packet.SYN|packet.ACK|packet.ECE, nil), Pass},
		{"data with CWR and ECE", k.seg(true, packet.ACK|packet.ECE|packet.CWR, []byte("x")), Pass},
	} {
		if v, _ := h.send(c.seg); v != c.want {
			t.Errorf("%s: %v, want %v", c.name, v, c.want)
		}
	}
	if n := b.(Stats).Stats()["dropped"]; n != 1 {
		t.Errorf("dropped %d, want 1", n)
	}
}

func BenchmarkECNSYNDrop_Established(b *testing.B) {
	bh, _ := New("ecn-syn-drop")
	r := newBenchRig(b, "ecn-syn-drop", bh)
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}
