package sockdiag

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSock is a struct inet_diag_msg to encode.
type rawSock struct {
	fam, state, timer, retrans uint8
	src, dst                   netip.AddrPort
	cookie                     uint64
	expires, rq, wq, uid, ino  uint32
}

func (r rawSock) bytes() []byte {
	b := make([]byte, diagMsgLen)
	b[0], b[1], b[2], b[3] = r.fam, r.state, r.timer, r.retrans
	binary.BigEndian.PutUint16(b[4:], r.src.Port())
	binary.BigEndian.PutUint16(b[6:], r.dst.Port())
	s, d := r.src.Addr().AsSlice(), r.dst.Addr().AsSlice()
	copy(b[8:24], s)
	copy(b[24:40], d)
	ne.PutUint32(b[40:], 1) // ifindex: not decoded
	ne.PutUint32(b[44:], uint32(r.cookie))
	ne.PutUint32(b[48:], uint32(r.cookie>>32))
	ne.PutUint32(b[52:], r.expires)
	ne.PutUint32(b[56:], r.rq)
	ne.PutUint32(b[60:], r.wq)
	ne.PutUint32(b[64:], r.uid)
	ne.PutUint32(b[68:], r.ino)
	return b
}

// attr encodes one rtattr, padded to 4 bytes.
func attr(typ uint16, data []byte) []byte {
	b := make([]byte, align4(4+len(data)))
	ne.PutUint16(b, uint16(4+len(data)))
	ne.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

// nlmsg encodes one netlink message, padded to 4 bytes.
func nlmsg(typ uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, align4(nlmsgHdrLen+len(payload)))
	ne.PutUint32(b, uint32(nlmsgHdrLen+len(payload)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], unix.NLM_F_MULTI)
	ne.PutUint32(b[8:], seq)
	copy(b[nlmsgHdrLen:], payload)
	return b
}

// tcpInfoBytes is ti in the kernel's layout (x/sys mirrors the uapi struct).
func tcpInfoBytes(ti *unix.TCPInfo) []byte {
	return append([]byte(nil), (*[unix.SizeofTCPInfo]byte)(unsafe.Pointer(ti))[:]...)
}

var (
	v4Sock = rawSock{
		fam: unix.AF_INET, state: uint8(CloseWait), timer: uint8(TimerOn), retrans: 3,
		src: netip.MustParseAddrPort("198.18.0.2:80"), dst: netip.MustParseAddrPort("198.18.0.1:40000"),
		cookie: 0x1122334455667788, expires: 1296, rq: 1, wq: 10000, uid: 33, ino: 4242,
	}
	v6Sock = rawSock{
		fam: unix.AF_INET6, state: uint8(FinWait2), timer: uint8(TimerKeepalive),
		src: netip.MustParseAddrPort("[2001:db8::2]:443"), dst: netip.MustParseAddrPort("[2001:db8::1]:50000"),
		cookie: 7, expires: 59000, ino: 1,
	}
	v4Info = unix.TCPInfo{
		Retransmits: 3, Probes: 2, Backoff: 4, Rto: 1632000, Unacked: 5, Lost: 6, Retrans: 7,
		Last_data_sent: 336, Last_data_recv: 2120, Last_ack_recv: 2119, Rtt: 18, Rttvar: 9,
		Snd_cwnd: 10, Total_retrans: 11, Bytes_acked: 1 << 40, Bytes_received: 12345, Min_rtt: 17,
		Options: OptSACK | OptWScale | OptSYNData, Rwnd_limited: 1500, Bytes_retrans: 2896, Snd_wnd: 64, Rcv_wnd: 65536,
	}
)

func v4Want() Socket {
	return Socket{
		Family: unix.AF_INET, State: CloseWait, Src: v4Sock.src, Dst: v4Sock.dst,
		Timer: TimerOn, TimerExpires: 1296 * time.Millisecond, Retrans: 3, RecvQ: 1, SendQ: 10000,
		UID: 33, Inode: 4242, Cookie: 0x1122334455667788,
		HasInfo: true, Retransmits: 3, Probes: 2, Backoff: 4, RTO: 1632 * time.Millisecond,
		RTT: 18 * time.Microsecond, RTTVar: 9 * time.Microsecond, MinRTT: 17 * time.Microsecond,
		Cwnd: 10, Unacked: 5, Lost: 6, RetransOut: 7, TotalRetrans: 11,
		LastDataSent: 336 * time.Millisecond, LastDataRecv: 2120 * time.Millisecond,
		LastAckRecv: 2119 * time.Millisecond, BytesAcked: 1 << 40, BytesReceived: 12345,
		Options: OptSACK | OptWScale | OptSYNData, SndWScale: 7, RcvWScale: 10, FastOpenClientFail: TFOSYNRetransmitted,
		RwndLimited: 1500 * time.Microsecond, BytesRetrans: 2896, SndWnd: 64, RcvWnd: 65536,
	}
}

func v4Payload() []byte {
	info := v4Info
	b := v4Sock.bytes()
	b = append(b, attr(8, []byte{1})...) // INET_DIAG_SHUTDOWN: skipped
	ti := tcpInfoBytes(&info)
	// The bitfield bytes x/sys leaves out: snd_wscale 7, rcv_wscale 10;
	// delivery_rate_app_limited 1, fastopen_client_fail 3.
	ti[tiWScales], ti[tiFastOpenFail] = 10<<4|7, 3<<1|1
	return append(b, attr(inetDiagInfo, ti)...)
}

func TestTCPInfoOffsets_MatchUAPIStruct(t *testing.T) {
	var ti unix.TCPInfo
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"retransmits", tiRetransmits, unsafe.Offsetof(ti.Retransmits)},
		{"probes", tiProbes, unsafe.Offsetof(ti.Probes)},
		{"backoff", tiBackoff, unsafe.Offsetof(ti.Backoff)},
		{"rto", tiRTO, unsafe.Offsetof(ti.Rto)},
		{"unacked", tiUnacked, unsafe.Offsetof(ti.Unacked)},
		{"lost", tiLost, unsafe.Offsetof(ti.Lost)},
		{"retrans", tiRetrans, unsafe.Offsetof(ti.Retrans)},
		{"last_data_sent", tiLastDataSent, unsafe.Offsetof(ti.Last_data_sent)},
		{"last_data_recv", tiLastDataRecv, unsafe.Offsetof(ti.Last_data_recv)},
		{"last_ack_recv", tiLastAckRecv, unsafe.Offsetof(ti.Last_ack_recv)},
		{"rtt", tiRTT, unsafe.Offsetof(ti.Rtt)},
		{"rttvar", tiRTTVar, unsafe.Offsetof(ti.Rttvar)},
		{"snd_cwnd", tiSndCwnd, unsafe.Offsetof(ti.Snd_cwnd)},
		{"total_retrans", tiTotalRetrans, unsafe.Offsetof(ti.Total_retrans)},
		{"bytes_acked", tiBytesAcked, unsafe.Offsetof(ti.Bytes_acked)},
		{"bytes_received", tiBytesReceived, unsafe.Offsetof(ti.Bytes_received)},
		{"min_rtt", tiMinRTT, unsafe.Offsetof(ti.Min_rtt)},
		{"options", tiOptions, unsafe.Offsetof(ti.Options)},
		{"rwnd_limited", tiRwndLimited, unsafe.Offsetof(ti.Rwnd_limited)},
		{"bytes_retrans", tiBytesRetrans, unsafe.Offsetof(ti.Bytes_retrans)},
		{"snd_wnd", tiSndWnd, unsafe.Offsetof(ti.Snd_wnd)},
		{"rcv_wnd", tiRcvWnd, unsafe.Offsetof(ti.Rcv_wnd)},
	} {
		if c.got != c.want {
			t.Errorf("tcp_info %s at %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestParseMessage_IPv4WithTCPInfo(t *testing.T) {
	got, err := parseMessage(v4Payload())
	if err != nil {
		t.Fatal(err)
	}
	if want := v4Want(); got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseMessage_IPv6WithoutTCPInfo(t *testing.T) {
	got, err := parseMessage(v6Sock.bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := Socket{Family: unix.AF_INET6, State: FinWait2, Src: v6Sock.src, Dst: v6Sock.dst,
		Timer: TimerKeepalive, TimerExpires: 59 * time.Second, Cookie: 7, Inode: 1}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseMessage_OlderKernelShortTCPInfo(t *testing.T) {
	info := v4Info
	// Linux 3.x ends struct tcp_info after total_retrans (104 bytes).
	b := append(v4Sock.bytes(), attr(inetDiagInfo, tcpInfoBytes(&info)[:104])...)
	got, err := parseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	want := v4Want()
	want.BytesAcked, want.BytesReceived, want.MinRTT = 0, 0, 0
	want.RwndLimited, want.BytesRetrans, want.SndWnd, want.RcvWnd = 0, 0, 0, 0
	want.SndWScale, want.RcvWScale, want.FastOpenClientFail = 0, 0, 0 // bitfields this payload leaves zero
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// An empty attribute: info present, every field zero.
	got, err = parseMessage(append(v4Sock.bytes(), attr(inetDiagInfo, nil)...))
	if err != nil || !got.HasInfo || got.RTO != 0 || got.Unacked != 0 {
		t.Errorf("empty tcp_info: %+v, %v", got, err)
	}
}

func TestParseMessage_NoRTTSampleYet(t *testing.T) {
	info := v4Info
	info.Min_rtt = ^uint32(0)
	got, err := parseMessage(append(v4Sock.bytes(), attr(inetDiagInfo, tcpInfoBytes(&info))...))
	if err != nil || got.MinRTT != 0 {
		t.Errorf("min_rtt ~0: MinRTT %v, err %v", got.MinRTT, err)
	}
}

func TestParseMessage_TruncatedNeverPanics(t *testing.T) {
	full := v4Payload()
	for n := 0; n < len(full); n++ {
		s, err := parseMessage(full[:n])
		switch {
		case n < diagMsgLen && err == nil:
			t.Errorf("%d bytes: no error", n)
		case n >= diagMsgLen && err == nil && s.Src != v4Sock.src:
			t.Errorf("%d bytes: src %v", n, s.Src)
		}
	}
	// Cut inside the tcp_info attribute: its length runs past the end.
	if _, err := parseMessage(full[:len(full)-8]); err == nil {
		t.Error("attribute cut short: no error")
	}
}

func TestParseMessage_BadAttributeAndFamily(t *testing.T) {
	bad := append(v4Sock.bytes(), 2, 0, 2, 0) // rtattr length 2 < header
	if _, err := parseMessage(bad); err == nil {
		t.Error("attribute length 2: no error")
	}
	unk := v4Sock
	unk.fam = unix.AF_UNIX
	if _, err := parseMessage(unk.bytes()); err == nil {
		t.Error("AF_UNIX: no error")
	}
	// The nested flag in the type is masked: still INET_DIAG_INFO.
	info := v4Info
	s, err := parseMessage(append(v4Sock.bytes(), attr(inetDiagInfo|unix.NLA_F_NESTED, tcpInfoBytes(&info))...))
	if err != nil || !s.HasInfo {
		t.Errorf("nested flag: HasInfo %v, err %v", s.HasInfo, err)
	}
}

func TestParseMessages_StreamWithStaleFilterAndDone(t *testing.T) {
	var b []byte
	b = append(b, nlmsg(unix.SOCK_DIAG_BY_FAMILY, 6, v6Sock.bytes())...) // stale: earlier request
	b = append(b, nlmsg(unix.SOCK_DIAG_BY_FAMILY, 7, v4Payload())...)
	b = append(b, nlmsg(unix.SOCK_DIAG_BY_FAMILY, 7, v6Sock.bytes())...)
	b = append(b, nlmsg(unix.NLMSG_ERROR, 7, make([]byte, 20))...) // error 0: an ACK
	b = append(b, nlmsg(unix.NLMSG_NOOP, 7, nil)...)
	b = append(b, nlmsg(unix.NLMSG_DONE, 7, make([]byte, 4))...)

	got, done, err := parseMessages(b, 7, Filter{}, nil)
	if err != nil || !done || len(got) != 2 || got[0] != v4Want() || got[1].State != FinWait2 {
		t.Fatalf("all: %d sockets, done %v, err %v", len(got), done, err)
	}
	got, done, err = parseMessages(b, 7, Filter{Port: 443}, nil)
	if err != nil || !done || len(got) != 1 || got[0].Src != v6Sock.src {
		t.Errorf("port 443: %+v, done %v, err %v", got, done, err)
	}
	// Without DONE the caller must read again.
	_, done, err = parseMessages(b[:len(nlmsg(unix.SOCK_DIAG_BY_FAMILY, 6, v6Sock.bytes()))], 7, Filter{}, nil)
	if done || err != nil {
		t.Errorf("partial: done %v, err %v", done, err)
	}
}

func TestParseMessages_Errors(t *testing.T) {
	enoent := make([]byte, 4)
	e := -int32(unix.ENOENT)
	ne.PutUint32(enoent, uint32(e))
	for _, c := range []struct {
		name string
		b    []byte
		want error // nil: any error
	}{
		{"error reply", nlmsg(unix.NLMSG_ERROR, 1, enoent), unix.ENOENT},
		{"done with error", nlmsg(unix.NLMSG_DONE, 1, enoent), unix.ENOENT},
		{"short error", nlmsg(unix.NLMSG_ERROR, 1, []byte{1}), nil},
		{"short header", make([]byte, 10), nil},
		{"length past end", nlmsg(unix.SOCK_DIAG_BY_FAMILY, 1, v4Payload())[:100], nil},
		{"length below header", func() []byte { b := nlmsg(unix.NLMSG_DONE, 1, nil); ne.PutUint32(b, 8); return b }(), nil},
		{"short inet_diag_msg", nlmsg(unix.SOCK_DIAG_BY_FAMILY, 1, make([]byte, 40)), nil},
	} {
		_, _, err := parseMessages(c.b, 1, Filter{}, nil)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func TestBuildRequest_Layout(t *testing.T) {
	b := buildRequest(9, unix.AF_INET6, StateMask(Listen, CloseWait))
	if len(b) != 72 || ne.Uint32(b) != 72 || ne.Uint16(b[4:]) != unix.SOCK_DIAG_BY_FAMILY ||
		ne.Uint16(b[6:]) != unix.NLM_F_REQUEST|unix.NLM_F_DUMP || ne.Uint32(b[8:]) != 9 {
		t.Errorf("header % x", b[:16])
	}
	r := b[16:]
	if r[0] != unix.AF_INET6 || r[1] != unix.IPPROTO_TCP || r[2] != 1<<(inetDiagInfo-1) ||
		ne.Uint32(r[4:]) != 1<<10|1<<8 {
		t.Errorf("request % x", r[:8])
	}
}

func TestFilter(t *testing.T) {
	s := v4Want()
	for _, c := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{States: StateMask(CloseWait)}, true},
		{Filter{States: StateMask(Established, Listen)}, false},
		{Filter{Port: 80}, true},
		{Filter{Port: 40000}, true},
		{Filter{Port: 81}, false},
		{Filter{Family: unix.AF_INET}, true},
		{Filter{Family: unix.AF_INET6}, false},
	} {
		if got := c.f.Match(&s); got != c.want {
			t.Errorf("%+v: %v, want %v", c.f, got, c.want)
		}
	}
	if got := (Filter{States: StateMask(FinWait2, SynRecv)}).kernelStates(); got != 1<<5|1<<6|1<<3|1<<12 {
		t.Errorf("kernel mask for FIN-WAIT-2, SYN-RECV: %#x", got)
	}
	if _, err := (Filter{Family: unix.AF_UNIX}).families(); err == nil {
		t.Error("AF_UNIX filter: no error")
	}
	if !reflect.DeepEqual(must((Filter{}).families())(t), []uint8{unix.AF_INET, unix.AF_INET6}) {
		t.Error("zero filter: want both families")
	}
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func FuzzParseMessage(f *testing.F) {
	f.Add(v4Payload())
	f.Add(v6Sock.bytes())
	f.Add(v4Payload()[:100])
	f.Add(nlmsg(unix.SOCK_DIAG_BY_FAMILY, 1, v4Payload()))
	f.Add(append(nlmsg(unix.SOCK_DIAG_BY_FAMILY, 1, v6Sock.bytes()), nlmsg(unix.NLMSG_DONE, 1, make([]byte, 4))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := parseMessage(b); err == nil {
			if s.Family != b[0] || s.State != State(b[1]) || s.Src.Port() != binary.BigEndian.Uint16(b[4:]) {
				t.Errorf("decoded %+v from % x", s, b[:8])
			}
		}
		socks, _, err := parseMessages(b, 1, Filter{}, nil)
		if err == nil && len(socks)*(nlmsgHdrLen+diagMsgLen) > len(b) {
			t.Errorf("%d sockets from %d bytes", len(socks), len(b))
		}
	})
}
