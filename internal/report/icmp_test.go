package report

import (
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/internal/packet"
)

var routerIP = netip.MustParseAddr("198.18.0.254")

// icmpTooBig builds the ICMP error a router sends about packet quoted:
// "fragmentation needed" over IPv4, "packet too big" over IPv6, from src to
// the quoted packet's sender, quoting at most limit bytes.
func icmpTooBig(src netip.Addr, quoted []byte, mtu, limit int) []byte {
	var p packet.Parsed
	p.Decode(quoted)
	if !p.Src.IsValid() { // quoting bytes that are no packet: sent to 0.0.0.0
		p.Src = netip.IPv4Unspecified()
	}
	q := quoted[:min(len(quoted), limit)]
	var b []byte
	if src.Is4() {
		b = make([]byte, 28+len(q))
		b[0], b[8], b[9] = 0x45, 64, packet.ProtoICMP
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		s, d := src.As4(), p.Src.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		b[20], b[21] = 3, 4
		binary.BigEndian.PutUint16(b[26:28], uint16(mtu))
		copy(b[28:], q)
	} else {
		b = make([]byte, 48+len(q))
		b[0], b[6], b[7] = 0x60, packet.ProtoICMPv6, 64
		binary.BigEndian.PutUint16(b[4:6], uint16(len(b)-40))
		s, d := src.As16(), p.Src.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		b[40] = 2
		binary.BigEndian.PutUint32(b[44:48], uint32(mtu))
		copy(b[48:], q)
	}
	var out packet.Parsed
	out.Decode(b)
	out.FixChecksums()
	return b
}

func TestParseICMPError_QuotedEnds(t *testing.T) {
	buf := make([]byte, 2000)
	for _, tc := range []struct {
		src, dst netip.Addr
		router   netip.Addr
		limit    int
		want     string
	}{
		{serverIP, clientIP, routerIP, 548, "frag needed, mtu 1400"},
		{netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::fe"), 1232, "packet too big, mtu 1400"},
	} {
		n := packet.BuildTCP(buf, seg(tc.src, 80, tc.dst, 40312, packet.ACK, 1, 1, 1448))
		msg := icmpTooBig(tc.router, buf[:n], 1400, tc.limit)
		var p packet.Parsed
		p.Decode(msg)
		e := parseICMPError(&p)
		if e == nil {
			t.Fatalf("%v: not read as an ICMP error", tc.src)
		}
		if e.String() != tc.want || e.Src != netip.AddrPortFrom(tc.src, 80) || e.Dst != netip.AddrPortFrom(tc.dst, 40312) || e.Proto != packet.ProtoTCP {
			t.Errorf("%v: %s about %v → %v proto %d", tc.src, e, e.Src, e.Dst, e.Proto)
		}
	}
	echo := make([]byte, 28)
	echo[0], echo[3], echo[9], echo[20] = 0x45, 28, packet.ProtoICMP, 8
	var p packet.Parsed
	p.Decode(echo)
	if parseICMPError(&p) != nil {
		t.Error("an echo request read as an error")
	}
	short := icmpTooBig(routerIP, make([]byte, 10), 1400, 10) // quotes less than an IP header
	p.Decode(short)
	if parseICMPError(&p) != nil {
		t.Error("an error quoting 10 bytes read as one with ends")
	}
}

// The router's "fragmentation needed", injected by the device, is drawn
// with the connection whose segment it quotes, labelled with its MTU, and
// selected by that connection's filter.
func TestWrite_LadderDrawsICMPErrorsWithTheirConnection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "capture.pcapng")
	c := newCapWriter(t, path, "client", "server")
	ms := time.Millisecond
	syn := seg(clientIP, 40312, serverIP, 80, packet.SYN, cISN, 0, 0)
	c.pass("client", "server", 0, syn)
	c.pass("server", "client", ms, seg(serverIP, 80, clientIP, 40312, packet.SYN|packet.ACK, sISN, cISN+1, 0))
	c.pass("client", "server", 2*ms, seg(clientIP, 40312, serverIP, 80, packet.ACK, cISN+1, sISN+1, 0))
	// The engine records the answer before the arrival that caused it, at
	// the same instant: the ladder shows the drop first.
	big := seg(serverIP, 80, clientIP, 40312, packet.ACK, sISN+1, cISN+1, 1448)
	n := packet.BuildTCP(c.buf[:], big)
	msg := icmpTooBig(routerIP, c.buf[:n], 1400, 548)
	c.w.Record(engine.Record{Port: c.ports["server"], Time: c.t0 + int64(3*ms), Data: msg, Egress: true,
		Note: "injected: mtu: ICMP too big to the sender"})
	c.record("server", 3*ms, false, "mtu: too big for the link", 0, big)
	c.pass("server", "client", 4*ms, seg(serverIP, 80, clientIP, 40312, packet.ACK, sISN+1, cISN+1, 1348))
	c.close()

	r := &Report{Scenario: "pmtud", Outcome: NotReproduced, Expected: NotReproduced, Capture: path,
		Ladder: LadderOptions{Filter: Filter{Conns: []Conn{{A: netip.AddrPortFrom(clientIP, 40312), B: netip.AddrPortFrom(serverIP, 80)}}}}}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	svg := svgByID(t, readHTML(t, dir), "ladder")
	pkts := find(svg, elem("g", "pkt"))
	if len(pkts) != 6 {
		t.Fatalf("%d arrows, want 6 (the ICMP among them)", len(pkts))
	}
	if attr(pkts[3], "data-dropped") != "true" {
		t.Error("the dropped segment is not drawn before the ICMP answering it")
	}
	icmp := pkts[4]
	if attr(icmp, "data-injected") != "true" || attr(icmp, "data-conn") != "1" || attr(icmp, "data-to") != "server" {
		t.Fatalf("ICMP arrow: injected %q, conn %q, to %q", attr(icmp, "data-injected"), attr(icmp, "data-conn"), attr(icmp, "data-to"))
	}
	if lbl := text(find(icmp, elem("text", "lbl"))[0]); !strings.Contains(lbl, "frag needed, mtu 1400") {
		t.Errorf("ICMP label %q", lbl)
	}
	if rows := find(readHTML(t, dir), elem("table", "conns")); len(find(rows[0], elem("tr", ""))) != 2 {
		t.Error("the ICMP error got a connection of its own")
	}
}
