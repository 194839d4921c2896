package deferaccept

import (
	"net/netip"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// hsConn is what the capture shows of one TCP connection from a client
// (here: the DX, or a GPRS client) to a server, as the device handled it.
type hsConn struct {
	Cli, Srv netip.AddrPort
	ISN      uint32    // the client's
	SrvISN   uint32    // the server's, from its first SYN-ACK
	SYN      time.Time // the client's first SYN
	SYNs     int       // the client's SYNs (retransmissions included)
	SYNACKs  []time.Time
	// Bare ACKs of the handshake the client sent before any data: those
	// that reached the server, and those the device dropped.
	ACKs        []time.Time
	ACKsDropped []time.Time
	Probes      []time.Time // keep-alive probes (seq ISN, no data) before data
	Data        time.Time   // the client's first data segment as the device got it
	DataSends   int         // data segments with that sequence number (1 + retransmissions)
	DataFirstOK time.Time   // first data segment that reached the server
	SrvData     time.Time   // the server's first data (the response)
	SrvFIN      time.Time
	SrvRST      time.Time
	CliFIN      time.Time
	CliRST      time.Time
	// SrvAcksNoData counts the server's bare ACKs that did not acknowledge
	// the client's data while the client was retransmitting it.
	SrvAcksNoData int
}

// Handshake timeline helpers.
func (h *hsConn) synackRetransmits() int { return max(0, len(h.SYNACKs)-1) }

// idleClose reports whether the server closed the connection (FIN) on its
// own, before the client sent data or closed.
func (h *hsConn) idleClose() bool {
	return !h.SrvFIN.IsZero() && (h.Data.IsZero() || h.SrvFIN.Before(h.Data)) &&
		(h.CliFIN.IsZero() || h.SrvFIN.Before(h.CliFIN)) && (h.CliRST.IsZero() || h.SrvFIN.Before(h.CliRST))
}

// lastSYNACK is the server's last SYN-ACK (zero if none).
func (h *hsConn) lastSYNACK() time.Time {
	if len(h.SYNACKs) == 0 {
		return time.Time{}
	}
	return h.SYNACKs[len(h.SYNACKs)-1]
}

// traceConns returns every connection to srv in the capture, keyed by the
// client's end. Only packets the device saw are counted; "delivered" means
// not dropped by it.
func traceConns(e *scenario.Evidence, srv netip.AddrPort) map[netip.AddrPort]*hsConn {
	out := map[netip.AddrPort]*hsConn{}
	if e.Capture == nil {
		return out
	}
	for i := range e.Capture.Packets {
		p := &e.Capture.Packets[i]
		if p.Proto != packet.ProtoTCP {
			continue
		}
		var h *hsConn
		fromCli := report.SameEnd(p.Dst, srv)
		switch {
		case fromCli:
			h = out[scenario.Unmap(p.Src)]
			if h == nil {
				if p.Flags&(packet.SYN|packet.ACK) != packet.SYN {
					continue // a connection that began before the capture
				}
				h = &hsConn{Cli: scenario.Unmap(p.Src), Srv: srv, ISN: p.Seq, SYN: p.When()}
				out[h.Cli] = h
			}
		case report.SameEnd(p.Src, srv):
			h = out[scenario.Unmap(p.Dst)]
			if h == nil {
				continue
			}
		default:
			continue
		}
		h.add(p, fromCli)
	}
	return out
}

func (h *hsConn) add(p *report.Packet, fromCli bool) {
	t := p.When()
	syn, ack, fin, rst := p.Flags&packet.SYN != 0, p.Flags&packet.ACK != 0, p.Flags&packet.FIN != 0, p.Flags&packet.RST != 0
	if !fromCli {
		switch {
		case syn && ack:
			if len(h.SYNACKs) == 0 {
				h.SrvISN = p.Seq
			}
			h.SYNACKs = append(h.SYNACKs, t)
		case rst:
			if h.SrvRST.IsZero() {
				h.SrvRST = t
			}
		}
		if fin && h.SrvFIN.IsZero() {
			h.SrvFIN = t
		}
		if p.Len > 0 && h.SrvData.IsZero() {
			h.SrvData = t
		}
		if !h.Data.IsZero() && h.SrvData.IsZero() && !syn && !fin && !rst && p.Len == 0 && p.Ack == h.ISN+1 {
			h.SrvAcksNoData++
		}
		return
	}
	switch {
	case syn:
		h.SYNs++
	case rst:
		if h.CliRST.IsZero() {
			h.CliRST = t
		}
	case p.Len > 0:
		if h.Data.IsZero() {
			h.Data = t
		}
		if p.Seq == h.ISN+1 {
			h.DataSends++
			if !p.Dropped && h.DataFirstOK.IsZero() {
				h.DataFirstOK = t
			}
		}
	case ack && !fin && h.Data.IsZero() && len(h.SYNACKs) > 0 && p.Ack == h.SrvISN+1:
		switch {
		case p.Seq == h.ISN: // seq one below SND.NXT: a keep-alive probe
			h.Probes = append(h.Probes, t)
		case p.Dropped:
			h.ACKsDropped = append(h.ACKsDropped, t)
		default:
			h.ACKs = append(h.ACKs, t)
		}
	}
	if fin && h.CliFIN.IsZero() {
		h.CliFIN = t
	}
}
