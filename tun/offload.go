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
	// ErrLongHeaders: headers longer than SegmentViews holds (IPv6 with
	// long extension headers); Split handles such packets.
	ErrLongHeaders = errors.New("tun: headers too long to view segments in place")

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
	var sg segmenter
	if err := sg.init(p); err != nil {
		return 0, err
	}
	if sg.n > len(out) {
		return 0, fmt.Errorf("%w: %d segments, %d buffers", ErrShortOut, sg.n, len(out))
	}
	for i := 0; i < sg.n; i++ {
		if err := sg.copySegment(i, data[:sg.hdrLen], &out[i], partial); err != nil {
			return i, err
		}
	}
	return sg.n, nil
}

// segmenter is what the segments of one super-packet share.
type segmenter struct {
	data        []byte
	h           packet.Parsed // the super-packet's headers
	hdrLen, mss int
	n           int // segments
	// Sums of the headers' fields every segment shares, so each segment
	// adds only its own: the IPv4 header without length, ID and checksum,
	// and the pseudo-header without length.
	ipSum, pseudoSum uint64
}

// init checks p's offload descriptor against its headers.
func (sg *segmenter) init(p *Packet) error {
	data, err := packetData(p)
	if err != nil {
		return err
	}
	o := p.Offload
	if o.GSOSize == 0 {
		return fmt.Errorf("%w: gso_size 0", ErrBadOffload)
	}
	if int(o.HdrLen) > len(data) {
		return fmt.Errorf("%w: hdr_len %d beyond packet of %d bytes", ErrBadOffload, o.HdrLen, len(data))
	}
	h := &sg.h
	h.Decode(data)
	if h.Malformed != packet.OK || h.Fragment || !h.HasPorts {
		return fmt.Errorf("%w: headers unreadable (%v)", ErrBadOffload, h.Malformed)
	}
	switch {
	case o.GSOType == GSOTCPv4 && h.Version == 4 && h.Proto == packet.ProtoTCP:
	case o.GSOType == GSOTCPv6 && h.Version == 6 && h.Proto == packet.ProtoTCP:
	case o.GSOType == GSOUDPL4 && h.Proto == packet.ProtoUDP:
	default:
		return fmt.Errorf("%w: gso type %d on IPv%d proto %d", ErrBadOffload, o.GSOType, h.Version, h.Proto)
	}
	sg.data, sg.hdrLen, sg.mss = data, h.PayloadOff, int(o.GSOSize)
	if sg.hdrLen+sg.mss > 0xffff {
		return fmt.Errorf("%w: segment of %d bytes", ErrBadOffload, sg.hdrLen+sg.mss)
	}
	if h.Version == 4 {
		sg.ipSum = packet.PartialSum(data[:2], 0)
		sg.ipSum = packet.PartialSum(data[6:10], sg.ipSum)
		sg.ipSum = packet.PartialSum(data[12:h.L4Off], sg.ipSum)
	}
	sg.pseudoSum = packet.PseudoHeaderPartialSum(h.Src, h.Dst, h.Proto)
	payload := len(data) - sg.hdrLen
	sg.n = (payload + sg.mss - 1) / sg.mss
	if sg.n == 0 {
		sg.n = 1 // a bare header: pass it on as one segment
	}
	return nil
}

// payload returns where segment i's payload lies in the super-packet.
func (sg *segmenter) payload(i int) (start, end int) {
	start = sg.hdrLen + i*sg.mss
	return start, min(start+sg.mss, len(sg.data))
}

// copySegment writes segment i into q as a packet of its own; hdr is the
// super-packet's headers.
func (sg *segmenter) copySegment(i int, hdr []byte, q *Packet, partial bool) error {
	start, end := sg.payload(i)
	segLen := sg.hdrLen + end - start
	if len(q.Buf) < Headroom+segLen {
		return fmt.Errorf("%w: buffer %d holds %d bytes, segment needs %d", ErrShortOut, i, len(q.Buf), Headroom+segLen)
	}
	s := q.Buf[Headroom : Headroom+segLen]
	copy(s[sg.hdrLen:], sg.data[start:end])
	q.Off, q.Len, q.Offload = Headroom, segLen, sg.header(i, hdr, s, partial)
	return nil
}

// header writes segment i's headers at s[:hdrLen], whose payload follows
// them, from the super-packet's headers hdr; it returns the segment's
// offload state. A full split completes the transport checksum too; a
// partial one leaves the pseudo-header sum for the kernel.
func (sg *segmenter) header(i int, hdr, s []byte, partial bool) Offload {
	h := &sg.h
	l4, segLen := h.L4Off, len(s)
	copy(s, hdr[:sg.hdrLen])
	if h.Version == 4 {
		id := binary.BigEndian.Uint16(hdr[4:6]) + uint16(i)
		binary.BigEndian.PutUint16(s[2:4], uint16(segLen))
		binary.BigEndian.PutUint16(s[4:6], id)
		binary.BigEndian.PutUint16(s[10:12], packet.FinishChecksum(sg.ipSum+uint64(segLen)+uint64(id)))
	} else {
		binary.BigEndian.PutUint16(s[4:6], uint16(segLen-40))
	}
	if h.Proto == packet.ProtoTCP {
		binary.BigEndian.PutUint32(s[l4+4:], h.Seq+uint32(i*sg.mss))
		flags := h.Flags
		if i != sg.n-1 {
			flags &^= packet.FIN | packet.PSH
		}
		if i != 0 {
			flags &^= packet.CWR
		}
		s[l4+13] = byte(flags)
	} else {
		binary.BigEndian.PutUint16(s[l4+4:], uint16(segLen-l4))
	}
	if !partial {
		var sh packet.Parsed
		sh.Decode(s)
		sh.FixChecksums()
		return Offload{}
	}
	csumOff := 16 // TCP
	if h.Proto == packet.ProtoUDP {
		csumOff = 6
	}
	binary.BigEndian.PutUint16(s[l4+csumOff:], packet.FoldPseudoHeader(sg.pseudoSum, segLen-l4))
	return Offload{NeedsCsum: true, CsumStart: uint16(l4), CsumOffset: uint16(csumOff)}
}

// maxHeaders bounds the headers SegmentViews handles: IPv4 and TCP with
// all their options take 120; more is IPv6 with long extension headers,
// left to Split.
const maxHeaders = 256

// SegmentViews lets a caller look at every segment of a super-packet, as
// SplitPartial would make it, without copying payloads: segment i's headers
// are written into the super-packet's own buffer just before its payload
// (over the end of segment i-1's payload, saved aside) and put back by
// Restore. When every segment passes untouched, the super-packet is
// forwarded whole and nothing was copied. Only one view exists at a time.
type SegmentViews struct {
	p     *Packet
	sg    segmenter
	hdr   [maxHeaders]byte // the super-packet's own headers
	saved [maxHeaders]byte // the bytes under the current view's headers
	cur   int              // the segment viewed, -1 if none
}

// Start prepares views of p's segments and returns how many there are. p
// must be a GSO super-packet; errors are Split's, or ErrLongHeaders.
func (v *SegmentViews) Start(p *Packet) (int, error) {
	v.p, v.cur = nil, -1
	if !p.Offload.IsGSO() {
		return 0, fmt.Errorf("%w: not a super-packet", ErrBadOffload)
	}
	if err := v.sg.init(p); err != nil {
		return 0, err
	}
	if v.sg.hdrLen > maxHeaders {
		return 0, fmt.Errorf("%w: %d bytes", ErrLongHeaders, v.sg.hdrLen)
	}
	v.p = p
	copy(v.hdr[:], v.sg.data[:v.sg.hdrLen])
	return v.sg.n, nil
}

// MaxLen is the length of the longest segment, which Copy's buffers must
// hold after Headroom.
func (v *SegmentViews) MaxLen() int {
	start, end := v.sg.payload(0)
	return v.sg.hdrLen + end - start
}

// View returns segment i in place: a packet in the super-packet's buffer
// whose bytes are those SplitPartial gives segment i, checksum partial. A
// behavior may change them; header changes go with Restore, payload changes
// stay in the super-packet.
func (v *SegmentViews) View(i int) Packet {
	v.Restore()
	start, end := v.sg.payload(i)
	at := start - v.sg.hdrLen
	s := v.sg.data[at:end]
	copy(v.saved[:v.sg.hdrLen], s)
	v.cur = i
	o := v.sg.header(i, v.hdr[:], s, true)
	return Packet{Buf: v.p.Buf, Off: v.p.Off + at, Len: len(s), Offload: o}
}

// Restore puts back the bytes the current view's headers covered.
func (v *SegmentViews) Restore() {
	if v.cur < 0 {
		return
	}
	start, _ := v.sg.payload(v.cur)
	copy(v.sg.data[start-v.sg.hdrLen:start], v.saved[:v.sg.hdrLen])
	v.cur = -1
}

// Copy writes segment i into q as its own packet, as SplitPartial would
// (restoring the current view first).
func (v *SegmentViews) Copy(i int, q *Packet) error {
	v.Restore()
	return v.sg.copySegment(i, v.hdr[:], q, true)
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
	// A kernel starts the sum at the transport header; a start inside the
	// IP header would write the checksum over it.
	if ip := ipHeaderLen(data); start < ip {
		return fmt.Errorf("%w: checksum start %d inside the IP header of %d bytes", ErrBadOffload, start, ip)
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

// ipHeaderLen is the length of data's fixed IP header (IPv4 with its
// options), or more than data holds when that is unknown.
func ipHeaderLen(data []byte) int {
	switch {
	case len(data) > 0 && data[0]>>4 == 4:
		return int(data[0]&0x0f) * 4
	case len(data) > 0 && data[0]>>4 == 6:
		return 40
	}
	return len(data) + 1
}

func packetData(p *Packet) ([]byte, error) {
	if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(p.Buf) {
		return nil, fmt.Errorf("%w: packet [%d:+%d] outside its buffer of %d", ErrBadOffload, p.Off, p.Len, len(p.Buf))
	}
	return p.Buf[p.Off : p.Off+p.Len], nil
}
