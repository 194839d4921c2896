package e2e

// faultbox attach on a Docker-like network built in namespaces (there is no
// Docker here; its network model is): a "host" namespace with a bridge,
// three "containers" on veth pairs (client, server, other) with default
// routes through the host, and an "outside" namespace behind the host's
// uplink, masqueraded by nftables as Docker's NAT does. The device is
// attached to a container by the PID of a process inside it, as
// `--pid $(docker inspect -f '{{.State.Pid}}' NAME)` would.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	fblab "github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/testenv"
)

// Addresses of the Docker-like network: the bridge network 198.18.1.0/24
// and 2001:db8:1::/64 (the host .1, client .2, server .3, other .4), and
// the host's uplink network 198.18.2.0/24 (outside .1, host .2).
const (
	dkClient4, dkServer4, dkOther4 = "198.18.1.2", "198.18.1.3", "198.18.1.4"
	dkClient6, dkServer6, dkOther6 = "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::4"
	dkOutside4                     = "198.18.2.1"
)

// dkContainers are the containers' host names and their last address byte.
var dkContainers = []struct {
	name string
	n    int
}{{"client", 2}, {"server", 3}, {"other", 4}}

// newDockerNet builds the network: namespaces fbx-NAME-host, -client,
// -server, -other, -outside, all removed (their processes killed) when the
// test ends. NAME is also the attach's name, so lab's helpers (status,
// counters) find the device.
func newDockerNet(t *testing.T) *lab {
	t.Helper()
	testenv.RequireNetAdmin(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft (nftables) is needed for the network's NAT: %v", err)
	}
	l := &lab{t: t, name: fblab.UniqueName("dk"), netns: true}
	hosts := []string{"host", "client", "server", "other", "outside"}
	t.Cleanup(func() {
		if r := fb(60*time.Second, "detach", "--name", l.name); r.Code != 0 {
			t.Errorf("detach --name %s: %s", l.name, r)
		}
		for _, h := range hosts {
			ns := mbNS(l, h)
			if _, err := os.Stat("/run/netns/" + ns); err != nil {
				continue
			}
			if r := testenv.Run(10*time.Second, "ip", "netns", "pids", ns); r.Code == 0 {
				for _, f := range strings.Fields(r.Stdout) {
					if pid, err := strconv.Atoi(f); err == nil {
						procOf(pid).Signal(unix.SIGKILL) // processes this test started there
					}
				}
			}
			if r := testenv.Run(10*time.Second, "ip", "netns", "del", ns); r.Code != 0 {
				t.Errorf("ip netns del %s: %s", ns, r)
			}
		}
	})
	ip := func(args ...string) {
		t.Helper()
		if r := testenv.Run(10*time.Second, "ip", args...); r.Code != 0 {
			t.Fatalf("ip %s: %s", strings.Join(args, " "), r)
		}
	}
	for _, h := range hosts {
		ip("netns", "add", mbNS(l, h))
		ip("-n", mbNS(l, h), "link", "set", "lo", "up")
	}
	host := mbNS(l, "host")
	ip("-n", host, "link", "add", "br0", "type", "bridge")
	ip("-n", host, "link", "set", "br0", "up")
	ip("-n", host, "addr", "add", "198.18.1.1/24", "dev", "br0")
	ip("-n", host, "addr", "add", "2001:db8:1::1/64", "dev", "br0", "nodad")
	for _, c := range dkContainers {
		ns, veth := mbNS(l, c.name), "veth-"+c.name
		ip("link", "add", veth, "netns", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ip("-n", host, "link", "set", veth, "master", "br0", "up")
		ip("-n", ns, "link", "set", "eth0", "up")
		ip("-n", ns, "addr", "add", fmt.Sprintf("198.18.1.%d/24", c.n), "dev", "eth0")
		ip("-n", ns, "addr", "add", fmt.Sprintf("2001:db8:1::%d/64", c.n), "dev", "eth0", "nodad")
		ip("-n", ns, "route", "add", "default", "via", "198.18.1.1")
		ip("-n", ns, "-6", "route", "add", "default", "via", "2001:db8:1::1")
	}
	out := mbNS(l, "outside")
	ip("link", "add", "uplink", "netns", host, "type", "veth", "peer", "name", "eth0", "netns", out)
	ip("-n", host, "link", "set", "uplink", "up")
	ip("-n", out, "link", "set", "eth0", "up")
	ip("-n", host, "addr", "add", "198.18.2.2/24", "dev", "uplink")
	ip("-n", out, "addr", "add", dkOutside4+"/24", "dev", "eth0")
	// The containers' link-local addresses finish duplicate address
	// detection first: a snapshot must not catch one still tentative.
	for _, c := range dkContainers {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if r := l.exec(5*time.Second, c.name, "ip", "-6", "addr", "show", "tentative"); r.Code == 0 && strings.TrimSpace(r.Stdout) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: IPv6 addresses still tentative after 10 s", c.name)
			}
		}
	}
	for _, args := range [][]string{
		{"sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
		{"nft", "add", "table", "ip", "nat"},
		{"nft", "add", "chain", "ip", "nat", "post", "{ type nat hook postrouting priority srcnat; }"},
		{"nft", "add", "rule", "ip", "nat", "post", "oifname", "uplink", "ip", "saddr", "198.18.1.0/24", "masquerade"},
	} {
		l.mustExec(10*time.Second, "host", args...)
	}
	return l
}

// attach runs faultbox attach --name (the network's name) with args and
// fails the test unless it succeeds.
func dkAttach(l *lab, args ...string) {
	l.t.Helper()
	argv := append([]string{"attach", "--name", l.name}, args...)
	if r := fb(60*time.Second, argv...); r.Code != 0 {
		l.t.Fatalf("faultbox %s: %s", strings.Join(argv, " "), r)
	}
}

// pidIn starts a process in container host to attach by, as a container's
// init would be.
func pidIn(l *lab, host string) string {
	l.t.Helper()
	return strconv.Itoa(l.start(host, "sleep 600").PID)
}

// connectRTT is the shortest of n TCP connects from host to the HTTP server
// at dst:port (curl's time_connect: one round trip).
func connectRTT(l *lab, host, dst string, port, n int) time.Duration {
	l.t.Helper()
	best := time.Hour
	for range n {
		r := l.exec(30*time.Second, host, "curl", "-sS", "-g", "-o", "/dev/null", "-m", "10", "-w", "%{time_connect}", fmt.Sprintf("http://%s:%d/", dst, port))
		sec, err := strconv.ParseFloat(strings.TrimSpace(r.Stdout), 64)
		if r.Code != 0 || err != nil {
			l.t.Fatalf("curl %s:%d from %s: %s", dst, port, host, r)
		}
		best = min(best, time.Duration(sec*float64(time.Second)))
	}
	return best
}

// TestAttach_DelayOnlyTowardTheSelectedPrefix: attached to the client
// container by PID with a 20 ms each-way delay toward the server's
// addresses only, a TCP connect to the server (SYN out, SYN-ACK back) and
// an IPv4 ping take 40 ms more, over IPv4 and IPv6, while connects and
// pings to the other container and through the NAT to the outside stay as
// fast as without the device, whose counters do not move for them.
func TestAttach_DelayOnlyTowardTheSelectedPrefix(t *testing.T) {
	t.Parallel()
	l := newDockerNet(t)
	for _, h := range []string{"server", "other"} {
		l.start(h, "python3 -m http.server --bind :: --directory "+t.TempDir()+" 8000")
		l.waitListen(h, "t", 8000)
	}
	prof := mbProfile(t, "delay20", "  - type: delay\n    delay: 20ms\n")
	type probe struct{ name, dst string }
	selected := []probe{{"tcp", dkServer4}, {"tcp", "[" + dkServer6 + "]"}, {"ping", dkServer4}}
	others := []probe{{"tcp", dkOther4}, {"tcp", "[" + dkOther6 + "]"}, {"ping", dkOther4}, {"ping", dkOther6}, {"ping", dkOutside4}}
	measure := func(p probe) time.Duration {
		if p.name == "tcp" {
			return connectRTT(l, "client", p.dst, 8000, 3)
		}
		return pingRTTs(l, "client", p.dst, 5)[0]
	}
	before := map[probe]time.Duration{}
	for _, p := range append(selected, others...) {
		before[p] = measure(p)
	}
	dkAttach(l, "--pid", pidIn(l, "client"), "--to", dkServer4+","+dkServer6, "--profile", prof)
	for _, p := range selected {
		rtt := measure(p)
		t.Logf("%s %s (selected): %v, %v before attach", p.name, p.dst, rtt, before[p])
		if rtt < 40*time.Millisecond || rtt > 60*time.Millisecond {
			t.Errorf("%s %s through a 20 ms each-way delay: %v, want 40 ms to 60 ms", p.name, p.dst, rtt)
		}
	}
	in := l.counter(l.status(), "in")
	for _, p := range others {
		rtt := measure(p)
		t.Logf("%s %s (not selected): %v, %v before attach", p.name, p.dst, rtt, before[p])
		if rtt > before[p]+5*time.Millisecond || rtt > 10*time.Millisecond {
			t.Errorf("%s %s (not selected): %v, %v before attach: the device is in its way", p.name, p.dst, rtt, before[p])
		}
	}
	if n := l.counter(l.status(), "in"); n != in {
		t.Errorf("traffic to the other container and the outside crossed the device: %v packets in, %v before it", n, in)
	}
	// apply switches the attached device's profile, as lab apply does; it
	// takes the profile as --profile too, as attach does.
	if r := fb(30*time.Second, "apply", "--name", l.name, "--profile", "passthrough"); r.Code != 0 {
		t.Fatalf("apply passthrough: %s", r)
	}
	if rtt := connectRTT(l, "client", dkServer4, 8000, 3); rtt > 10*time.Millisecond {
		t.Errorf("after apply passthrough, tcp %s: %v, want the delay gone", dkServer4, rtt)
	}
}

// TestAttach_OnLinkPeerStillResolvesTheNamespace: the selected host is on
// the attached container's own bridge network (on-link: two containers on
// one Docker bridge, or pods of one node behind a bridge CNI), and before
// every new exchange the neighbour entries between the two are flushed,
// as they are when they expire, so each one begins with ARP (IPv6:
// neighbour discovery) across attach's rules. New TCP connections and UDP
// exchanges work both ways, from the peer to the attached container's
// services and from the container to the peer's, over IPv4 and IPv6, and
// every one still takes the device's 10 ms each-way delay. Last, the same
// from the peer with arp_filter on in the container.
func TestAttach_OnLinkPeerStillResolvesTheNamespace(t *testing.T) {
	t.Parallel()
	l := newDockerNet(t)
	for _, h := range []string{"client", "server"} {
		l.start(h, "python3 -m http.server --bind :: --directory "+t.TempDir()+" 8000")
		l.waitListen(h, "t", 8000)
		l.start(h, "python3 -c '"+udpEcho+"'")
		l.waitListen(h, "u", 9000)
	}
	dkAttach(l, "--pid", pidIn(l, "client"), "--to", dkServer4+","+dkServer6, "--profile", mbProfile(t, "delay10", "  - type: delay\n    delay: 10ms\n"))
	addr := map[string][2]string{"client": {dkClient4, dkClient6}, "server": {dkServer4, dkServer6}}
	peer := map[string]string{"client": "server", "server": "client"}
	// forget flushes both sides' neighbour entries until neither knows the
	// other: the last packets of the exchange before (a FIN, through the
	// delay) may make one again just after a flush.
	forget := func() {
		t.Helper()
		known := ""
		for range 50 {
			known = ""
			for host := range addr {
				for _, fam := range []string{"-4", "-6"} {
					l.mustExec(10*time.Second, host, "ip", fam, "neigh", "flush", "dev", "eth0")
				}
			}
			for host := range addr {
				for _, a := range addr[peer[host]] {
					known += l.mustExec(10*time.Second, host, "ip", "neigh", "show", "to", a, "dev", "eth0")
				}
			}
			if strings.TrimSpace(known) == "" {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("the neighbour entries are back after every flush: %s", known)
	}
	// exchange opens a new connection (tcp) or sends a datagram (udp) from
	// host from to dst, the neighbours forgotten first, and checks that it
	// is answered through the delay.
	exchange := func(from, dst, proto string) {
		t.Helper()
		what := fmt.Sprintf("%s %s -> %s", proto, from, dst)
		forget()
		var r testenv.Result
		if host := dst; proto == "tcp" {
			if strings.Contains(dst, ":") {
				host = "[" + dst + "]"
			}
			r = l.exec(30*time.Second, from, "curl", "-sS", "-g", "-o", "/dev/null", "-m", "10", "-w", "%{time_connect}", "http://"+host+":8000/")
		} else {
			r = l.exec(30*time.Second, from, "python3", "-c", udpRTTPy, dst)
		}
		sec, err := strconv.ParseFloat(strings.TrimSpace(r.Stdout), 64)
		if r.Code != 0 || err != nil {
			t.Errorf("%s, the neighbours forgotten: %s", what, r)
			return
		}
		rtt := time.Duration(sec * float64(time.Second))
		t.Logf("%s: round trip %v", what, rtt.Round(100*time.Microsecond))
		if rtt < 20*time.Millisecond {
			t.Errorf("%s: round trip %v, want at least 20 ms (10 ms delay each way)", what, rtt)
		}
	}
	for _, from := range []string{"server", "client"} {
		for _, dst := range addr[peer[from]] {
			for _, proto := range []string{"tcp", "udp"} {
				exchange(from, dst, proto)
			}
		}
	}
	// With arp_filter on, the kernel answers an ARP request only if the
	// way back to its sender leaves by the interface it came in on: a
	// lookup from lo without a protocol, which must not take the app
	// table either.
	l.mustExec(10*time.Second, "client", "sysctl", "-qw", "net.ipv4.conf.all.arp_filter=1")
	exchange("server", dkClient4, "tcp")
}

// udpRTTPy sends one datagram to the UDP echo server (udpEcho) at argv[1]
// port 9000 and prints the seconds until its answer; it waits at most 5 s.
const udpRTTPy = `import socket, sys, time
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
t0 = time.monotonic()
s.sendto(b"rtt", (sys.argv[1], 9000))
s.recvfrom(100)
print("%.6f" % (time.monotonic() - t0))
`

// TestAttach_NginxThroughTheDevice: a real nginx in the server container,
// real curl and ab in the client container attached with a 5 ms each-way
// delay toward the server: every request answered, files intact, each
// connection slower by the delay and counted by the device.
func TestAttach_NginxThroughTheDevice(t *testing.T) {
	t.Parallel()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatalf("nginx is needed: %v", err)
	}
	if _, err := exec.LookPath("ab"); err != nil {
		t.Fatalf("ab (apache2-utils) is needed: %v", err)
	}
	l := newDockerNet(t)
	dir := t.TempDir()
	sum := randomFile(t, dir, "blob", 8<<20)
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off; user root; worker_processes 1; pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events { worker_connections 512; }
http { access_log off; server { listen 8080; listen [::]:8080; root %[1]s; } }
`, dir)), 0o644)
	l.start("server", fmt.Sprintf("%s -c %s -p %s", nginx, conf, dir))
	l.waitListen("server", "t", 8080)
	prof := mbProfile(t, "delay5", "  - type: delay\n    delay: 5ms\n")
	capFile := filepath.Join(t.TempDir(), "attach.pcapng")
	dkAttach(l, "--pid", pidIn(l, "client"), "--to", "198.18.1.3/32,2001:db8:1::3/128", "--port", "8080", "--profile", prof, "--capture", capFile)

	for _, url := range []string{"http://198.18.1.3:8080/blob", "http://[2001:db8:1::3]:8080/blob"} {
		out := filepath.Join(t.TempDir(), "blob")
		r := l.exec(60*time.Second, "client", "curl", "-sS", "-g", "-o", out, "-w", "%{http_code} %{time_connect}", url)
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "200 ") {
			t.Fatalf("curl %s: %s", url, r)
		}
		connect, _ := strconv.ParseFloat(strings.Fields(r.Stdout)[1], 64)
		if got, _ := fileHash(t, out); got != sum {
			t.Errorf("curl %s: sha256 %s, want %s", url, got, sum)
		}
		if connect < 0.010 {
			t.Errorf("curl %s: connected in %.1f ms, want at least 10 ms (the SYN and SYN-ACK each delayed 5 ms)", url, connect*1000)
		}
		t.Logf("curl %s: 8 MiB intact, connect %.1f ms", url, connect*1000)
	}
	before := l.counter(l.status(), "created")
	r := l.exec(120*time.Second, "client", "ab", "-q", "-n", "400", "-c", "20", "http://198.18.1.3:8080/nginx.conf")
	if r.Code != 0 {
		t.Fatalf("ab: %s", r)
	}
	complete, failed, mean := abField(r.Stdout, "Complete requests:"), abField(r.Stdout, "Failed requests:"), abField(r.Stdout, "Time per request:")
	t.Logf("ab -n 400 -c 20: complete %v, failed %v, mean %v ms per request", complete, failed, mean)
	if complete != 400 || failed != 0 || abField(r.Stdout, "Non-2xx responses:") > 0 {
		t.Errorf("ab: %v complete, %v failed, want 400 and 0:\n%s", complete, failed, r.Stdout)
	}
	if mean < 20 {
		t.Errorf("ab: %v ms per request, want at least 20 (two round trips of 10 ms)", mean)
	}
	if n := l.counter(l.status(), "created") - before; n < 400 {
		t.Errorf("the device tracked %v new flows during ab, want at least 400", n)
	}
	if r := fb(60*time.Second, "detach", "--name", l.name); r.Code != 0 {
		t.Fatalf("detach: %s", r)
	}
	// The capture is written as in a lab: pcapng, with the 8 MiB twice.
	data, err := os.ReadFile(capFile)
	if err != nil || len(data) < 16<<20 || string(data[:4]) != "\x0a\x0d\x0d\x0a" {
		t.Errorf("capture %s: %d bytes (%v), want a pcapng file holding both transfers", capFile, len(data), err)
	}
}

// abField reads the first number after label in ab's report (-1 if none).
func abField(out, label string) float64 {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), label); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, err := strconv.ParseFloat(f[0], 64)
				if err == nil {
					return v
				}
			}
		}
	}
	return -1
}

// TestAttach_CiscoASALostFIN_ServerStuckAsInTheLab: the lab's
// TestASATeardownLostFIN case with the device attached to the client
// container instead: the client's FIN swallowed, the RST at RCV.NXT-1
// ignored by the server in ESTABLISHED, which keeps its unacknowledged
// response until tcp_retries2 (3 here) gives up, a few seconds later.
func TestAttach_CiscoASALostFIN_ServerStuckAsInTheLab(t *testing.T) {
	t.Parallel()
	l := newDockerNet(t)
	mbLostFINStuck(t, l, dkServer6, func() {
		dkAttach(l, "--pid", pidIn(l, "client"), "--to", dkServer6, "--profile", "cisco-asa-lost-fin")
	})
}

// dkSnapshot is everything attach may change in a container's namespace,
// as the ip command and /proc/sys show it.
func dkSnapshot(l *lab, host string) string {
	l.t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "rule"}, {"ip", "-6", "rule"}, {"ip", "-d", "rule"}, {"ip", "-d", "-6", "rule"},
		{"ip", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-o", "link"}, {"ip", "-o", "addr"},
		{"sysctl", "net.ipv4.ip_early_demux", "net.ipv4.tcp_early_demux", "net.ipv4.udp_early_demux",
			"net.ipv4.conf.all.forwarding", "net.ipv4.conf.eth0.forwarding", "net.ipv4.conf.all.rp_filter",
			"net.ipv4.conf.eth0.rp_filter", "net.ipv4.conf.eth0.accept_local", "net.ipv6.conf.all.forwarding",
			"net.ipv6.conf.eth0.forwarding", "net.ipv6.conf.eth0.force_forwarding"},
	} {
		fmt.Fprintf(&b, "$ %s\n%s\n", strings.Join(args, " "), l.mustExec(10*time.Second, host, args...))
	}
	return b.String()
}

// dkSameSnapshot fails the test unless the namespace is as before.
func dkSameSnapshot(l *lab, host, before, when string) {
	l.t.Helper()
	if after := dkSnapshot(l, host); after != before {
		l.t.Errorf("%s: the namespace differs from before attach:\n--- before\n%s\n--- after\n%s", when, before, after)
	}
}

// dkBusyNamespace gives the client container the state of one that has
// been configured before: rules and tables of its own for both versions,
// extra routes, and (moved) the local rule away from pref 0, with a rule
// before it, as Cilium does on a node.
func dkBusyNamespace(l *lab, moved bool) {
	l.t.Helper()
	for _, args := range [][]string{
		{"ip", "rule", "add", "pref", "500", "from", "198.18.1.2", "to", "198.18.9.0/24", "lookup", "100"},
		{"ip", "route", "add", "198.18.9.0/24", "via", "198.18.1.1", "table", "100"},
		{"ip", "route", "add", "198.18.7.0/24", "via", "198.18.1.1", "metric", "50"},
		{"ip", "-6", "rule", "add", "pref", "600", "to", "2001:db8:9::/48", "lookup", "200"},
		{"ip", "-6", "route", "add", "2001:db8:9::/48", "via", "2001:db8:1::1", "table", "200"},
		{"ip", "-6", "route", "add", "2001:db8:7::/48", "via", "2001:db8:1::1"},
	} {
		l.mustExec(10*time.Second, "client", args...)
	}
	if moved {
		for _, args := range [][]string{
			{"ip", "rule", "add", "pref", "100", "lookup", "local"}, {"ip", "rule", "del", "pref", "0"},
			{"ip", "rule", "add", "pref", "10", "fwmark", "0x200", "lookup", "100"},
			{"ip", "-6", "rule", "add", "pref", "100", "lookup", "local"}, {"ip", "-6", "rule", "del", "pref", "0"},
			{"ip", "-6", "rule", "add", "pref", "10", "fwmark", "0x200", "lookup", "200"},
		} {
			l.mustExec(10*time.Second, "client", args...)
		}
	}
}

// dkTraffic checks that TCP works from the client to the server over both
// versions (through the device or not) and returns an error if not.
func dkTraffic(l *lab, port int) error {
	for _, dst := range []string{dkServer4, "[" + dkServer6 + "]"} {
		r := l.exec(20*time.Second, "client", "curl", "-sS", "-g", "-o", "/dev/null", "-m", "5", "-w", "%{http_code}", fmt.Sprintf("http://%s:%d/", dst, port))
		if r.Code != 0 || r.Stdout != "200" {
			return fmt.Errorf("curl %s:%d: %s", dst, port, r)
		}
	}
	return nil
}

// TestAttach_DetachRestoresExactly: on a container whose namespace already
// has rules, tables and routes of its own (the local rule at 0, or moved
// with a rule before it), attach to both IP versions, traffic through the
// device, detach: ip rule, ip -6 rule, every route of every table, the
// links, addresses and the sysctls attach touches are byte for byte what
// they were. Then attach again, SIGKILL the device (traffic goes on
// without it at once) and detach --all (in a private view of
// /run/faultbox, so it sees only this test's attach) restores them from
// the state file. Twice over (by PID, then by the namespace's name), so
// the namespace has been reconfigured several times before the last
// attach.
func TestAttach_DetachRestoresExactly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		moved bool
	}{{"local-rule-at-0", false}, {"local-rule-moved", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newDockerNet(t)
			dkBusyNamespace(l, tc.moved)
			l.httpServer(t.TempDir(), 8000)
			if err := dkTraffic(l, 8000); err != nil {
				t.Fatalf("before attach: %v", err)
			}
			before := dkSnapshot(l, "client")
			pid := pidIn(l, "client")
			for round, target := range [][]string{{"--pid", pid}, {"--netns", mbNS(l, "client")}} {
				round++
				dkAttach(l, append(target, "--to", "198.18.1.0/24,2001:db8:1::/64", "--profile", "passthrough")...)
				if err := dkTraffic(l, 8000); err != nil {
					t.Fatalf("round %d, attached: %v", round, err)
				}
				if n := l.counter(l.status(), "in"); n == 0 {
					t.Errorf("round %d: the traffic did not cross the device", round)
				}
				if r := fb(60*time.Second, "detach", "--name", l.name); r.Code != 0 {
					t.Fatalf("round %d: detach: %s", round, r)
				}
				dkSameSnapshot(l, "client", before, fmt.Sprintf("round %d, after detach", round))
				if err := dkTraffic(l, 8000); err != nil {
					t.Fatalf("round %d, detached: %v", round, err)
				}
			}

			iso := newIsolated(t)
			if r := iso.fb(60*time.Second, "attach", "--name", l.name, "--pid", pid, "--to", "198.18.1.0/24,2001:db8:1::/64"); r.Code != 0 {
				t.Fatalf("attach in the private view: %s", r)
			}
			var st device.State
			r := iso.run(10*time.Second, "cat", "/run/faultbox/"+l.name+"/state.json")
			if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.Device.PID <= 0 {
				t.Fatalf("state.json: %v: %s", err, r)
			}
			if err := st.Device.Signal(unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if !st.Device.WaitGone(10 * time.Second) {
				t.Fatalf("device %d survived SIGKILL", st.Device.PID)
			}
			if err := dkTraffic(l, 8000); err != nil {
				t.Errorf("after the device's SIGKILL (fail-open): %v", err)
			}
			if r := iso.fb(60*time.Second, "detach", "--all"); r.Code != 0 || !strings.Contains(r.Stdout, "what attach changed") {
				t.Fatalf("detach --all after SIGKILL: %s", r)
			} else {
				t.Logf("detach --all: %s", strings.Join(strings.Fields(r.Stdout), " "))
			}
			dkSameSnapshot(l, "client", before, "after SIGKILL and detach --all")
		})
	}
}

// TestAttach_FailOpenOnSIGKILL: a 200 MB download through the attached
// device, the device killed with SIGKILL in the middle: the download
// completes with the right SHA-256 (its connection falls back to the
// namespace's routing), and a new connection is answered within 1 s of the
// SIGKILL. Over IPv4 and IPv6.
func TestAttach_FailOpenOnSIGKILL(t *testing.T) {
	t.Parallel()
	for _, dst := range []string{dkServer4, dkServer6} {
		t.Run(map[bool]string{true: "ipv4", false: "ipv6"}[!strings.Contains(dst, ":")], func(t *testing.T) {
			t.Parallel()
			l := newDockerNet(t)
			dir := t.TempDir()
			sum := randomFile(t, dir, "big", 200<<20)
			l.httpServer(dir, 8000)
			dkAttach(l, "--pid", pidIn(l, "client"), "--to", dst, "--profile", mbProfile(t, "delay2", "  - type: delay\n    delay: 2ms\n"))
			url := fmt.Sprintf("http://[%s]:8000/big", dst)
			if !strings.Contains(dst, ":") {
				url = fmt.Sprintf("http://%s:8000/big", dst)
			}
			out := filepath.Join(t.TempDir(), "big")
			dl := l.start("client", fmt.Sprintf("curl -sS -g --limit-rate 40M -o %s -w 'done %%{http_code}\\n' %s", out, url))
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if fi, err := os.Stat(out); err == nil && fi.Size() > 40<<20 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the download did not reach 40 MB in 20 s")
				}
			}
			// New connections, one every 100 ms (each a fresh SYN, none
			// waiting for a retransmission), until one is answered. The
			// prober starts before the SIGKILL and waits for the go file:
			// a program's start on a busy machine is not the device's.
			goFile := filepath.Join(t.TempDir(), "go")
			prober := l.start("client", fmt.Sprintf("python3 -c '%s' %s 8000 %s", reconnectPy, strings.Trim(dst, "[]"), goFile))
			prober.waitOutput(t, "ready", 30*time.Second)
			dev := l.deviceProc()
			killed := float64(time.Now().UnixNano()) / 1e9
			if err := dev.Signal(unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(goFile+".tmp", []byte(fmt.Sprint(killed)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(goFile+".tmp", goFile); err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(out)
			line := prober.waitOutput(t, "answered ", 30*time.Second)
			ms, err := strconv.ParseFloat(strings.TrimPrefix(line, "answered "), 64)
			if err != nil {
				t.Fatalf("prober: %q: %v", line, err)
			}
			t.Logf("device killed at %d MB; a new connection answered %.0f ms after the SIGKILL", fi.Size()>>20, ms)
			if ms > 1000 {
				t.Errorf("the first new connection was answered %.0f ms after the SIGKILL, want within 1 s", ms)
			}
			dl.waitOutput(t, "done 200", 60*time.Second)
			if got, _ := fileHash(t, out); got != sum {
				t.Errorf("downloaded sha256 %s, want %s", got, sum)
			}
		})
	}
}

// TestAttach_OpenConnectionsCarryOn: a download that began before attach
// goes on through the device (its flow picked up mid-stream, the client
// the side with the higher port) and on without it after detach, the file
// intact. Over IPv4 and IPv6.
func TestAttach_OpenConnectionsCarryOn(t *testing.T) {
	t.Parallel()
	l := newDockerNet(t)
	dir := t.TempDir()
	sum := randomFile(t, dir, "big", 60<<20)
	l.httpServer(dir, 8000)
	pid := pidIn(l, "client")
	for _, dst := range []string{dkServer4, "[" + dkServer6 + "]"} {
		out := filepath.Join(t.TempDir(), "big")
		dl := l.start("client", fmt.Sprintf("curl -sS -g --limit-rate 20M -o %s -w 'done %%{http_code}\\n' http://%s:8000/big", out, dst))
		size := func() int64 {
			if fi, err := os.Stat(out); err == nil {
				return fi.Size()
			}
			return 0
		}
		waitSize := func(n int64) {
			t.Helper()
			for deadline := time.Now().Add(20 * time.Second); size() < n; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: the download stalled at %d bytes", dst, size())
				}
			}
		}
		waitSize(5 << 20)
		dkAttach(l, "--pid", pid, "--to", dkServer4+","+dkServer6)
		at := size()
		waitSize(at + 10<<20)
		st := l.status()
		if f, in := l.counter(st, "created"), l.counter(st, "in"); f != 1 || in < 100 {
			t.Errorf("%s: after attach the device tracked %v flows and read %v packets, want the download's flow and its packets", dst, f, in)
		}
		if est := numbers(st, "established"); len(est) != 1 || est[0] != 1 {
			t.Errorf("%s: flow states %v, want the download established", dst, numbers(st, "established"))
		}
		if r := fb(60*time.Second, "detach", "--name", l.name); r.Code != 0 {
			t.Fatalf("detach: %s", r)
		}
		off := size()
		dl.waitOutput(t, "done 200", 60*time.Second)
		if got, _ := fileHash(t, out); got != sum {
			t.Errorf("%s: sha256 %s, want %s", dst, got, sum)
		}
		t.Logf("%s: attached at %d MB, detached at %d MB, 60 MB intact", dst, at>>20, off>>20)
	}
}

// reconnectPy prints "ready", waits for the file argv[3] to hold a
// wall-clock time, then connects to argv[1] port argv[2] every 100 ms
// (each attempt a new connection with a 100 ms timeout) until one is
// answered, for at most 10 s, and prints "answered MS": how many
// milliseconds after that time it was. No single quotes: it goes to sh
// inside them.
const reconnectPy = `import os, socket, sys, time
host, port, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print("ready", flush=True)
deadline = time.time() + 60
while not os.path.exists(go):
    if time.time() > deadline:
        sys.exit(2)
    time.sleep(0.002)
t0 = float(open(go).read())
while time.time() - t0 < 10:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(0.1)
    try:
        s.connect((host, port))
        print("answered %.0f" % ((time.time() - t0) * 1000), flush=True)
        sys.exit(0)
    except OSError:
        time.sleep(max(0, 0.1 - (time.time() % 0.1)))
    finally:
        s.close()
print("unanswered", flush=True)
sys.exit(1)
`

// TestAttach_WithOnlyCapNetAdmin: inside the container, as a sidecar would
// be, with every capability dropped but CAP_NET_ADMIN (setpriv): attach
// --netns self works (traffic delayed), status and detach too; attaching
// to another namespace asks for CAP_SYS_ADMIN; without CAP_NET_ADMIN
// attach refuses. The refusals change nothing.
func TestAttach_WithOnlyCapNetAdmin(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop capabilities: %v", err)
	}
	l := newDockerNet(t)
	before := dkSnapshot(l, "client")
	capped := func(caps string, args ...string) testenv.Result {
		argv := l.command("client", append([]string{"setpriv", "--bounding-set=-all" + caps, "--inh-caps=-all", faultbox}, args...)...)
		return testenv.Run(60*time.Second, argv[0], argv[1:]...)
	}
	r := capped("", "attach", "--name", l.name, "--netns", "self", "--to", dkServer4)
	if r.Code == 0 || !strings.Contains(r.Stderr, "CAP_NET_ADMIN") {
		t.Errorf("attach without capabilities: %s, want a refusal naming CAP_NET_ADMIN", r)
	}
	r = capped(",+net_admin", "attach", "--name", l.name, "--pid", pidIn(l, "server"), "--to", dkClient4)
	if r.Code == 0 || !strings.Contains(r.Stderr, "CAP_SYS_ADMIN") || !strings.Contains(r.Stderr, "--netns self") {
		t.Errorf("attach to another namespace with CAP_NET_ADMIN only: %s, want a refusal naming CAP_SYS_ADMIN and --netns self", r)
	}
	dkSameSnapshot(l, "client", before, "after the refusals")
	if _, err := os.Stat(device.Dir(l.name)); err == nil {
		t.Errorf("a refused attach left %s", device.Dir(l.name))
	}

	r = capped(",+net_admin", "attach", "--name", l.name, "--netns", "self", "--to", dkServer4+","+dkServer6, "--profile", mbProfile(t, "delay20", "  - type: delay\n    delay: 20ms\n"))
	if r.Code != 0 {
		t.Fatalf("attach --netns self with CAP_NET_ADMIN only: %s", r)
	}
	t.Logf("%s", strings.TrimSpace(r.Stdout))
	// ICMPv6 from the prefix is not steered (neighbor discovery must stay
	// on eth0), so an IPv6 ping is delayed one way only.
	for dst, want := range map[string]time.Duration{dkServer4: 40 * time.Millisecond, dkServer6: 20 * time.Millisecond} {
		if rtts := pingRTTs(l, "client", dst, 5); rtts[0] < want {
			t.Errorf("ping %s through the sidecar's device: %v, want at least %v", dst, rtts, want)
		}
	}
	if r := capped(",+net_admin", "status", "--name", l.name); r.Code != 0 || !strings.Contains(r.Stdout, "--netns self") {
		t.Errorf("status with CAP_NET_ADMIN only: %s", r)
	}
	if r := capped(",+net_admin", "detach", "--name", l.name); r.Code != 0 {
		t.Errorf("detach with CAP_NET_ADMIN only: %s", r)
	}
	dkSameSnapshot(l, "client", before, "after detach")
}

// TestAttach_BadInputIsAClearErrorAndChangesNothing: every refusal the
// issue lists exits with a message that says what is wrong, leaves the
// container's namespace as it was and no runtime directory behind.
func TestAttach_BadInputIsAClearErrorAndChangesNothing(t *testing.T) {
	t.Parallel()
	l := newDockerNet(t)
	pid := pidIn(l, "client")
	bare := mbNS(l, "outside") // routes only to 198.18.2.0/24
	maxPID, _ := os.ReadFile("/proc/sys/kernel/pid_max")
	l.mustExec(10*time.Second, "other", "ip", "link", "add", "fbx-app", "type", "veth", "peer", "name", "fbx-peer")
	before := dkSnapshot(l, "client")
	beforeOther := dkSnapshot(l, "other")
	refused := func(what, name string, args []string, want string) {
		t.Helper()
		r := fb(60*time.Second, append([]string{"attach", "--name", name}, args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 2 {
			t.Errorf("%s: %s; want exit 2 and a short error saying %q", what, r, want)
		} else {
			t.Logf("%s: %s", what, strings.TrimSpace(r.Stderr))
		}
		if _, err := os.Stat(device.Dir(name)); err == nil {
			t.Errorf("%s: the refused attach left %s", what, device.Dir(name))
		}
		dkSameSnapshot(l, "client", before, what)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no-such-pid", []string{"--pid", strings.TrimSpace(string(maxPID)), "--to", dkServer4}, "no such process"},
		{"no-route", []string{"--netns", bare, "--to", "198.18.5.0/24"}, "has no route to 198.18.5.0/24"},
		{"not-a-prefix", []string{"--pid", pid, "--to", "198.18.1.300/24"}, "is not a prefix"},
		{"not-a-prefix-word", []string{"--pid", pid, "--to", "server"}, "is not a prefix"},
		{"no-prefix", []string{"--pid", pid}, "--to"},
		{"bad-port", []string{"--pid", pid, "--to", dkServer4, "--port", "70000"}, "--port"},
		{"pid-and-netns", []string{"--pid", pid, "--netns", "self", "--to", dkServer4}, "not both"},
		{"interface-taken", []string{"--pid", pidIn(l, "other"), "--to", dkServer4}, "already has an interface named fbx-app"},
		{"lab-host-name-in-profile", []string{"--pid", pid, "--to", dkServer4, "--profile", mbProfile(t, "named", "  - type: drop\n    match: {to: server}\n")}, "server"},
	} {
		refused(c.name, l.name, c.args, c.want)
	}
	dkSameSnapshot(l, "other", beforeOther, "other container")

	dkAttach(l, "--pid", pid, "--to", dkOther4)
	before = dkSnapshot(l, "client")
	refused("second-attach", fblab.UniqueName("dk"), []string{"--pid", pid, "--to", dkServer4}, "already has faultbox attached")
}
