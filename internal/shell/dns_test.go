package shell

import (
	"bytes"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseResolvConf(t *testing.T) {
	rc := parseResolvConf([]byte(`# systemd-resolved's stub
nameserver 127.0.0.53
nameserver fe80::1%eth0
nameserver not-an-address
; a comment
options edns0 trust-ad
search example.com corp.example
`))
	want := []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("fe80::1%eth0")}
	if len(rc.Nameservers) != 2 || rc.Nameservers[0] != want[0] || rc.Nameservers[1] != want[1] {
		t.Errorf("nameservers %v, want %v", rc.Nameservers, want)
	}
	if strings.Join(rc.Other, "|") != "options edns0 trust-ad|search example.com corp.example" {
		t.Errorf("other lines %q", rc.Other)
	}
	if none := parseResolvConf(nil); len(none.Nameservers) != 1 || none.Nameservers[0] != defaultNameserver {
		t.Errorf("no resolv.conf: %v, want glibc's 127.0.0.1", none.Nameservers)
	}

	got := string(commandResolvConf("web", slot(1), rc))
	for _, line := range []string{"nameserver 198.19.0.5\n", "nameserver 2001:db8:fb:1::1\n", "options edns0 trust-ad\n", "search example.com corp.example\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("the command's resolv.conf lacks %q:\n%s", line, got)
		}
	}
	if strings.Contains(got, "127.0.0.53") {
		t.Errorf("the command's resolv.conf names the host's loopback:\n%s", got)
	}
}

// fakeDNS answers every UDP and TCP query with the query itself, its
// first flag bit set (a "response"), and counts them.
type fakeDNS struct {
	addr    netip.AddrPort
	queries atomic.Int64
}

func startFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); ln.Close() })
	answer := func(q []byte) []byte {
		f.queries.Add(1)
		a := bytes.Clone(q)
		a[2] |= 0x80
		return a
	}
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(answer(buf[:n]), from)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if q, err := readTCPMessage(c); err == nil {
				writeTCPMessage(c, answer(q))
			}
			c.Close()
		}
	}()
	return f
}

// deadUpstream is an address where nothing answers: a UDP socket that
// never replies (TCP there is refused).
func deadUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func query(id byte) []byte {
	q := make([]byte, 20)
	q[0], q[1] = 0xfb, id
	copy(q[12:], "question")
	return q
}

func TestDNSForwarder_UDPAndTCPReachTheFirstUpstreamThatAnswers(t *testing.T) {
	up := startFakeDNS(t)
	on := netip.MustParseAddrPort("127.0.0.1:0")
	f, err := startDNS([]netip.AddrPort{on}, []netip.AddrPort{deadUpstream(t), up.addr}, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at := f.Addrs()[0]

	c, err := net.Dial("udp", at.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // the dead upstream costs dnsUpstreamWait
	if _, err := c.Write(query(1)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp: no answer: %v", err)
	}
	if want := query(1); n != len(want) || buf[1] != 1 || buf[2]&0x80 == 0 {
		t.Errorf("udp answer % x, want the fake's answer to query 1", buf[:n])
	}

	// TCP: the dead upstream refuses at once, so the second answers.
	tc, err := net.Dial("tcp", netip.AddrPortFrom(at.Addr(), at.Port()).String())
	if err != nil {
		t.Fatalf("tcp: %v", err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	for id := byte(2); id <= 3; id++ { // two queries on one connection
		if err := writeTCPMessage(tc, query(id)); err != nil {
			t.Fatal(err)
		}
		a, err := readTCPMessage(tc)
		if err != nil || len(a) != 20 || a[1] != id || a[2]&0x80 == 0 {
			t.Fatalf("tcp answer to %d: % x, %v", id, a, err)
		}
	}
	if got := up.queries.Load(); got != 3 {
		t.Errorf("upstream saw %d queries, want 3", got)
	}
}

func TestDNSForwarder_NoUpstreamAnswersNoAnswer(t *testing.T) {
	f, err := startDNS([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, nil, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	at := f.Addrs()[0]
	c, err := net.Dial("udp", at.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(query(1))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 512)); err == nil {
		t.Errorf("an answer of %d bytes with no upstream", n)
	}
	f.Close() // returns: nothing is left in flight
	again, err := startDNS([]netip.AddrPort{at}, nil, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatalf("the address is still taken after Close: %v", err)
	}
	again.Close()
}
