package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// routeQuery is a packet to ask the kernel the way of, as `ip route get
// DST [from SRC iif IIF] ipproto PROTO [sport S] [dport D]` does: attach's
// rules select by protocol and port, which netlink.RouteGetWithOptions
// cannot say.
type routeQuery struct {
	dst, src     netip.Addr // src only with iif
	iif          int        // 0: a packet of the namespace's own
	proto        uint8
	sport, dport uint16
}

// get returns the index of the interface the kernel routes q out of, in
// the network namespace of the calling thread.
func (q routeQuery) get() (int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_REQUEST)
	msg := &nl.RtMsg{}
	msg.Family = uint8(familyOf(q.dst))
	msg.Dst_len = uint8(q.dst.BitLen())
	if q.src.IsValid() {
		msg.Src_len = uint8(q.src.BitLen())
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.RTA_DST, q.dst.AsSlice()))
	if q.src.IsValid() {
		req.AddData(nl.NewRtAttr(unix.RTA_SRC, q.src.AsSlice()))
	}
	if q.iif != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_IIF, nl.Uint32Attr(uint32(q.iif))))
	}
	if q.proto != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_IP_PROTO, nl.Uint8Attr(q.proto)))
	}
	if q.sport != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_SPORT, nl.BEUint16Attr(q.sport)))
	}
	if q.dport != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_DPORT, nl.BEUint16Attr(q.dport)))
	}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWROUTE)
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 || len(msgs[0]) < unix.SizeofRtMsg {
		return 0, errors.New("no answer")
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][unix.SizeofRtMsg:])
	if err != nil {
		return 0, err
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.RTA_OIF && len(a.Value) == 4 {
			return int(binary.NativeEndian.Uint32(a.Value)), nil
		}
	}
	return 0, fmt.Errorf("the answer names no interface")
}
