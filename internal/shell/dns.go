package shell

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Name service. The host's /etc/resolv.conf often names a resolver on its
// loopback (systemd-resolved's 127.0.0.53, dnsmasq's 127.0.0.1), which the
// command's namespace cannot reach: its loopback is its own. So, as
// Mahimahi's shells do, the device forwards DNS: the command's
// /etc/resolv.conf names the host side's addresses, where the device
// listens and passes each query on to the host's own resolvers. The
// queries cross the device like any other packet, under the profile.

// resolvConf is what run takes from the host's /etc/resolv.conf.
type resolvConf struct {
	Nameservers []netip.Addr
	Other       []string // search, domain and options lines, kept as they are
}

// defaultNameserver is the resolver glibc uses when resolv.conf names none.
var defaultNameserver = netip.MustParseAddr("127.0.0.1")

// parseResolvConf reads a resolv.conf (resolv.conf(5)).
func parseResolvConf(data []byte) resolvConf {
	var rc resolvConf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) == 0 || line[0] == '#' || line[0] == ';' {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				if a, err := netip.ParseAddr(f[1]); err == nil {
					rc.Nameservers = append(rc.Nameservers, a)
				}
			}
		case "search", "domain", "options", "sortlist":
			rc.Other = append(rc.Other, line)
		}
	}
	if len(rc.Nameservers) == 0 {
		rc.Nameservers = []netip.Addr{defaultNameserver}
	}
	return rc
}

// commandResolvConf is the command's /etc/resolv.conf: the host side's
// addresses as its name servers, the host's other settings.
func commandResolvConf(run string, s slot, host resolvConf) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# faultbox run %s: the device forwards these to the host's resolvers\n", run)
	fmt.Fprintf(&b, "nameserver %s\nnameserver %s\n", s.Gateway4(), s.Gateway6())
	for _, l := range host.Other {
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}

// DNS forwarding limits: queries in flight (more are dropped; resolvers
// retry), the wait for each upstream, and an idle TCP client.
const (
	dnsMaxInFlight  = 64
	dnsUpstreamWait = 2 * time.Second
	dnsTCPIdle      = 10 * time.Second
	dnsMaxMessage   = 65535
)

// dnsForwarder answers DNS on some addresses by asking upstream servers in
// order, over UDP and TCP as the query came.
type dnsForwarder struct {
	upstreams []netip.AddrPort
	lg        *log.Logger
	inFlight  chan struct{}
	udp       []net.PacketConn
	tcp       []net.Listener
	wg        sync.WaitGroup
}

// startDNS listens on every address of on (UDP and TCP) and forwards to
// upstreams. An address it cannot listen on is an error; it then closes
// what it opened.
func startDNS(on []netip.AddrPort, upstreams []netip.AddrPort, lg *log.Logger) (*dnsForwarder, error) {
	f := &dnsForwarder{upstreams: upstreams, lg: lg, inFlight: make(chan struct{}, dnsMaxInFlight)}
	for _, ap := range on {
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("dns: %w", err)
		}
		f.udp = append(f.udp, pc)
		// TCP on the same port, also when ap asked for any (tests).
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(localAddr(pc)))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("dns: %w", err)
		}
		f.tcp = append(f.tcp, ln)
	}
	for _, pc := range f.udp {
		f.wg.Add(1)
		go f.serveUDP(pc)
	}
	for _, ln := range f.tcp {
		f.wg.Add(1)
		go f.serveTCP(ln)
	}
	return f, nil
}

// Addrs are the addresses it listens on (UDP; TCP has the same).
func (f *dnsForwarder) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, pc := range f.udp {
		out = append(out, localAddr(pc))
	}
	return out
}

func localAddr(pc net.PacketConn) netip.AddrPort {
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Close stops listening and waits for the queries in flight.
func (f *dnsForwarder) Close() {
	for _, pc := range f.udp {
		pc.Close()
	}
	for _, ln := range f.tcp {
		ln.Close()
	}
	f.wg.Wait()
}

// acquire takes a slot for a query, or reports that all are busy.
func (f *dnsForwarder) acquire() bool {
	select {
	case f.inFlight <- struct{}{}:
		f.wg.Add(1)
		return true
	default:
		return false
	}
}

func (f *dnsForwarder) release() {
	<-f.inFlight
	f.wg.Done()
}

func (f *dnsForwarder) serveUDP(pc net.PacketConn) {
	defer f.wg.Done()
	buf := make([]byte, dnsMaxMessage)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.lg.Printf("dns: %v", err)
			}
			return
		}
		if n < 12 || !f.acquire() { // shorter than a DNS header, or too busy
			continue
		}
		q := bytes.Clone(buf[:n])
		go func() {
			defer f.release()
			if answer, err := f.exchange(q, "udp"); err == nil {
				pc.WriteTo(answer, from)
			} else {
				f.lg.Printf("dns: query from %s: %v", from, err)
			}
		}()
	}
}

func (f *dnsForwarder) serveTCP(ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.lg.Printf("dns: %v", err)
			}
			return
		}
		if !f.acquire() {
			c.Close()
			continue
		}
		go func() {
			defer f.release()
			defer c.Close()
			for {
				c.SetDeadline(time.Now().Add(dnsTCPIdle))
				q, err := readTCPMessage(c)
				if err != nil {
					return // the client is done, or gone
				}
				answer, err := f.exchange(q, "tcp")
				if err != nil {
					f.lg.Printf("dns: query from %s: %v", c.RemoteAddr(), err)
					return
				}
				if writeTCPMessage(c, answer) != nil {
					return
				}
			}
		}()
	}
}

// exchange asks the upstreams in order until one answers.
func (f *dnsForwarder) exchange(q []byte, network string) ([]byte, error) {
	if len(f.upstreams) == 0 {
		return nil, errors.New("no resolver to ask")
	}
	var errs []error
	for _, up := range f.upstreams {
		answer, err := exchangeWith(up, q, network)
		if err == nil {
			return answer, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// exchangeWith sends q to one upstream server and returns its answer: the
// first message with q's ID (over UDP, from that server: the socket is
// connected).
func exchangeWith(up netip.AddrPort, q []byte, network string) ([]byte, error) {
	c, err := net.DialTimeout(network, up.String(), dnsUpstreamWait)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(dnsUpstreamWait))
	if network == "tcp" {
		if err := writeTCPMessage(c, q); err != nil {
			return nil, err
		}
		return readTCPMessage(c)
	}
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, dnsMaxMessage)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", up, err)
		}
		if n >= 12 && buf[0] == q[0] && buf[1] == q[1] {
			return buf[:n], nil
		}
	}
}

// DNS over TCP: each message behind its length, two bytes (RFC 1035 4.2.2).
func readTCPMessage(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeTCPMessage(w io.Writer, msg []byte) error {
	if len(msg) > dnsMaxMessage {
		return errors.New("dns message too long")
	}
	_, err := w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...))
	return err
}
