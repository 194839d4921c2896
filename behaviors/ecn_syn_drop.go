package behaviors

import "github.com/faultbox/faultbox/internal/packet"

// ECNSYNDrop (registered as "ecn-syn-drop") drops ECN-setup SYNs: a SYN
// with ECE and CWR set (RFC 3168 section 6.1.1; Accurate ECN's SYN sets
// AE too), as the firewalls and hosts did that made RFC 3168 recommend,
// in its section 6.1.1.1, resending the SYN without them. Every other
// segment passes, plain SYNs (and so such retransmissions) included.
type ECNSYNDrop struct {
	dropped uint64
}

func (e *ECNSYNDrop) Handle(p *Packet) Verdict {
	const ecnSetup = packet.SYN | packet.ECE | packet.CWR
	if !p.IsTCP() || p.Flags&(ecnSetup|packet.ACK) != ecnSetup {
		return Pass
	}
	e.dropped++
	p.Note = "ecn-syn-drop: ECN-setup SYN dropped"
	return Drop
}

func (e *ECNSYNDrop) Stats() map[string]uint64 { return map[string]uint64{"dropped": e.dropped} }

func init() {
	Register("ecn-syn-drop", "drop ECN-setup SYNs (ECE and CWR set): the ECN black hole of RFC 3168 section 6.1.1.1",
		func() Behavior { return &ECNSYNDrop{} })
}
