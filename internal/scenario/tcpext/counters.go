// Package tcpext holds the scenarios of middleboxes that break TCP's
// extensions: sequence number randomization that leaves SACK blocks
// untranslated, a mangled window scale option, and black holes for ECN's
// and Fast Open's SYNs (docs/field-failures.md#sack-seq-randomization,
// #window-scale-mangling, #ecn-tfo-black-holes).
package tcpext

import (
	"fmt"
	"net/netip"

	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// deltas is each counter's growth in kernel log log between the snapshots
// labelled "ARM start" and "ARM end" (0 when one is missing).
func deltas(e *scenario.Evidence, log, arm string, counters []string) map[string]int64 {
	out := make(map[string]int64, len(counters))
	for _, k := range counters {
		if d, ok := e.NetstatGrowth(log, arm+" start", arm+" end", k); ok {
			out[k] = d
		}
	}
	return out
}

// sockView is one end's tcp_info at one moment, as a kernel log keeps it.
type sockView struct {
	Seen         bool
	Options      uint8
	SndWScale    uint8
	RcvWScale    uint8
	SndWnd       uint32
	RcvWnd       uint32
	RwndLimited  int64 // µs
	BytesAcked   uint64
	BytesRetrans uint64
	FastOpenFail uint8
}

// logSocket reads the tcp_info of host's socket local→remote, writes it
// to log as event "socket" with label (such as "handshake client") and
// returns it.
func logSocket(c *scenario.Context, log *scenario.KernelLog, host, label string, local, remote netip.AddrPort) (sockView, error) {
	socks, err := c.Sockets(host, sockdiag.Filter{Port: local.Port()})
	if err != nil {
		return sockView{}, err
	}
	for _, s := range socks {
		if scenario.Unmap(s.Src) != local || scenario.Unmap(s.Dst) != remote || !s.HasInfo {
			continue
		}
		v := sockView{Seen: true, Options: s.Options, SndWScale: s.SndWScale, RcvWScale: s.RcvWScale, SndWnd: s.SndWnd, RcvWnd: s.RcvWnd,
			RwndLimited: s.RwndLimited.Microseconds(), BytesAcked: s.BytesAcked, BytesRetrans: s.BytesRetrans, FastOpenFail: s.FastOpenClientFail}
		return v, log.Write("socket", map[string]any{"label": label, "options": v.Options, "snd_wscale": v.SndWScale,
			"rcv_wscale": v.RcvWScale, "snd_wnd": v.SndWnd, "rcv_wnd": v.RcvWnd, "rwnd_limited_us": v.RwndLimited,
			"bytes_acked": v.BytesAcked, "bytes_retrans": v.BytesRetrans, "fastopen_client_fail": v.FastOpenFail})
	}
	return sockView{}, fmt.Errorf("no socket %s -> %s in %s to read", local, remote, host)
}

// socketAt is the snapshot labelled label in kernel log log.
func socketAt(e *scenario.Evidence, log, label string) sockView {
	for _, ev := range e.Logs[log] {
		if ev.Event.Event != "socket" || ev.Raw["label"] != label {
			continue
		}
		n := func(k string) float64 { v, _ := ev.Raw[k].(float64); return v }
		return sockView{Seen: true, Options: uint8(n("options")), SndWScale: uint8(n("snd_wscale")), RcvWScale: uint8(n("rcv_wscale")),
			SndWnd: uint32(n("snd_wnd")), RcvWnd: uint32(n("rcv_wnd")), RwndLimited: int64(n("rwnd_limited_us")),
			BytesAcked: uint64(n("bytes_acked")), BytesRetrans: uint64(n("bytes_retrans")), FastOpenFail: uint8(n("fastopen_client_fail"))}
	}
	return sockView{}
}

// scales describes the window scales a socket uses, for a verdict's
// reason: "no window scaling" when the handshake left it off.
func (v sockView) scales() string {
	if v.Options&sockdiag.OptWScale == 0 {
		return "no window scaling"
	}
	return fmt.Sprintf("its own windows scaled by 2^%d, the peer's by 2^%d", v.RcvWScale, v.SndWScale)
}
