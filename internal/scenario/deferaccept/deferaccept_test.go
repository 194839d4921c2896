package deferaccept

import (
	"net/netip"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
)

// capBuilder makes a capture of one connection lb → server:80.
type capBuilder struct {
	t0       time.Time
	lb, srv  netip.AddrPort
	isn, sis uint32
	pkts     []report.Packet
}

func (b *capBuilder) add(at time.Duration, fromLB bool, flags packet.TCPFlags, seq, ack uint32, n int, dropped bool) {
	p := report.Packet{Proto: packet.ProtoTCP, In: b.t0.Add(at), Flags: flags, Len: n, Dropped: dropped}
	if fromLB {
		p.From, p.To, p.Src, p.Dst, p.Seq, p.Ack = "lb", "server", b.lb, b.srv, b.isn+seq, b.sis+ack
	} else {
		p.From, p.To, p.Src, p.Dst, p.Seq, p.Ack = "server", "lb", b.srv, b.lb, b.sis+seq, b.isn+ack
	}
	if dropped {
		p.Note = "dropped by ack-drop"
	}
	b.pkts = append(b.pkts, p)
}

func TestTraceConnsDeferred(t *testing.T) {
	const (
		syn, ack, fin, rst, psh = packet.SYN, packet.ACK, packet.FIN, packet.RST, packet.PSH
	)
	s := time.Second
	b := &capBuilder{t0: time.Unix(1000, 0), lb: netip.MustParseAddrPort("198.18.0.3:40000"),
		srv: netip.MustParseAddrPort("198.18.0.2:80"), isn: 1000, sis: 5000}
	b.add(0, true, syn, 0, 0, 0, false)
	b.add(1*time.Millisecond, false, syn|ack, 0, 1, 0, false)
	b.add(2*time.Millisecond, true, ack, 1, 1, 0, false) // swallowed by the deferral
	b.add(15*s, true, ack, 0, 1, 0, false)               // keep-alive probe: seq ISN
	b.add(15*s+time.Millisecond, false, ack, 1, 1, 0, false)
	b.add(31500*time.Millisecond, false, syn|ack, 0, 1, 0, false) // the one retransmit
	b.add(31501*time.Millisecond, true, ack, 1, 1, 0, false)
	b.add(36500*time.Millisecond, false, fin|ack, 1, 1, 0, false) // the server's timeout
	b.add(36501*time.Millisecond, true, ack, 1, 2, 0, false)
	b.add(39*s, true, psh|ack, 1, 2, 90, false) // the DX's late request
	b.add(39*s+time.Millisecond, false, rst, 2, 0, 0, false)
	e := &scenario.Evidence{Start: b.t0, Capture: &report.Capture{Packets: b.pkts}}

	h := traceConns(e, b.srv)[b.lb]
	if h == nil {
		t.Fatal("connection not traced")
	}
	if len(h.SYNACKs) != 2 || h.synackRetransmits() != 1 {
		t.Errorf("SYN-ACKs %d, want 2", len(h.SYNACKs))
	}
	if len(h.ACKs) != 2 || len(h.Probes) != 1 || len(h.ACKsDropped) != 0 {
		t.Errorf("handshake ACKs %d (want 2: the swallowed one and the one after the retransmit), probes %d (want 1), dropped %d",
			len(h.ACKs), len(h.Probes), len(h.ACKsDropped))
	}
	if got := h.Data.Sub(b.t0); got != 39*s || h.DataSends != 1 {
		t.Errorf("data at %v sent %d times", got, h.DataSends)
	}
	if !h.idleClose() || h.SrvFIN.Sub(b.t0) != 36500*time.Millisecond || h.SrvRST.IsZero() || !h.SrvData.IsZero() {
		t.Errorf("server FIN %v RST %v data %v", h.SrvFIN.Sub(b.t0), h.SrvRST.Sub(b.t0), h.SrvData)
	}
	ae := &poolArmEvidence{Defer: 31}
	if !ae.deferred(h) {
		t.Error("not seen as deferred with TCP_DEFER_ACCEPT 31")
	}
	if ae.Defer = 1; ae.deferred(h) {
		t.Error("a retransmit after 31.5 s taken as the end of a 1 s defer period")
	}
	ae.Defer = -1 // unknown
	if !ae.deferred(h) {
		t.Error("not seen as deferred with the defer value unknown")
	}

	// The same connection without deferral: no retransmit, served at once.
	b.pkts = nil
	b.add(0, true, syn, 0, 0, 0, false)
	b.add(time.Millisecond, false, syn|ack, 0, 1, 0, false)
	b.add(2*time.Millisecond, true, ack, 1, 1, 0, true) // lost on the link
	b.add(3*time.Millisecond, true, psh|ack, 1, 1, 90, false)
	b.add(4*time.Millisecond, false, psh|ack, 1, 91, 200, false)
	e.Capture.Packets = b.pkts
	h = traceConns(e, b.srv)[b.lb]
	if len(h.ACKs) != 0 || len(h.ACKsDropped) != 1 || h.SrvData.IsZero() || (&poolArmEvidence{Defer: -1}).deferred(h) {
		t.Errorf("plain connection: ACKs %d dropped %d served %v", len(h.ACKs), len(h.ACKsDropped), !h.SrvData.IsZero())
	}
}

// A request the kernel refuses (TSecr) until the SYN-ACK retransmit is a
// stall: sent several times, then served.
func TestPoolRequestStalled(t *testing.T) {
	t0 := time.Unix(1000, 0)
	h := &hsConn{Data: t0.Add(20 * time.Second), DataSends: 8, SrvData: t0.Add(33500 * time.Millisecond)}
	q := poolRequest{Client: scenario.ClientResult{Status: 200}, Conn: h}
	if d, ok := q.stalled(); !ok || d != 13500*time.Millisecond {
		t.Errorf("stalled() = %v, %v; want 13.5s, true", d, ok)
	}
	if got := q.outcomeText(); got != "200 after a 13.5 s stall" {
		t.Errorf("outcomeText() = %q", got)
	}
	q = poolRequest{Client: scenario.ClientResult{Err: "read response: EOF", Kind: scenario.KindEOF}, Conn: &hsConn{DataSends: 1}}
	if _, ok := q.stalled(); ok || !q.failed() || !q.emptyReply() {
		t.Errorf("empty reply: stalled %v failed %v empty %v", ok, q.failed(), q.emptyReply())
	}
}

// The DX's proxy log joins each client request to the pooled connection
// that carried it: an "open" line gives the connection's own end (found in
// the capture), a request line the client's address (v4-mapped as Go logs
// it) and the backend connection; closes at check_before_reuse are counted.
func TestPoolArmEvidence_JoinsRequestsToPooledConnections(t *testing.T) {
	const ms1 = time.Millisecond
	s := scenariotest.New(time.Second)
	a := poolArm{Name: "A", Port: 80}
	name := proxyName(a)
	lb, srv := netip.MustParseAddrPort("198.18.0.3:40000"), netip.MustParseAddrPort("198.18.0.2:80")
	s.Packet(0, lb, srv, packet.SYN, 1000, 0, 0, nil)
	s.Packet(ms1, srv, lb, packet.SYN|packet.ACK, 5000, 1001, 0, nil)
	s.Packet(2*ms1, lb, srv, packet.ACK, 1001, 5001, 0, nil)
	s.ProxyLine(t, name, 0, proxy.PoolEvent{Event: "open", BackendConn: 7, Local: lb.String()})
	s.ProxyLine(t, name, 100*ms1, proxy.PoolEvent{Event: "close", BackendConn: 8, Reason: "check_before_reuse: closed by the backend (EOF)"})
	s.ProxyLine(t, name, 200*ms1, proxy.Entry{Client: "[::ffff:198.18.0.1]:50000", BackendConn: 7, ConnAge: 8000, Outcome: proxy.OutcomeEmptyReply})
	s.Evidence.Clients = []scenario.ClientResult{{Name: "request 1", Arm: "A", Local: netip.MustParseAddrPort("198.18.0.1:50000"),
		Err: "read response: EOF", Kind: scenario.KindEOF}}

	ae := (&poolRun{Arms: []poolArm{a}}).armEvidence(s.Evidence, a)
	if len(ae.Pool) != 1 || ae.Pool[0].Cli != lb || ae.Initial != 1 || ae.Checked != 1 {
		t.Fatalf("pool %v, initial %d, checked %d; want the one connection from %v, 1 checked", ae.Pool, ae.Initial, ae.Checked, lb)
	}
	if len(ae.Requests) != 1 {
		t.Fatalf("%d requests, want 1", len(ae.Requests))
	}
	q := ae.Requests[0]
	if q.Req == nil || q.Req.BackendConn != 7 || q.Conn != ae.Pool[0] || !q.emptyReply() {
		t.Errorf("request joined to %+v on %v, empty reply %v", q.Req, q.Conn, q.emptyReply())
	}
}
