package sockdiag

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// Root tests: sockets on 127.0.0.1 and ::1 inside a namespace the test
// creates (lo only), read back with Dump.

const waitLimit = 3 * time.Second // every wait for a state is bounded by this

func labNS(t *testing.T) string { return testenv.LoopbackNetns(t, "sdiag") }

type family struct {
	name, network, host string
	af                  uint8
}

var families = []family{{"v4", "tcp4", "127.0.0.1", unix.AF_INET}, {"v6", "tcp6", "::1", unix.AF_INET6}}

// pair is a listener and one accepted connection, all inside ns.
type pair struct {
	ln             *net.TCPListener
	client, server *net.TCPConn
	lnAP, cAP, sAP netip.AddrPort
}

// eachFamily runs test over IPv4 and over IPv6, each time with a new pair
// in one namespace.
func eachFamily(t *testing.T, test func(t *testing.T, ns string, fam family, p *pair)) {
	ns := labNS(t)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) { test(t, ns, fam, newPair(t, ns, fam)) })
	}
}

// filter selects the pair's sockets (and any other on its port).
func (p *pair) filter() Filter { return Filter{Port: p.lnAP.Port()} }

func newPair(t *testing.T, ns string, fam family) *pair {
	t.Helper()
	return newPairIn(t, ns, ns, fam.network, fam.host)
}

// newPairIn listens on host in srvNS and dials it from cliNS.
func newPairIn(t *testing.T, srvNS, cliNS, network, host string) *pair {
	t.Helper()
	var p pair
	err := testenv.InNetns(srvNS, func() error {
		ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
		if err == nil {
			p.ln = ln.(*net.TCPListener)
		}
		return err
	})
	if err == nil {
		err = testenv.InNetns(cliNS, func() error {
			c, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial(network, p.ln.Addr().String())
			if err == nil {
				p.client = c.(*net.TCPConn)
			}
			return err
		})
	}
	if p.ln != nil {
		t.Cleanup(func() { p.ln.Close() })
	}
	if p.client != nil {
		t.Cleanup(func() { p.client.Close() })
	}
	if err != nil {
		t.Fatalf("listen in %s and dial from %s: %v", srvNS, cliNS, err)
	}
	p.ln.SetDeadline(time.Now().Add(2 * time.Second))
	s, err := p.ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	p.server = s
	t.Cleanup(func() { s.Close() })
	p.lnAP, p.cAP, p.sAP = addrPort(p.ln.Addr()), addrPort(p.client.LocalAddr()), addrPort(s.LocalAddr())
	return &p
}

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func inode(t *testing.T, c syscall.Conn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatalf("fstat: %v %v", err, serr)
	}
	return uint32(st.Ino)
}

func find(socks []Socket, src, dst netip.AddrPort) *Socket {
	for i := range socks {
		if socks[i].Src == src && socks[i].Dst == dst {
			return &socks[i]
		}
	}
	return nil
}

func show(socks []Socket) string {
	var b strings.Builder
	for _, s := range socks {
		fmt.Fprintf(&b, "\n  %-10s %s timer:(%s,%v,%d) q:%d/%d unacked:%d rtt:%v rto:%v retrans:%d/%d",
			s.State, s.Key(), s.Timer, s.TimerExpires, s.Retrans, s.RecvQ, s.SendQ, s.Unacked, s.RTT, s.RTO, s.RetransOut, s.TotalRetrans)
	}
	return b.String()
}

// waitDump dumps until ok accepts the result, for at most waitLimit.
func waitDump(t *testing.T, ns string, f Filter, what string, ok func([]Socket) bool) []Socket {
	t.Helper()
	var socks []Socket
	var err error
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if socks, err = Dump(ns, f); err == nil && ok(socks) {
			return socks
		}
	}
	t.Fatalf("no %s within %v (last error %v); last dump:%s", what, waitLimit, err, show(socks))
	return nil
}

func TestDump_ListenAndEstablished_Linux(t *testing.T) {
	eachFamily(t, func(t *testing.T, ns string, fam family, p *pair) {
		f := p.filter()
		socks, err := Dump(ns, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(socks) != 3 {
			t.Fatalf("want listener + 2 ends, got:%s", show(socks))
		}
		ln := find(socks, p.lnAP, netip.AddrPortFrom(netip.IPv6Unspecified(), 0))
		if fam.af == unix.AF_INET {
			ln = find(socks, p.lnAP, netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
		}
		cl, sv := find(socks, p.cAP, p.lnAP), find(socks, p.sAP, p.cAP)
		if ln == nil || cl == nil || sv == nil {
			t.Fatalf("listener %v, client %v, server %v missing in:%s", ln != nil, cl != nil, sv != nil, show(socks))
		}
		for _, c := range []struct {
			name string
			s    *Socket
			st   State
			ino  uint32
		}{{"listener", ln, Listen, inode(t, p.ln)}, {"client", cl, Established, inode(t, p.client)}, {"server", sv, Established, inode(t, p.server)}} {
			s := c.s
			if s.State != c.st || s.Family != fam.af || s.Inode != c.ino || s.UID != uint32(os.Geteuid()) || s.Cookie == 0 || !s.HasInfo {
				t.Errorf("%s: %+v; want state %v family %d inode %d", c.name, *s, c.st, fam.af, c.ino)
			}
		}
		for _, s := range []*Socket{cl, sv} {
			if s.RTT <= 0 || s.RTT > 100*time.Millisecond || s.RTO < 200*time.Millisecond || s.RTO > 3*time.Second ||
				s.SendQ != 0 || s.RecvQ != 0 || s.Unacked != 0 || s.Timer != TimerKeepalive {
				t.Errorf("idle established socket %s: %+v", s.Key(), *s)
			}
		}
		if ln.RecvQ != 0 || ln.SendQ == 0 { // accept queue empty; SendQ is the backlog
			t.Errorf("listener queues %d/%d", ln.RecvQ, ln.SendQ)
		}

		other := uint8(unix.AF_INET6)
		if fam.af == unix.AF_INET6 {
			other = unix.AF_INET
		}
		if s, err := Dump(ns, Filter{Port: f.Port, Family: other}); err != nil || len(s) != 0 {
			t.Errorf("other family: %v%s", err, show(s))
		}
		if s, err := Dump(ns, Filter{Port: f.Port, States: StateMask(Listen)}); err != nil || len(s) != 1 || s[0].Key() != ln.Key() {
			t.Errorf("LISTEN only: %v%s", err, show(s))
		}
		// "" is the calling thread's namespace.
		var here []Socket
		if err := testenv.InNetns(ns, func() (err error) { here, err = Dump("", f); return err }); err != nil || len(here) != 3 {
			t.Errorf(`Dump("") inside the namespace: %v%s`, err, show(here))
		}
	})
}

func TestDump_HalfClose_FinWait2CloseWaitThenTimeWait_Linux(t *testing.T) {
	eachFamily(t, func(t *testing.T, ns string, fam family, p *pair) {
		f := p.filter()
		if err := p.client.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		waitDump(t, ns, f, "FIN-WAIT-2 client and CLOSE-WAIT server", func(s []Socket) bool {
			c, sv := find(s, p.cAP, p.lnAP), find(s, p.sAP, p.cAP)
			return c != nil && c.State == FinWait2 && sv != nil && sv.State == CloseWait
		})
		if err := p.server.Close(); err != nil {
			t.Fatal(err)
		}
		socks := waitDump(t, ns, f, "TIME-WAIT client, server gone", func(s []Socket) bool {
			c := find(s, p.cAP, p.lnAP)
			return c != nil && c.State == TimeWait && find(s, p.sAP, p.cAP) == nil
		})
		c := find(socks, p.cAP, p.lnAP)
		if c.Timer != TimerTimeWait || c.TimerExpires <= 0 || c.TimerExpires > 60*time.Second || c.HasInfo {
			t.Errorf("TIME-WAIT socket: %+v", *c)
		}
	})
}

func TestDump_PeerStopsReading_SendQAndPersistTimer_Linux(t *testing.T) {
	eachFamily(t, func(t *testing.T, ns string, fam family, p *pair) {
		// The server never reads: fill its receive buffer and our send buffer.
		buf := make([]byte, 64<<10)
		p.client.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		var err error
		for i := 0; i < 4096 && err == nil; i++ {
			_, err = p.client.Write(buf)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write to a peer that stopped reading: %v, want a timeout", err)
		}
		socks := waitDump(t, ns, p.filter(), "client on its persist timer", func(s []Socket) bool {
			c := find(s, p.cAP, p.lnAP)
			return c != nil && c.Timer == TimerPersist
		})
		c, sv := find(socks, p.cAP, p.lnAP), find(socks, p.sAP, p.cAP)
		if c.State != Established || c.SendQ == 0 || sv == nil || sv.RecvQ == 0 {
			t.Errorf("want client SendQ > 0 and server RecvQ > 0:%s", show(socks))
		}
		t.Logf("client SendQ %d, server RecvQ %d, persist expires in %v", c.SendQ, sv.RecvQ, c.TimerExpires)
	})
}

// vethLab is a server and a client namespace joined by a veth pair, with
// the lab's addresses.
func vethLab(t *testing.T) (srvNS, cliNS string) {
	t.Helper()
	srvNS, cliNS = labNS(t), labNS(t)
	testenv.IP(t, srvNS, "link", "add", "fbxs", "type", "veth", "peer", "name", "fbxc", "netns", cliNS)
	for _, h := range []struct{ ns, dev, v4, v6 string }{
		{srvNS, "fbxs", "198.18.0.2/24", "2001:db8::2/64"},
		{cliNS, "fbxc", "198.18.0.1/24", "2001:db8::1/64"},
	} {
		testenv.IP(t, h.ns, "addr", "add", h.v4, "dev", h.dev)
		testenv.IP(t, h.ns, "-6", "addr", "add", h.v6, "dev", h.dev, "nodad")
		testenv.IP(t, h.ns, "link", "set", h.dev, "up")
	}
	return srvNS, cliNS
}

// The picture of issue 4: the server holds unacknowledged data in
// CLOSE-WAIT and retransmits with backoff after its client vanished.
func TestSampler_CloseWaitUnackedRetransmitting_Linux(t *testing.T) {
	for _, fam := range []family{{"v4", "tcp4", "198.18.0.2", unix.AF_INET}, {"v6", "tcp6", "2001:db8::2", unix.AF_INET6}} {
		t.Run(fam.name, func(t *testing.T) {
			srvNS, cliNS := vethLab(t)
			p := newPairIn(t, srvNS, cliNS, fam.network, fam.host)
			f := p.filter()
			if err := p.client.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			// The server ACKs the FIN late (delayed ACK in CLOSE-WAIT): wait
			// for the client to reach FIN-WAIT-2 before cutting it off.
			waitDump(t, cliNS, f, "FIN-WAIT-2 client", func(s []Socket) bool {
				c := find(s, p.cAP, p.lnAP)
				return c != nil && c.State == FinWait2
			})
			// The client vanishes without FIN or RST: the server's frames now
			// go to a MAC nobody has, and the client drops them as not its
			// own. The server's transmissions succeed (taking a link down
			// would fail them instead), so its data stays unacknowledged.
			testenv.IP(t, srvNS, "neigh", "replace", p.cAP.Addr().String(), "lladdr", "02:00:00:00:00:99", "dev", "fbxs", "nud", "permanent")
			if _, err := p.server.Write(make([]byte, 10000)); err != nil {
				t.Fatal(err)
			}
			sm, err := NewSampler(srvNS, f, 50*time.Millisecond, 0)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(1800 * time.Millisecond)
			sr := sm.Stop()
			// 36 ticks expected; a loaded machine skips some (time.Ticker drops ticks).
			if sr.Errors != 0 || len(sr.Ticks) < 5 || sr.Full {
				t.Fatalf("%d ticks, %d errors (%s), full %v", len(sr.Ticks), sr.Errors, sr.LastError, sr.Full)
			}
			srv := sr.Socket(Key{p.sAP, p.cAP})
			if len(srv) != len(sr.Ticks) {
				t.Fatalf("server socket in %d of %d ticks", len(srv), len(sr.Ticks))
			}
			var last uint8
			for _, x := range srv {
				if x.State != CloseWait || x.SendQ != 10000 || x.Unacked == 0 || x.Timer != TimerOn || x.Retrans < last {
					t.Fatalf("at %v: %+v (previous retrans %d)", x.T, x, last)
				}
				last = x.Retrans
			}
			if last < 2 {
				t.Errorf("%d retransmissions in 1.8 s, want >= 2 (RTO 200 ms, doubling)", last)
			}
			socks, err := Dump(srvNS, f)
			sv := find(socks, p.sAP, p.cAP)
			if err != nil || sv == nil || sv.TotalRetrans < 2 || sv.Backoff < 2 || sv.Lost == 0 {
				t.Errorf("final dump: %v%s", err, show(socks))
			}
			t.Logf("%d samples over %v, %d retransmissions; final dump:%s", len(srv), srv[len(srv)-1].T, last, show(socks))
		})
	}
}
