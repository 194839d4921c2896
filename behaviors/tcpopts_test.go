package behaviors

import (
	"encoding/binary"

	"github.com/faultbox/faultbox/internal/packet"
)

// withOptions returns seg, a segment built by tcpConn.seg, with raw TCP
// options inserted after its 20-byte header (padded with End of Option
// List to a multiple of 4) and its lengths and checksums fixed.
func withOptions(seg []byte, opts ...byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, packet.OptEnd)
	}
	var p packet.Parsed
	p.Decode(seg)
	at := p.L4Off + 20
	b := make([]byte, 0, len(seg)+len(opts))
	b = append(append(append(b, seg[:at]...), opts...), seg[at:]...)
	if p.Version == 4 {
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	} else {
		binary.BigEndian.PutUint16(b[4:6], uint16(len(b)-40))
	}
	b[p.L4Off+12] = byte((20+len(opts))/4) << 4
	p.Decode(b)
	p.FixChecksums()
	return b
}

// WithOptions is withOptions for the external fuzz test.
func WithOptions(seg []byte, opts ...byte) []byte { return withOptions(seg, opts...) }

// synOptions are the options of a Linux SYN: MSS 1460, SACK permitted,
// timestamps, NOP, window scale shift.
func synOptions(shift byte) []byte {
	return []byte{packet.OptMSS, 4, 0x05, 0xb4, packet.OptSACKPermitted, 2,
		packet.OptTimestamps, 10, 0, 0, 0, 1, 0, 0, 0, 0, packet.OptNOP, packet.OptWindowScale, 3, shift}
}

// SYNOptions is synOptions for the external fuzz test.
func SYNOptions(shift byte) []byte { return synOptions(shift) }

// sackOption is a SACK option (after two NOPs, as Linux aligns it) with
// the given block edges, left and right in turn.
func sackOption(edges ...uint32) []byte {
	o := []byte{packet.OptNOP, packet.OptNOP, packet.OptSACK, byte(2 + 4*len(edges))}
	for _, e := range edges {
		o = binary.BigEndian.AppendUint32(o, e)
	}
	return o
}

// SACKOption is sackOption for the external fuzz test.
func SACKOption(edges ...uint32) []byte { return sackOption(edges...) }

// sackEdges reads the SACK block edges of a segment.
func sackEdges(seg []byte) []uint32 {
	var p packet.Parsed
	p.Decode(seg)
	off, n, ok := p.TCPOption(packet.OptSACK)
	if !ok {
		return nil
	}
	var out []uint32
	for i := off + 2; i+4 <= off+n; i += 4 {
		out = append(out, binary.BigEndian.Uint32(seg[i:]))
	}
	return out
}
