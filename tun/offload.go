package tun

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/faultbox/faultbox/internal/packet"
)

// Errors of Split and Complete. They are values so callers can count them.
var (
	ErrBadOffload = errors.New("tun: offload header does not match the packet")
	ErrShortOut   = errors.New("tun: not enough output buffers for the segments")

	errNoOffload = errors.New("packet needs offload support the port does not have (Split or Complete it first)")
)

// Split writes the segments of the GSO super-packet p into out[0:n], each as
// a complete packet (its own IP length, IPv4 ID, TCP sequence number and flags,
// full IPv4 header and transport checksums) at out[i].Buf[Headroom:], with a
// zero Offload. out[i].Buf must each hold at least Headroom plus one segment
// (BufSize always does). A packet that is not GSO is copied into out[0] with
// its checksum completed, so callers can Split whatever they read.
//
// The header length is taken from the packet itself, not from p.Offload.HdrLen:
// the kernel reports the linear part of its buffer there, which on the
// forwarding path can be a whole segment. Split never panics on hostile input;
// it returns ErrBadOffload or ErrShortOut instead. It does not allocate.
func Split(p *Packet, out []Packet) (int, error) { return split(p, out, false) }

// SplitPartial is Split for segments that go to a port with offloads: each
// segment's transport checksum is left as the kernel hands packets over, the
// pseudo-header sum with NeedsCsum set, so splitting a super-packet only to
// look at its segments costs a copy, not a checksum over every byte. The
// IPv4 header checksum is complete.
func SplitPartial(p *Packet, out []Packet) (int, error) { return split(p, out, true) }

func split(p *Packet, out []Packet, partial bool) (int, error) {
	data, err := packetData(p)
	if err != nil {
		return 0, err
	}
	o := p.Offload
	if !o.IsGSO() {
		if len(out) < 1 {
			return 0, ErrShortOut
		}
		if len(out[0].Buf) < Headroom+len(data) {
			return 0, ErrShortOut
		}
		q := &out[0]
		q.Off, q.Len, q.Offload = Headroom, copy(q.Buf[Headroom:], data), o
		if err := Complete(q); err != nil {
			return 0, err
		}
		return 1, nil
	}
	if o.GSOSize == 0 {
		return 0, fmt.Errorf("%w: gso_size 0", ErrBadOffload)
	}
	if int(o.HdrLen) > len(data) {
		return 0, fmt.Errorf("%w: hdr_len %d beyond packet of %d bytes", ErrBadOffload, o.HdrLen, len(data))
	}
	var h packet.Parsed // on the stack: Decode does not allocate
	h.Decode(data)
	if h.Malformed != packet.OK || h.Fragment || !h.HasPorts {
		return 0, fmt.Errorf("%w: headers unreadable (%v)", ErrBadOffload, h.Malformed)
	}
	switch {
	case o.GSOType == GSOTCPv4 && h.Version == 4 && h.Proto == packet.ProtoTCP:
	case o.GSOType == GSOTCPv6 && h.Version == 6 && h.Proto == packet.ProtoTCP:
	case o.GSOType == GSOUDPL4 && h.Proto == packet.ProtoUDP:
	default:
		return 0, fmt.Errorf("%w: gso type %d on IPv%d proto %d", ErrBadOffload, o.GSOType, h.Version, h.Proto)
	}
	hdrLen := h.PayloadOff
	mss := int(o.GSOSize)
	if hdrLen+mss > 0xffff {
		return 0, fmt.Errorf("%w: segment of %d bytes", ErrBadOffload, hdrLen+mss)
	}
	payload := len(data) - hdrLen
	n := (payload + mss - 1) / mss
	if n == 0 {
		n = 1 // a bare header: pass it on as one segment
	}
	if n > len(out) {
		return 0, fmt.Errorf("%w: %d segments, %d buffers", ErrShortOut, n, len(out))
	}
	l4 := h.L4Off
	for i := 0; i < n; i++ {
		start := hdrLen + i*mss
		end := min(start+mss, len(data))
		segLen := hdrLen + end - start
		q := &out[i]
		if len(q.Buf) < Headroom+segLen {
			return i, fmt.Errorf("%w: buffer %d holds %d bytes, segment needs %d", ErrShortOut, i, len(q.Buf), Headroom+segLen)
		}
		s := q.Buf[Headroom : Headroom+segLen]
		copy(s, data[:hdrLen])
		copy(s[hdrLen:], data[start:end])
		if h.Version == 4 {
			binary.BigEndian.PutUint16(s[2:4], uint16(segLen))
			binary.BigEndian.PutUint16(s[4:6], binary.BigEndian.Uint16(data[4:6])+uint16(i))
		} else {
			binary.BigEndian.PutUint16(s[4:6], uint16(segLen-40))
		}
		if h.Proto == packet.ProtoTCP {
			binary.BigEndian.PutUint32(s[l4+4:], h.Seq+uint32(i*mss))
			flags := h.Flags
			if i != n-1 {
				flags &^= packet.FIN | packet.PSH
			}
			if i != 0 {
				flags &^= packet.CWR
			}
			s[l4+13] = flags
		} else {
			binary.BigEndian.PutUint16(s[l4+4:], uint16(segLen-l4))
		}
		q.Off, q.Len, q.Offload = Headroom, segLen, Offload{}
		if partial {
			csumOff := 16 // TCP
			if h.Proto == packet.ProtoUDP {
				csumOff = 6
			}
			if h.Version == 4 {
				s[10], s[11] = 0, 0
				binary.BigEndian.PutUint16(s[10:12], packet.Checksum(s[:l4]))
			}
			binary.BigEndian.PutUint16(s[l4+csumOff:], packet.PseudoHeaderSum(h.Src, h.Dst, h.Proto, segLen-l4))
			q.Offload = Offload{NeedsCsum: true, CsumStart: uint16(l4), CsumOffset: uint16(csumOff)}
			continue
		}
		var sh packet.Parsed
		sh.Decode(s)
		sh.FixChecksums()
	}
	return n, nil
}

// Complete finishes the transport checksum of a packet whose Offload says
// NeedsCsum (the kernel left only the pseudo-header sum in the field) and
// clears the flag, so the packet can go to a port without offloads or into a
// capture file. A GSO super-packet must be Split instead (Split completes
// every segment). Complete does nothing for a packet without NeedsCsum.
func Complete(p *Packet) error {
	o := p.Offload
	if !o.NeedsCsum {
		return nil
	}
	if o.IsGSO() {
		return fmt.Errorf("%w: complete a gso packet by splitting it", ErrBadOffload)
	}
	data, err := packetData(p)
	if err != nil {
		return err
	}
	start, field := int(o.CsumStart), int(o.CsumStart)+int(o.CsumOffset)
	if field+2 > len(data) {
		return fmt.Errorf("%w: checksum at %d+%d beyond packet of %d bytes", ErrBadOffload, o.CsumStart, o.CsumOffset, len(data))
	}
	// The field holds the folded pseudo-header sum, so the checksum over
	// everything from csum_start is the final value (as skb_checksum_help).
	c := packet.Checksum(data[start:])
	if c == 0 {
		c = 0xffff // 0 means "no checksum" to UDP; equal to 0xffff for TCP
	}
	binary.BigEndian.PutUint16(data[field:], c)
	p.Offload = Offload{}
	return nil
}

func packetData(p *Packet) ([]byte, error) {
	if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(p.Buf) {
		return nil, fmt.Errorf("%w: packet [%d:+%d] outside its buffer of %d", ErrBadOffload, p.Off, p.Len, len(p.Buf))
	}
	return p.Buf[p.Off : p.Off+p.Len], nil
}
