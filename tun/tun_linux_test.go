package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// openIn opens fbx0 in a fresh namespace, gives it addr (v4) and addr6 with
// the lab routes, and closes it when the test ends.
func openIn(t *testing.T, tag string, o Options, addr, addr6 string) (*Interface, string) {
	t.Helper()
	ns := testenv.NewNetns(t, tag)
	o.Name, o.NetNS = "fbx0", ns
	d, err := Open(o)
	if err != nil {
		t.Fatalf("open in %s: %v", ns, err)
	}
	t.Cleanup(func() { d.Close() })
	testenv.IP(t, ns, "addr", "add", addr+"/32", "dev", "fbx0")
	testenv.IP(t, ns, "route", "add", "198.18.0.0/15", "dev", "fbx0")
	if addr6 != "" {
		testenv.IP(t, ns, "-6", "addr", "add", addr6+"/128", "dev", "fbx0", "nodad")
		testenv.IP(t, ns, "-6", "route", "add", "2001:db8::/32", "dev", "fbx0")
	}
	return d, ns
}

func bufs(n int) []Packet {
	p := make([]Packet, n)
	for i := range p {
		p[i].Buf = make([]byte, BufSize)
	}
	return p
}

// fwdStats is what a forwarder saw.
type fwdStats struct {
	gso4, gso6, split, maxBatch, splitErrs, badHdrLen atomic.Int64
}

// forward copies packets from one port to the other in batches until from
// is closed: super-packets untouched when the far port offloads, split into
// segments (with completed checksums) when it does not.
func forward(t *testing.T, from, to Port, st *fwdStats) {
	pkts, segs := bufs(64), bufs(64)
	for {
		n, err := from.Read(pkts)
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("forward %s: read: %v", from.Name(), err)
			}
			return
		}
		if int64(n) > st.maxBatch.Load() {
			st.maxBatch.Store(int64(n))
		}
		for i := range n {
			o := pkts[i].Offload
			switch o.GSOType {
			case GSOTCPv4:
				st.gso4.Add(1)
			case GSOTCPv6:
				st.gso6.Add(1)
			}
			if o.IsGSO() { // Read must report the real header length
				var p packet.Parsed
				p.Decode(pkts[i].Data())
				if int(o.HdrLen) != p.PayloadOff || o.GSOSize == 0 || !o.NeedsCsum || int(o.CsumStart) != p.L4Off {
					st.badHdrLen.Add(1)
				}
			}
		}
		if to.Offloads() {
			writeAll(t, to, pkts[:n])
			continue
		}
		for i := range n {
			k, err := Split(&pkts[i], segs)
			if err != nil {
				st.splitErrs.Add(1)
				t.Errorf("split %+v: %v", pkts[i].Offload, err)
				continue
			}
			if k > 1 {
				st.split.Add(1)
			}
			writeAll(t, to, segs[:k])
		}
	}
}

func writeAll(t *testing.T, to Port, pkts []Packet) {
	for len(pkts) > 0 {
		n, err := to.Write(pkts)
		if err == nil {
			return
		}
		if errors.Is(err, ErrClosed) {
			return
		}
		t.Errorf("forward to %s: %v", to.Name(), err)
		pkts = pkts[n+1:]
	}
}

type lab struct {
	a, b     *Interface
	nsA, nsB string
	ab, ba   fwdStats
}

// newLab is two namespaces, client (198.18.0.1) and server (198.18.0.2),
// each with fbx0, joined by an in-test forwarder.
func newLab(t *testing.T, offA, offB bool) *lab {
	testenv.RequireNetAdmin(t)
	l := &lab{}
	l.a, l.nsA = openIn(t, "tuna", Options{Offload: offA}, "198.18.0.1", "2001:db8::1")
	l.b, l.nsB = openIn(t, "tunb", Options{Offload: offB}, "198.18.0.2", "2001:db8::2")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); forward(t, l.a, l.b, &l.ab) }()
	go func() { defer wg.Done(); forward(t, l.b, l.a, &l.ba) }()
	t.Cleanup(func() {
		l.a.Close()
		l.b.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("forwarders still running 5s after Close")
		}
	})
	return l
}

var transferData = func() []byte {
	b := make([]byte, 20<<20)
	r := rand.NewChaCha8([32]byte{'f', 'b', 'x'})
	r.Read(b)
	return b
}()

// transfer sends transferData from a server listening in the server
// namespace to a client in the client namespace and checks every byte.
func (l *lab) transfer(t *testing.T, network, server string) {
	t.Helper()
	var ln net.Listener
	if err := testenv.InNetns(l.nsB, func() (err error) { ln, err = net.Listen(network, net.JoinHostPort(server, "0")); return }); err != nil {
		t.Fatalf("listen in %s: %v", l.nsB, err)
	}
	defer ln.Close()
	deadline := time.Now().Add(60 * time.Second)
	ln.(*net.TCPListener).SetDeadline(deadline)
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		_, err = c.Write(transferData)
		srvErr <- err
	}()
	var c net.Conn
	if err := testenv.InNetns(l.nsA, func() (err error) { c, err = net.DialTimeout(network, ln.Addr().String(), 10*time.Second); return }); err != nil {
		t.Fatalf("dial %s from %s: %v", ln.Addr(), l.nsA, err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	start := time.Now()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", len(got), err)
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	if !bytes.Equal(got, transferData) {
		t.Fatalf("received %d bytes, not the %d sent (or different)", len(got), len(transferData))
	}
	el := time.Since(start)
	t.Logf("%s: %d MB in %v (%.0f Mbit/s), server retransmitted %d segments so far", network, len(got)>>20,
		el.Round(time.Millisecond), float64(len(got))*8/el.Seconds()/1e6, retransSegs(t, l.nsB))
}

// retransSegs reads Tcp RetransSegs of a namespace from its /proc/net/snmp.
func retransSegs(t *testing.T, ns string) int {
	var v int
	err := testenv.InNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i := range f {
				if i < len(names) && names[i] == "RetransSegs" {
					v, err = strconv.Atoi(f[i])
				}
			}
			return err
		}
		return errors.New("no Tcp line")
	})
	if err != nil {
		t.Errorf("retransmissions in %s: %v", ns, err)
	}
	return v
}

func TestInterface_OffloadForwardsSuperPacketsV4V6_Linux(t *testing.T) {
	l := newLab(t, true, true)
	if !l.a.Offloads() || !l.b.Offloads() {
		t.Fatalf("offloads refused by this kernel (a=%v b=%v)", l.a.Offloads(), l.b.Offloads())
	}
	l.transfer(t, "tcp4", "198.18.0.2")
	if l.ba.gso4.Load() == 0 {
		t.Error("no TCPv4 super-packet read: offload is not working")
	}
	l.transfer(t, "tcp6", "2001:db8::2")
	if l.ba.gso6.Load() == 0 {
		t.Error("no TCPv6 super-packet read: offload is not working")
	}
	if n := l.ba.badHdrLen.Load(); n != 0 {
		t.Errorf("%d super-packets with a wrong offload descriptor", n)
	}
	sa, sb := l.a.Stats(), l.b.Stats()
	t.Logf("server port %+v; client port %+v; max batch %d/%d", sb, sa, l.ba.maxBatch.Load(), l.ab.maxBatch.Load())
	if sb.GSOPackets == 0 || sb.ReadBytes < 2*uint64(len(transferData)) || sa.WriteBytes < sb.ReadBytes/2 {
		t.Errorf("counters do not add up: server %+v client %+v", sb, sa)
	}
}

func TestInterface_PlainForwards_Linux(t *testing.T) {
	l := newLab(t, false, false)
	if l.a.Offloads() || l.b.Offloads() {
		t.Fatal("Offloads() true on a device opened without Offload")
	}
	l.transfer(t, "tcp4", "198.18.0.2")
	l.transfer(t, "tcp6", "2001:db8::2")
	if n := l.ab.gso4.Load() + l.ab.gso6.Load() + l.ba.gso4.Load() + l.ba.gso6.Load(); n != 0 {
		t.Errorf("%d super-packets read from plain devices", n)
	}
}

// TestInterface_SplitSuperPacketsForPlainPort_Linux sends from an offloading
// server to a plain client, so every super-packet is Split (and the client's
// kernel checks every segment's checksums).
func TestInterface_SplitSuperPacketsForPlainPort_Linux(t *testing.T) {
	l := newLab(t, false, true)
	l.transfer(t, "tcp4", "198.18.0.2")
	l.transfer(t, "tcp6", "2001:db8::2")
	if l.ba.split.Load() == 0 {
		t.Error("no super-packet was split")
	}
	if l.ba.splitErrs.Load() != 0 {
		t.Errorf("%d split errors", l.ba.splitErrs.Load())
	}
}

func TestOpen_ConfiguresLink_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	ns := testenv.NewNetns(t, "tunc")
	d, err := Open(Options{Name: "fbx0", NetNS: ns, MTU: 1400, TxQueueLen: 2000, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := exec.Command("ip", "-n", ns, "-d", "link", "show", "fbx0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v: %s", err, out)
	}
	s := string(out)
	for _, want := range []string{"<POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP>", "mtu 1400", "qlen 2000", "tun type tun pi off vnet_hdr on"} {
		if !strings.Contains(s, want) {
			t.Errorf("link lacks %q:\n%s", want, s)
		}
	}
	if d.Name() != "fbx0" || d.MTU() != 1400 || !d.Offloads() {
		t.Errorf("name %q mtu %d offloads %v", d.Name(), d.MTU(), d.Offloads())
	}
	d.Close()
	if out, err := exec.Command("ip", "-n", ns, "link", "show", "fbx0").CombinedOutput(); err == nil {
		t.Errorf("fbx0 still exists after Close:\n%s", out)
	}

	// Defaults, and the kernel's choice of name.
	d2, err := Open(Options{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	out, _ = exec.Command("ip", "-n", ns, "-d", "link", "show", d2.Name()).CombinedOutput()
	if !strings.HasPrefix(d2.Name(), "tun") || !strings.Contains(string(out), "mtu 1500") || !strings.Contains(string(out), "qlen "+strconv.Itoa(DefaultTxQueueLen)) || !strings.Contains(string(out), "vnet_hdr off") {
		t.Errorf("defaults: name %q\n%s", d2.Name(), out)
	}

	for _, bad := range []Options{{Name: "a-name-too-long-for-linux"}, {MTU: 20}, {TxQueueLen: -1}, {NetNS: "fbx-t-no-such-ns"}} {
		if d, err := Open(bad); err == nil {
			d.Close()
			t.Errorf("Open(%+v) succeeded", bad)
		}
	}
}

// BeforeUp runs inside the namespace while the interface is down: a
// setting made there is in force when it comes up (here: no IPv6
// link-local address), and its error fails Open without leaving the
// interface behind.
func TestOpen_BeforeUpRunsInTheNamespaceBeforeUp_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	ns := testenv.NewNetns(t, "tunb")
	wasUp := true
	d, err := Open(Options{Name: "fbx0", NetNS: ns, BeforeUp: func(name string) error {
		// A socket made here is in the namespace: its ioctls see fbx0.
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		ifr, _ := unix.NewIfreq(name)
		if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
			return err
		}
		wasUp = ifr.Uint16()&unix.IFF_UP != 0
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/addr_gen_mode", []byte("1\n"), 0)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if wasUp {
		t.Error("BeforeUp ran with the interface up")
	}
	out, err := exec.Command("ip", "-n", ns, "-6", "addr", "show", "dev", "fbx0").CombinedOutput()
	if err != nil || strings.Contains(string(out), "fe80") {
		t.Errorf("fbx0 has an IPv6 link-local address although BeforeUp turned that off: %v %s", err, out)
	}
	if _, err := Open(Options{Name: "fbx1", NetNS: ns, BeforeUp: func(string) error { return os.ErrPermission }}); err == nil {
		t.Error("Open succeeded although BeforeUp failed")
	}
	if out, err := exec.Command("ip", "-n", ns, "link", "show", "fbx1").CombinedOutput(); err == nil {
		t.Errorf("fbx1 left after a failed BeforeUp:\n%s", out)
	}
}

// The kernel's drops at a full queue show in Stats as QueueDrops, counted
// like ip -s link counts them, and survive Close.
func TestStats_QueueDropsAreTheKernelsTxDropped_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	const qlen, sent = 16, 200
	d, ns := openIn(t, "tunq", Options{TxQueueLen: qlen}, "198.18.0.1", "")
	if s := d.Stats(); s.QueueDrops != 0 {
		t.Fatalf("QueueDrops %d before any traffic", s.QueueDrops)
	}
	// Nothing reads the device: all but a queue's worth are dropped.
	out, err := exec.Command("ip", "netns", "exec", ns, "bash", "-c",
		"for i in $(seq "+strconv.Itoa(sent)+"); do echo x >/dev/udp/198.18.0.2/9; done").CombinedOutput()
	if err != nil {
		t.Fatalf("sending: %v: %s", err, out)
	}
	got := d.Stats().QueueDrops
	if got < sent-qlen || got > sent {
		t.Errorf("QueueDrops %d after %d datagrams into a queue of %d, want %d-%d", got, sent, qlen, sent-qlen, sent)
	}
	out, err = exec.Command("ip", "-n", ns, "-j", "-s", "link", "show", "fbx0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -s link: %v: %s", err, out)
	}
	if want := `"dropped":` + strconv.FormatUint(got, 10) + `,"carrier_errors"`; !strings.Contains(string(out), want) {
		t.Errorf("QueueDrops %d, but ip -s link says otherwise (want %s):\n%s", got, want, out)
	}
	d.Close()
	if after := d.Stats().QueueDrops; after != got {
		t.Errorf("QueueDrops %d after Close, %d before", after, got)
	}
}

func TestOpen_FallsBackWhenOffloadRefused_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	setOffloadFn = func(int) (bool, error) { return false, errors.New("refused for the test") }
	defer func() { setOffloadFn = setOffload }()
	d, ns := openIn(t, "tunf", Options{Offload: true}, "198.18.0.1", "")
	if d.Offloads() {
		t.Fatal("Offloads() true after the offload ioctls failed")
	}
	out, _ := exec.Command("ip", "-n", ns, "-d", "link", "show", "fbx0").CombinedOutput()
	if !strings.Contains(string(out), "vnet_hdr off") {
		t.Errorf("fallback device still has the vnet header:\n%s", out)
	}
	sendUDP(t, ns, "198.18.0.9:9", 3)
	pkts := bufs(16)
	if n, got := readUDP(t, d, pkts, 3, 1); got != 3 {
		t.Errorf("plain fallback device: read %d packets, %d of them ours", n, got)
	}
}

// sendUDP sends k datagrams from inside ns, which routes them into fbx0.
func sendUDP(t *testing.T, ns, to string, k int) {
	t.Helper()
	var c net.Conn
	if err := testenv.InNetns(ns, func() (err error) { c, err = net.Dial("udp4", to); return }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range k {
		if _, err := c.Write([]byte{'f', 'b', 'x', byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the qdisc hand them to the device
}

// readUDP Reads until it has k of the datagrams sendUDP sent, at most
// reads times, and counts them (IPv6 router solicitations, MLD reports and
// the like come along too). It returns the packets in the first Read.
func readUDP(t *testing.T, d *Interface, pkts []Packet, k, reads int) (first, ours int) {
	t.Helper()
	for r := 0; r < reads && ours < k; r++ {
		n, err := d.Read(pkts)
		if err != nil {
			t.Error(err)
			return first, ours
		}
		if r == 0 {
			first = n
		}
		for i := range n {
			var p packet.Parsed
			p.Decode(pkts[i].Data())
			if p.Proto == packet.ProtoUDP && p.DstPort == 9 && len(p.Payload()) == 4 && bytes.Equal(p.Payload()[:3], []byte("fbx")) {
				if int(p.Payload()[3]) != ours {
					t.Errorf("datagram %d out of order (%d)", ours, p.Payload()[3])
				}
				ours++
			}
		}
	}
	return first, ours
}

func TestInterface_ReadDrainsABatch_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	for _, off := range []bool{false, true} {
		d, ns := openIn(t, "tunr", Options{Offload: off}, "198.18.0.1", "")
		sendUDP(t, ns, "198.18.0.9:9", 10)
		pkts := bufs(32)
		n, ours := readUDP(t, d, pkts, 10, 1)
		if ours != 10 {
			t.Errorf("offload=%v: one Read returned %d packets, %d of the 10 queued", off, n, ours)
		}
		if st := d.Stats(); st.ReadPackets != uint64(n) {
			t.Errorf("offload=%v: ReadPackets %d after reading %d", off, st.ReadPackets, n)
		}
	}
}

func TestInterface_CloseUnblocksRead_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	ns := testenv.NewNetns(t, "tunx")
	d, err := Open(Options{Name: "fbx0", NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		pkts := bufs(4)
		for range 1000 { // strays (IPv6 MLD, RS) may arrive first
			if _, err := d.Read(pkts); err != nil {
				errc <- err
				return
			}
		}
		errc <- errors.New("1000 reads without an error")
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	select {
	case err := <-errc:
		if err != ErrClosed {
			t.Errorf("Read after Close returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after Close")
	}
	if _, err := d.Write(bufs(1)); err != ErrClosed {
		t.Errorf("Write after Close: %v", err)
	}
}

// TestInterface_TryReadNeverBlocks: TryRead returns 0 at once on an empty
// device, the packets once they came, and ErrClosed after Close; WaitFD
// polls readable while packets wait.
func TestInterface_TryReadNeverBlocks_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	d, ns := openIn(t, "tunt", Options{Offload: true}, "198.18.0.1", "")
	// No IPv6 on the link: its router solicitations would make the device
	// readable at any moment.
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.fbx0.disable_ipv6=1").CombinedOutput(); err != nil {
		t.Fatalf("disable IPv6 in %s: %v: %s", ns, err, out)
	}
	pkts := bufs(16)
	for { // drain what the kernel sent on bringing the link up
		n, err := d.TryRead(pkts)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	start := time.Now()
	if n, err := d.TryRead(pkts); n != 0 || err != nil {
		t.Fatalf("empty device: %d, %v", n, err)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Errorf("TryRead of an empty device took %v", el)
	}
	readable := func() bool {
		fds := []unix.PollFd{{Fd: int32(d.WaitFD()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n == 1
	}
	if readable() {
		t.Error("WaitFD readable with nothing waiting")
	}
	sendUDP(t, ns, "198.18.0.9:9", 3)
	if !readable() {
		t.Error("WaitFD not readable with packets waiting")
	}
	ours := 0
	for r := 0; r < 20 && ours < 3; r++ {
		n, err := d.TryRead(pkts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			var p packet.Parsed
			p.Decode(pkts[i].Data())
			if p.Proto == packet.ProtoUDP && p.DstPort == 9 {
				ours++
			}
		}
	}
	if ours != 3 {
		t.Errorf("TryRead got %d of 3 datagrams", ours)
	}
	d.Close()
	if _, err := d.TryRead(pkts); !errors.Is(err, ErrClosed) {
		t.Errorf("TryRead after Close: %v", err)
	}
}

// TestInterface_WritesOffloadedPackets_Linux writes a UDP GSO super-packet with
// a partial checksum to the kernel and expects its segments on a socket.
func TestInterface_WritesOffloadedPackets_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	d, ns := openIn(t, "tunw", Options{Offload: true}, "198.18.0.2", "")
	if !d.Offloads() {
		t.Fatal("offloads refused")
	}
	var c net.PacketConn
	if err := testenv.InNetns(ns, func() (err error) { c, err = net.ListenPacket("udp4", "198.18.0.2:443"); return }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	super := buildSuper(t, superSpec{udp: true, payload: 3000, mss: 1200, ipID: 1})
	plain := bufs(3)
	if n, err := Split(&super, plain); err != nil || n != 3 {
		t.Fatal(n, err)
	}
	// One super-packet (3 datagrams) and one segment with a complete checksum.
	pkts := []Packet{super, plain[0]}
	if n, err := d.Write(pkts); n != 2 || err != nil {
		t.Fatalf("write: n=%d err=%v", n, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	want := []int{1200, 1200, 600, 1200}
	buf := make([]byte, 2000)
	for i, w := range want {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if n != w {
			t.Errorf("datagram %d: %d bytes, want %d", i, n, w)
		}
	}
	if st := d.Stats(); st.WritePackets != 2 || st.WriteBytes != uint64(super.Len+plain[0].Len) {
		t.Errorf("stats %+v", st)
	}
	// A plain device refuses what it cannot describe to the kernel.
	p, _ := openIn(t, "tunw", Options{}, "198.18.0.2", "")
	if n, err := p.Write(pkts); n != 0 || !errors.Is(err, errNoOffload) {
		t.Errorf("gso write to plain device: n=%d err=%v", n, err)
	}
}

func TestVnetHdr_RoundTripAndRealHeaderLength(t *testing.T) {
	p := buildSuper(t, superSpec{seq: 1, flags: packet.ACK, opts: tsOpts, payload: 3000, mss: 1448})
	want := p.Offload
	putVnetHdr(p.Buf[Headroom-vnetHdrLen:Headroom], want)
	p.Offload = Offload{}
	if !parseVnetHdr(&p) || p.Offload != want {
		t.Fatalf("round trip: got %+v, want %+v", p.Offload, want)
	}
	// The kernel may report its linear length as hdr_len; Read reports the
	// headers' length. An ECN flag does not change the type.
	h := p.Buf[Headroom-vnetHdrLen : Headroom]
	h[1] |= 0x80
	binary.NativeEndian.PutUint16(h[2:], 1500)
	if !parseVnetHdr(&p) || p.Offload.HdrLen != 52 || p.Offload.GSOType != GSOTCPv4 {
		t.Errorf("bogus hdr_len: got %+v, want HdrLen 52 TCPv4", p.Offload)
	}
	h[1] = 3 // UFO: never asked for
	if parseVnetHdr(&p) {
		t.Error("unknown gso type accepted")
	}
}

// TestInterface_NoAllocsPerBatch_Linux: reading and writing a batch allocates
// nothing (the packets written go to 198.18.0.9, which the namespace drops).
func TestInterface_NoAllocsPerBatch_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	for _, off := range []bool{false, true} {
		d, ns := openIn(t, "tuna", Options{Offload: off}, "198.18.0.1", "")
		var c net.Conn
		if err := testenv.InNetns(ns, func() (err error) { c, err = net.Dial("udp4", "198.18.0.9:9"); return }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pkts, msg := bufs(16), make([]byte, 1000)
		cycle := func() {
			for range 8 {
				c.Write(msg)
			}
			for got, r := 0, 0; got < 8 && r < 100; r++ {
				n, err := d.Read(pkts)
				if err != nil {
					t.Fatal(err)
				}
				got += n
				if _, err := d.Write(pkts[:n]); err != nil {
					t.Fatal(err)
				}
			}
		}
		cycle()
		if a := testing.AllocsPerRun(20, cycle); a != 0 {
			t.Errorf("offload=%v: %v allocations per batch of 8", off, a)
		}
	}
}

// TestInterface_JoinsUDPRuns_Linux: datagrams of one flow read from one device
// and written to another in one batch go as UDP super-packets (fewer writes),
// and the receiving sockets get every datagram, intact and in order, over
// IPv4 and IPv6.
func TestInterface_JoinsUDPRuns_Linux(t *testing.T) {
	testenv.RequireNetAdmin(t)
	a, nsA := openIn(t, "tunj", Options{Offload: true}, "198.18.0.1", "2001:db8::1")
	b, nsB := openIn(t, "tunj", Options{Offload: true}, "198.18.0.2", "2001:db8::2")
	if !b.uso.Load() {
		t.Fatal("this kernel refused UDP segmentation offload (needs 6.2)")
	}
	// Per family: ten 200-byte datagrams, a 50-byte one (ends a run), ten more.
	sizes := make([]int, 21)
	for i := range sizes {
		sizes[i] = 200
	}
	sizes[10] = 50
	payload := func(fam byte, i int) []byte {
		p := make([]byte, sizes[i])
		for j := range p {
			p[j] = fam ^ byte(i*31+j)
		}
		return p
	}
	families := []struct {
		network, listen, dst string
		fam                  byte
	}{{"udp4", "198.18.0.2:9000", "198.18.0.2:9000", 4}, {"udp6", "[2001:db8::2]:9000", "[2001:db8::2]:9000", 6}}
	var conns []net.PacketConn
	for _, f := range families {
		var c net.PacketConn
		if err := testenv.InNetns(nsB, func() (err error) { c, err = net.ListenPacket(f.network, f.listen); return }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		var s net.Conn
		if err := testenv.InNetns(nsA, func() (err error) { s, err = net.Dial(f.network, f.dst); return }); err != nil {
			t.Fatal(err)
		}
		for i := range sizes {
			if _, err := s.Write(payload(f.fam, i)); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
	}
	// Collect what fbx0 of A was handed, then write ours to B in one batch.
	var ours []Packet
	want := len(sizes) * len(families)
	for r := 0; r < 50 && len(ours) < want; r++ {
		pkts := bufs(64)
		n, err := a.Read(pkts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[:n] {
			var h packet.Parsed
			h.Decode(p.Data())
			if h.Proto == packet.ProtoUDP && h.DstPort == 9000 {
				ours = append(ours, p)
			}
		}
	}
	if len(ours) != want {
		t.Fatalf("read %d of our %d datagrams", len(ours), want)
	}
	if n, err := b.Write(ours); n != want || err != nil {
		t.Fatalf("write: %d of %d, %v", n, want, err)
	}
	for k, f := range families {
		c := conns[k]
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		for i := range sizes {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s datagram %d: %v", f.network, i, err)
			}
			if !bytes.Equal(buf[:n], payload(f.fam, i)) {
				t.Fatalf("%s datagram %d: %d bytes, not the %d sent (or different)", f.network, i, n, sizes[i])
			}
		}
	}
	st := b.Stats()
	// Runs: 11 (ten and the short one) and 10, per family.
	if st.JoinedWrites != 4 || st.JoinedPackets != uint64(want) || st.WritePackets != uint64(want) {
		t.Errorf("joined %d datagrams in %d writes (want %d in 4), %d written", st.JoinedPackets, st.JoinedWrites, want, st.WritePackets)
	}
}
