package packet

// TCP option kinds the engine and behaviors read or rewrite.
const (
	OptEnd           = 0
	OptNOP           = 1
	OptMSS           = 2
	OptWindowScale   = 3
	OptSACKPermitted = 4
	OptSACK          = 5
	OptTimestamps    = 8
	OptFastOpen      = 34  // RFC 7413
	OptExperimental  = 254 // RFC 6994; Fast Open's before RFC 7413, with magic 0xF989
)

// TCPOption finds the first TCP option of kind in a readable TCP header and
// returns its offset in p.Buf and its length (kind and length bytes
// included), so that a behavior can read or rewrite it in place. It walks
// the options as a receiver does: it stops at End of Option List and at
// the first option whose length is too short or runs past the header.
func (p *Parsed) TCPOption(kind uint8) (off, n int, ok bool) {
	if !p.IsTCP() {
		return 0, 0, false
	}
	start := p.L4Off + 20
	opts := p.Buf[start:p.PayloadOff]
	for i := 0; i < len(opts); {
		k := opts[i]
		switch k {
		case OptEnd:
			return 0, 0, false
		case OptNOP:
			if kind == OptNOP {
				return start + i, 1, true
			}
			i++
			continue
		}
		if i+1 >= len(opts) {
			return 0, 0, false
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return 0, 0, false
		}
		if k == kind {
			return start + i, l, true
		}
		i += l
	}
	return 0, 0, false
}

// HasFastOpen reports whether the TCP header carries a Fast Open option:
// kind 34 (RFC 7413), or kind 254 with Fast Open's magic 0xF989, the
// experimental form that predates the kind and that Linux still sends to a
// server that answered in it.
func (p *Parsed) HasFastOpen() bool {
	if _, _, ok := p.TCPOption(OptFastOpen); ok {
		return true
	}
	off, n, ok := p.TCPOption(OptExperimental)
	return ok && n >= 4 && p.Buf[off+2] == 0xf9 && p.Buf[off+3] == 0x89
}
