package packet

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// withOptions builds an IPv4 SYN carrying raw TCP option bytes (padded
// with End of Option List to a multiple of 4).
func withOptions(t *testing.T, opts []byte) *Parsed {
	t.Helper()
	for len(opts)%4 != 0 {
		opts = append(opts, OptEnd)
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 64240}
	tcp.SetNetworkLayerForChecksum(ip)
	raw := serialize(t, ip, tcp)
	// Splice the options in by hand: gopacket would normalize them.
	b := append(append(append([]byte(nil), raw[:40]...), opts...), raw[40:]...)
	b[3] = byte(len(b))
	b[32] = byte((20+len(opts))/4) << 4
	var p Parsed
	p.Decode(b)
	if p.Malformed != OK {
		t.Fatalf("test packet malformed: %v", p.Malformed)
	}
	return &p
}

func TestTCPOption_FindsKindsPastNOPsAndOthers(t *testing.T) {
	p := withOptions(t, []byte{OptMSS, 4, 5, 0xb4, OptNOP, OptWindowScale, 3, 9, OptNOP, OptNOP, OptSACK, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	for _, c := range []struct {
		kind    uint8
		off, n  int
		present bool
	}{{OptMSS, 40, 4, true}, {OptWindowScale, 45, 3, true}, {OptSACK, 50, 10, true}, {OptTimestamps, 0, 0, false}, {OptNOP, 44, 1, true}} {
		off, n, ok := p.TCPOption(c.kind)
		if ok != c.present || off != c.off || n != c.n {
			t.Errorf("kind %d: (%d, %d, %v), want (%d, %d, %v)", c.kind, off, n, ok, c.off, c.n, c.present)
		}
	}
	if p.WindowScale() != 9 {
		t.Errorf("WindowScale = %d, want 9", p.WindowScale())
	}
}

func TestTCPOption_StopsAtEndAndAtBadLengths(t *testing.T) {
	for name, opts := range map[string][]byte{
		"after end":         {OptEnd, OptWindowScale, 3, 7},
		"zero length":       {OptMSS, 0, OptWindowScale, 3, 7},
		"one length":        {OptMSS, 1, OptWindowScale, 3, 7},
		"past the header":   {OptNOP, OptNOP, OptNOP, OptWindowScale, 6, 7, 0, 0},
		"kind without size": {OptNOP, OptNOP, OptNOP, OptWindowScale},
	} {
		if off, n, ok := withOptions(t, opts).TCPOption(OptWindowScale); ok {
			t.Errorf("%s: found at %d+%d in % x", name, off, n, opts)
		}
	}
	if w := withOptions(t, []byte{OptWindowScale, 4, 7, 0}).WindowScale(); w != -1 {
		t.Errorf("a window scale option of length 4 reads as %d, want -1", w)
	}
}

func TestHasFastOpen_RFCKindAndExperimentalMagic(t *testing.T) {
	for _, c := range []struct {
		opts []byte
		want bool
	}{
		{[]byte{OptFastOpen, 2}, true},                                    // cookie request
		{[]byte{OptFastOpen, 10, 1, 2, 3, 4, 5, 6, 7, 8}, true},           // cookie
		{[]byte{OptExperimental, 4, 0xf9, 0x89}, true},                    // experimental request
		{[]byte{OptExperimental, 4, 0x12, 0x34}, false},                   // another experiment
		{[]byte{OptMSS, 4, 5, 0xb4, OptNOP, OptWindowScale, 3, 7}, false}, // none
	} {
		if got := withOptions(t, c.opts).HasFastOpen(); got != c.want {
			t.Errorf("% x: HasFastOpen %v, want %v", c.opts, got, c.want)
		}
	}
	var udp Parsed
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, 2}}
	u := &layers.UDP{SrcPort: 1, DstPort: 2}
	u.SetNetworkLayerForChecksum(ip)
	udp.Decode(serialize(t, ip, u, gopacket.Payload{OptFastOpen, 2}))
	if udp.HasFastOpen() {
		t.Error("a UDP datagram has no TCP options")
	}
}
