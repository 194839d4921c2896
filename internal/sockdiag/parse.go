package sockdiag

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Wire sizes and numbers (include/uapi/linux/{netlink,inet_diag}.h).
const (
	nlmsgHdrLen  = 16 // struct nlmsghdr
	reqV2Len     = 56 // struct inet_diag_req_v2
	diagMsgLen   = 72 // struct inet_diag_msg
	inetDiagInfo = 2  // INET_DIAG_INFO: struct tcp_info
	nlaTypeMask  = 0x3fff
)

// Offsets in struct tcp_info (include/uapi/linux/tcp.h). The attribute is
// as long as the running kernel's struct: every read checks its length, so
// fields an older kernel lacks read as zero.
const (
	tiRetransmits   = 2
	tiProbes        = 3
	tiBackoff       = 4
	tiOptions       = 5
	tiWScales       = 6 // snd_wscale in the low 4 bits, rcv_wscale in the high 4
	tiFastOpenFail  = 7 // bits 1-2; bit 0 is delivery_rate_app_limited
	tiRTO           = 8 // µs
	tiUnacked       = 24
	tiLost          = 32
	tiRetrans       = 36
	tiLastDataSent  = 44 // ms
	tiLastDataRecv  = 52 // ms
	tiLastAckRecv   = 56 // ms
	tiRTT           = 68 // µs
	tiRTTVar        = 72 // µs
	tiSndCwnd       = 80
	tiTotalRetrans  = 100
	tiBytesAcked    = 120 // u64, since Linux 4.1
	tiBytesReceived = 128 // u64
	tiMinRTT        = 148 // µs, since Linux 4.6
	tiRwndLimited   = 176 // u64 µs, since Linux 4.10
	tiBytesRetrans  = 208 // u64, since Linux 4.19
	tiSndWnd        = 228 // since Linux 5.4
	tiRcvWnd        = 232 // since Linux 6.1
)

var ne = binary.NativeEndian

// parseMessages walks one read of netlink messages, appending the sockets
// of request seq that pass f to out. done is set by NLMSG_DONE or an error
// reply. Replies to other sequence numbers (a dump abandoned earlier) are
// skipped. NLM_F_DUMP_INTR (the tables changed during the dump) is
// ignored: a sample may then miss or repeat a socket, which a time series
// tolerates.
func parseMessages(b []byte, seq uint32, f Filter, out []Socket) (_ []Socket, done bool, err error) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return out, false, fmt.Errorf("netlink header: %d trailing bytes", len(b))
		}
		l := ne.Uint32(b[0:])
		typ := ne.Uint16(b[4:])
		mseq := ne.Uint32(b[8:])
		if l < nlmsgHdrLen || uint64(l) > uint64(len(b)) {
			return out, false, fmt.Errorf("netlink message length %d with %d bytes left", l, len(b))
		}
		payload := b[nlmsgHdrLen:l]
		b = b[min(align4(int(l)), len(b)):]
		if mseq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_DONE:
			if len(payload) >= 4 {
				if e := int32(ne.Uint32(payload)); e < 0 {
					return out, true, errnoOf(e)
				}
			}
			return out, true, nil
		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return out, true, fmt.Errorf("netlink error message of %d bytes", len(payload))
			}
			if e := int32(ne.Uint32(payload)); e != 0 {
				return out, true, errnoOf(e)
			}
			// 0 is an ACK, not an error
		case unix.SOCK_DIAG_BY_FAMILY:
			s, err := parseMessage(payload)
			if err != nil {
				return out, false, err
			}
			if f.Match(&s) {
				out = append(out, s)
			}
		}
	}
	return out, false, nil
}

func errnoOf(e int32) error {
	return syscall.Errno(uint32(-int64(e)))
}

func align4(n int) int { return (n + 3) &^ 3 }

// parseMessage decodes one struct inet_diag_msg and its attributes.
func parseMessage(b []byte) (Socket, error) {
	var s Socket
	if len(b) < diagMsgLen {
		return s, fmt.Errorf("inet_diag_msg: %d bytes, want >= %d", len(b), diagMsgLen)
	}
	s.Family = b[0]
	s.State = State(b[1])
	s.Timer = Timer(b[2])
	s.Retrans = b[3]
	sport := binary.BigEndian.Uint16(b[4:])
	dport := binary.BigEndian.Uint16(b[6:])
	switch s.Family {
	case unix.AF_INET:
		s.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[8:12])), sport)
		s.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[24:28])), dport)
	case unix.AF_INET6:
		s.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), sport)
		s.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[24:40])), dport)
	default:
		return s, fmt.Errorf("inet_diag_msg: family %d", s.Family)
	}
	// b[40:44] is the interface index; the cookie is two u32, low half first.
	s.Cookie = uint64(ne.Uint32(b[44:])) | uint64(ne.Uint32(b[48:]))<<32
	s.TimerExpires = ms(ne.Uint32(b[52:]))
	s.RecvQ = ne.Uint32(b[56:])
	s.SendQ = ne.Uint32(b[60:])
	s.UID = ne.Uint32(b[64:])
	s.Inode = ne.Uint32(b[68:])

	for a := b[diagMsgLen:]; len(a) >= 4; {
		l := int(ne.Uint16(a))
		typ := ne.Uint16(a[2:]) & nlaTypeMask
		if l < 4 || l > len(a) {
			return s, fmt.Errorf("inet_diag attribute %d: length %d with %d bytes left", typ, l, len(a))
		}
		if typ == inetDiagInfo {
			parseTCPInfo(&s, a[4:l])
		}
		if align4(l) >= len(a) {
			break
		}
		a = a[align4(l):]
	}
	return s, nil
}

// parseTCPInfo reads struct tcp_info fields that b is long enough to hold.
func parseTCPInfo(s *Socket, b []byte) {
	s.HasInfo = true
	s.Retransmits = u8at(b, tiRetransmits)
	s.Probes = u8at(b, tiProbes)
	s.Backoff = u8at(b, tiBackoff)
	s.RTO = us(u32at(b, tiRTO))
	s.Unacked = u32at(b, tiUnacked)
	s.Lost = u32at(b, tiLost)
	s.RetransOut = u32at(b, tiRetrans)
	s.LastDataSent = ms(u32at(b, tiLastDataSent))
	s.LastDataRecv = ms(u32at(b, tiLastDataRecv))
	s.LastAckRecv = ms(u32at(b, tiLastAckRecv))
	s.RTT = us(u32at(b, tiRTT))
	s.RTTVar = us(u32at(b, tiRTTVar))
	s.Cwnd = u32at(b, tiSndCwnd)
	s.TotalRetrans = u32at(b, tiTotalRetrans)
	s.BytesAcked = u64at(b, tiBytesAcked)
	s.BytesReceived = u64at(b, tiBytesReceived)
	if v := u32at(b, tiMinRTT); v != ^uint32(0) { // ~0: no sample yet
		s.MinRTT = us(v)
	}
	s.Options = u8at(b, tiOptions)
	w := u8at(b, tiWScales)
	s.SndWScale, s.RcvWScale = w&0x0f, w>>4
	s.FastOpenClientFail = u8at(b, tiFastOpenFail) >> 1 & 0x3
	s.RwndLimited = time.Duration(u64at(b, tiRwndLimited)) * time.Microsecond
	s.BytesRetrans = u64at(b, tiBytesRetrans)
	s.SndWnd = u32at(b, tiSndWnd)
	s.RcvWnd = u32at(b, tiRcvWnd)
}

func u8at(b []byte, off int) uint8 {
	if off < len(b) {
		return b[off]
	}
	return 0
}

func u32at(b []byte, off int) uint32 {
	if off+4 <= len(b) {
		return ne.Uint32(b[off:])
	}
	return 0
}

func u64at(b []byte, off int) uint64 {
	if off+8 <= len(b) {
		return ne.Uint64(b[off:])
	}
	return 0
}

func us(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
