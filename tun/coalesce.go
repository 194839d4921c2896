package tun

import (
	"bytes"
	"encoding/binary"

	"github.com/faultbox/faultbox/internal/packet"
)

// Small UDP packets cost a write() each, and each write runs the receiving
// host's stack and wakes its reader: a flood of 64-byte datagrams spends
// most of the device's time there. A run of datagrams of one flow that the
// sender's kernel would itself have sent as one UDP segmentation-offload
// (USO) super-packet is written that way instead, and the receiving kernel
// cuts it back into the same datagrams (or hands it whole to a socket that
// asked for UDP_GRO, as after a real NIC's GRO).
//
// The run is only formed when the result is byte-for-byte what was read:
// same headers but for the lengths, IPv4 IDs that count up one by one (the
// kernel numbers the segments that way), equal payloads but a shorter last
// one, and checksums as the sending kernel left them (a right IPv4 header
// checksum, the UDP one still to be finished: NeedsCsum with the
// pseudo-header sum for its own length), so a checksum a behavior broke on
// purpose is never recomputed.

// maxUDPRun bounds one run: UDP_MAX_SEGMENTS of older kernels.
const maxUDPRun = 64

// udpHdrOff returns the UDP header offset of a plain IPv4 (no options, not a
// fragment) or IPv6 (no extension headers) UDP packet whose checksum the
// kernel is to finish, and its payload length; ok is false for anything else.
func udpHdrOff(p *Packet) (l4, payload int, ok bool) {
	o := p.Offload
	if !p.valid() || o.IsGSO() || !o.NeedsCsum || o.CsumOffset != 6 {
		return 0, 0, false
	}
	d := p.Data()
	switch {
	case len(d) >= 28 && d[0] == 0x45 && d[9] == packet.ProtoUDP &&
		binary.BigEndian.Uint16(d[6:8])&^0x4000 == 0 && int(binary.BigEndian.Uint16(d[2:4])) == len(d):
		l4 = 20
	case len(d) >= 48 && d[0]>>4 == 6 && d[6] == packet.ProtoUDP &&
		int(binary.BigEndian.Uint16(d[4:6]))+40 == len(d):
		l4 = 40
	default:
		return 0, 0, false
	}
	if int(o.CsumStart) != l4 || int(binary.BigEndian.Uint16(d[l4+4:l4+6])) != len(d)-l4 {
		return 0, 0, false
	}
	return l4, len(d) - l4 - 8, true
}

// udpRun returns how many packets from pkts[0] on form one run (1: none
// joins the first).
func udpRun(pkts []Packet) int {
	l4, size, ok := udpHdrOff(&pkts[0])
	if !ok || size == 0 || len(pkts) < 2 {
		return 1
	}
	first := pkts[0].Data()
	pseudo := pseudoPartial(first, l4) // the run shares its addresses
	if !checksumsAsSent(first, l4, pseudo) {
		return 1
	}
	total := len(first)
	n := 1
	for n < len(pkts) && n < maxUDPRun {
		l, pay, ok := udpHdrOff(&pkts[n])
		if !ok || l != l4 || pay == 0 || pay > size || total+pay > MaxPacket {
			break
		}
		d := pkts[n].Data()
		if !sameUDPFlowHeaders(first, d, l4) || !checksumsAsSent(d, l4, pseudo) {
			break
		}
		if l4 == 20 && binary.BigEndian.Uint16(d[4:6]) != binary.BigEndian.Uint16(first[4:6])+uint16(n) {
			break
		}
		total += pay
		n++
		if pay < size {
			break // only the last may be short
		}
	}
	return n
}

// sameUDPFlowHeaders compares everything in two packets' IP and UDP headers
// but the lengths, the IPv4 ID and the checksums.
func sameUDPFlowHeaders(a, b []byte, l4 int) bool {
	if l4 == 20 {
		return bytes.Equal(a[0:2], b[0:2]) && bytes.Equal(a[6:10], b[6:10]) && bytes.Equal(a[12:24], b[12:24])
	}
	return bytes.Equal(a[0:4], b[0:4]) && bytes.Equal(a[6:44], b[6:44])
}

// joinUDPRun rewrites the first packet's headers in place for the run of
// pkts (as udpRun found it) and returns the offload descriptor of the
// super-packet: pkts[0] followed by the other packets' payloads. hdrs gets
// the original headers back for restoreUDPRun.
func joinUDPRun(pkts []Packet, hdrs *[48]byte) (Offload, int) {
	p := &pkts[0]
	d := p.Data()
	l4, size, _ := udpHdrOff(p)
	copy(hdrs[:], d[:l4+8])
	total := len(d)
	for i := 1; i < len(pkts); i++ {
		total += pkts[i].Len - l4 - 8
	}
	udpLen := total - l4
	if l4 == 20 {
		binary.BigEndian.PutUint16(d[2:4], uint16(total))
		d[10], d[11] = 0, 0
		binary.BigEndian.PutUint16(d[10:12], packet.Checksum(d[:20]))
	} else {
		binary.BigEndian.PutUint16(d[4:6], uint16(udpLen))
	}
	csum := packet.FoldPseudoHeader(pseudoPartial(d, l4), udpLen)
	binary.BigEndian.PutUint16(d[l4+4:], uint16(udpLen))
	binary.BigEndian.PutUint16(d[l4+6:], csum)
	return Offload{GSOType: GSOUDPL4, NeedsCsum: true, HdrLen: uint16(l4 + 8), GSOSize: uint16(size),
		CsumStart: uint16(l4), CsumOffset: 6}, l4 + 8
}

// pseudoPartial is UDP packet d's pseudo-header sum without its length: a
// partial checksum (what the kernel completes from the UDP header on) is
// packet.FoldPseudoHeader of it and the UDP length.
func pseudoPartial(d []byte, l4 int) uint64 {
	addrs := d[12:20]
	if l4 == 40 {
		addrs = d[8:40]
	}
	return packet.PartialSum(addrs, packet.ProtoUDP)
}

// checksumsAsSent reports whether d's checksums are those its sender's
// kernel wrote: the IPv4 header checksum right, and the UDP field the
// partial checksum for d's own length (pseudo: pseudoPartial of d).
// Segmenting the run rewrites both.
func checksumsAsSent(d []byte, l4 int, pseudo uint64) bool {
	return (l4 != 20 || packet.Checksum(d[:20]) == 0) &&
		binary.BigEndian.Uint16(d[l4+6:]) == packet.FoldPseudoHeader(pseudo, len(d)-l4)
}

// restoreUDPRun undoes joinUDPRun on the first packet.
func restoreUDPRun(p *Packet, hdrs *[48]byte, hdrLen int) {
	copy(p.Data(), hdrs[:hdrLen])
}
