package behaviors

import (
	"net/netip"
	"testing"
)

// lab status shows a behavior's match: all of it, in the profile's words.
func TestMatch_StringShowsTheWholeMatch(t *testing.T) {
	resolve := func(name string) ([]netip.Addr, bool) {
		if name == "server" {
			return []netip.Addr{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")}, true
		}
		return nil, false
	}
	for _, c := range []struct {
		spec MatchSpec
		want string
	}{
		{MatchSpec{}, "all"},
		{MatchSpec{TCPFlags: []string{"FIN"}}, "protocol: tcp, tcp_flags: [fin]"},
		{MatchSpec{Direction: "upstream", Protocol: "udp", Port: 53}, "direction: upstream, protocol: udp, port: 53"},
		{MatchSpec{Direction: "downstream", From: []string{"server"}, To: []string{"198.18.0.0/15"}, TCPFlags: []string{"syn", "bare-ack"}},
			"direction: downstream, protocol: tcp, from: [198.18.0.2/32, 2001:db8::2/128], to: [198.18.0.0/15], tcp_flags: [syn, bare-ack]"},
		{MatchSpec{Protocol: "icmp"}, "protocol: icmp"},
	} {
		m, err := c.spec.Compile(resolve)
		if err != nil {
			t.Fatalf("%+v: %v", c.spec, err)
		}
		if got := m.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.spec, got, c.want)
		}
	}
}
