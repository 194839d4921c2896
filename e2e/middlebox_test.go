package e2e

// The stateful middlebox behaviors of issue 4 between real kernels: a Cisco
// ASA tearing down a cancelled download, a dial-up client that vanishes, a
// FIN delayed on the wire of a keep-alive race, a NAT that forgets idle
// flows. Each test follows its failure in docs/field-failures.md and
// asserts what this lab's kernel really does
// (docs/field-failures.md#what-linux-does); the server's socket states come
// from sock_diag in its namespace.

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

const (
	mbPort        = 80
	mbUserTimeout = 3 * time.Second // TCP_USER_TIMEOUT of the ASA tests' server
	mbPoll        = 25 * time.Millisecond
)

// mbClient is the path of the Python clients (testdata/middlebox_client.py).
func mbClient(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "middlebox_client.py"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mbProfile writes a profile file into a temp dir and returns its path.
func mbProfile(t *testing.T, name, behaviors string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".yaml")
	doc := fmt.Sprintf("name: %s\ndescription: e2e fixture\nsources: [\"e2e/middlebox_test.go\"]\nbehaviors:\n%s", name, behaviors)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mbNS is the network namespace of a lab host.
func mbNS(l *lab, host string) string { return "fbx-" + l.name + "-" + host }

// mbTick is one sock_diag dump of a host's port-80 sockets (listeners left
// out) and when it was taken.
type mbTick struct {
	at    time.Time
	socks []sockdiag.Socket
}

// mbWatch dumps host's TCP sockets on port 80 every mbPoll until stop says
// so or d has passed, and returns every dump. It fails the test when the
// deadline passes without stop saying so, with the last dump.
func mbWatch(t *testing.T, l *lab, host string, d time.Duration, stop func(socks []sockdiag.Socket) bool) []mbTick {
	t.Helper()
	c, err := sockdiag.Open(mbNS(l, host))
	if err != nil {
		t.Fatalf("sock_diag in %s: %v", host, err)
	}
	defer c.Close()
	notListen := sockdiag.StateMask(sockdiag.Established, sockdiag.SynRecv, sockdiag.FinWait1, sockdiag.FinWait2,
		sockdiag.TimeWait, sockdiag.Close, sockdiag.CloseWait, sockdiag.LastAck, sockdiag.Closing)
	var ticks []mbTick
	for deadline := time.Now().Add(d); ; {
		socks, err := c.Dump(sockdiag.Filter{Port: mbPort, States: notListen})
		if err != nil {
			t.Fatalf("sock_diag dump in %s: %v", host, err)
		}
		ticks = append(ticks, mbTick{time.Now(), socks})
		if stop(socks) {
			return ticks
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s sockets on port %d after %v: %s", host, mbPort, d, mbDescribe(socks))
		}
		time.Sleep(mbPoll)
	}
}

func mbDescribe(socks []sockdiag.Socket) string {
	if len(socks) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, s := range socks {
		fmt.Fprintf(&b, "[%s %v->%v unacked %d sendq %d timer %s retrans %d] ", s.State, s.Src, s.Dst, s.Unacked, s.SendQ, s.Timer, s.Retrans)
	}
	return b.String()
}

// mbLine waits up to d for the JSON line whose first key is key in a
// background client's log (the clients print their line's kind first) and
// decodes it.
func mbLine(t *testing.T, p *proc, key string, d time.Duration, v any) {
	t.Helper()
	line := p.waitOutput(t, `{"`+key+`"`, d)
	if err := json.Unmarshal([]byte(line), v); err != nil {
		t.Fatalf("client line %q: %v", line, err)
	}
}

// mbEvent is one line of serve's JSON event log (read with jsonLines).
type mbEvent struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"`
	Conn   int       `json:"conn"`
	Peer   string    `json:"peer"`
	Err    string    `json:"err"`
	Reason string    `json:"reason"`
}

// mbServeEnd waits up to d for serve to log the close of the connection
// from peer port and returns the error it logged before (or "").
func mbServeEnd(t *testing.T, path string, port int, d time.Duration) (errText string, closed time.Time) {
	t.Helper()
	suffix := fmt.Sprintf(":%d", port)
	for deadline := time.Now().Add(d); ; {
		errText = ""
		for _, e := range jsonLines[mbEvent](t, path) {
			if !strings.HasSuffix(e.Peer, suffix) {
				continue
			}
			if e.Event == "error" {
				errText = e.Err
			}
			if e.Event == "close" {
				return errText, e.Time
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve logged no close of the connection from port %d in %v", port, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mbShut is the line the cancel client prints after its shutdown(SHUT_WR).
type mbShut struct {
	Read int     `json:"read"`
	Host string  `json:"host"`
	Port int     `json:"port"`
	At   float64 `json:"at"` // wall clock, seconds
}

func (s mbShut) time() time.Time { return time.Unix(0, int64(s.At*1e9)) }

// mbCancel runs the cancelled download: GET /bytes/64mib from addr, read
// 64 KiB, then the client's FIN (shutdown), keeping the socket open.
func mbCancel(t *testing.T, l *lab, addr string) mbShut {
	t.Helper()
	// A receive buffer that starts at 4 MiB: the server, writing as fast as
	// the device carries, must not fill the client's window before the
	// client has read its 64 KiB and sent its FIN (with the 128 KiB default
	// it sometimes does, and the server then sits behind a zero window).
	l.mustExec(10*time.Second, "client", "sysctl", "-qw", "net.ipv4.tcp_rmem=4096 4194304 16777216")
	p := l.start("client", fmt.Sprintf("timeout 30 python3 %s cancel %s %d /bytes/64mib 65536 20", mbClient(t), addr, mbPort))
	var s mbShut
	mbLine(t, p, "shut", 15*time.Second, &s)
	if s.Read != 65536 {
		t.Fatalf("client read %d bytes before its FIN, want 65536", s.Read)
	}
	return s
}

// mbNstat reads one kernel counter of host's namespace (nstat -a: the
// namespace is new, so absolute values belong to this test). A value it
// cannot read fails the test: it must not pass as 0.
func mbNstat(t *testing.T, l *lab, host, name string) int {
	t.Helper()
	out := l.mustExec(10*time.Second, host, "nstat", "-asz", name)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == name {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("nstat %s: %q: %v", name, line, err)
			}
			return n
		}
	}
	t.Fatalf("nstat %s: no value in %q", name, out)
	return 0
}

// mbGrowth is how much a device counter grew since the status before: lab
// up's probe connections cross the profile too, and must not count.
func mbGrowth(l *lab, before any, key string) float64 {
	l.t.Helper()
	return l.counter(l.status(), key) - l.counter(before, key)
}

// TestASATeardown_RSTAtRcvNxtMinus1AfterFIN_AcceptedByLinux6: the cisco-asa
// profile (the 2015 report exactly) against faultbox serve writing a 64 MiB
// response that the client cancels with a FIN. On the wire: the client's
// FIN reaches the server, then one RST at the server's RCV.NXT-1 (the FIN's
// own sequence number), and after it nothing of the connection crosses the
// device either way. Current Linux accepts a RST at RCV.NXT-1 in
// CLOSE_WAIT (tcp_reset_check), so the server's socket is gone at once
// (the write fails with EPIPE) instead of lasting its 3 s user timeout.
// Over IPv4 and IPv6.
func TestASATeardown_RSTAtRcvNxtMinus1AfterFIN_AcceptedByLinux6(t *testing.T) {
	t.Parallel()
	capFile := filepath.Join(t.TempDir(), "asa.pcapng")
	l := startLab(t, "--profile", "cisco-asa", "--capture", capFile)
	log := l.serve(mbPort, "--user-timeout", mbUserTimeout.String())
	before := l.status()

	var conns []mbShut
	for _, addr := range []string{serverV4, serverV6} {
		shut := mbCancel(t, l, addr)
		conns = append(conns, shut)
		ticks := mbWatch(t, l, "server", time.Second, func(s []sockdiag.Socket) bool { return len(s) == 0 })
		gone := ticks[len(ticks)-1].at.Sub(shut.time())
		errText, closed := mbServeEnd(t, log, shut.Port, 5*time.Second)
		t.Logf("%s: server socket gone %v after the client's FIN (polled every %v; user timeout %v); serve closed %v after it: %q",
			addr, gone.Round(time.Millisecond), mbPoll, mbUserTimeout, closed.Sub(shut.time()).Round(time.Microsecond), errText)
		if !strings.Contains(errText, "broken pipe") {
			t.Errorf("%s: serve's write ended with %q, want broken pipe (EPIPE: a RST accepted in CLOSE_WAIT)", addr, errText)
		}
	}
	if n := mbGrowth(l, before, "rst_injected"); n != 2 {
		t.Errorf("asa-teardown injected %v RSTs, want 2 (one per connection)", n)
	}
	if n := mbNstat(t, l, "server", "TcpExtTCPChallengeACK"); n != 0 {
		t.Errorf("server sent %d challenge ACKs, want 0 (the RST was accepted)", n)
	}

	// The clients retransmit their unacknowledged FINs into the forgotten
	// flows meanwhile (RTO 200 ms and more).
	time.Sleep(time.Second)
	// The capture is complete once the device has stopped.
	if r := fb(60*time.Second, "lab", "down", "--name", l.name); r.Code != 0 {
		t.Fatalf("lab down: %s", r)
	}
	for _, c := range conns {
		mbCheckASAWire(t, capFile, c)
	}
}

// mbCheckASAWire checks one torn-down connection in the capture: the
// client's FIN forwarded to the server, the device's RST to the server at
// RCV.NXT-1, where RCV.NXT is the FIN's sequence + 1 (what the server
// acknowledges after the FIN, logged when it sent anything), and nothing
// of the connection delivered after the RST in either direction, while the
// client still sends: its FIN, never acknowledged, is retransmitted.
func mbCheckASAWire(t *testing.T, capFile string, c mbShut) {
	t.Helper()
	cli := netip.AddrPortFrom(netip.MustParseAddr(c.Host), uint16(c.Port))
	srv := netip.AddrPortFrom(netip.MustParseAddr(serverV4), mbPort)
	if cli.Addr().Is6() {
		srv = netip.AddrPortFrom(netip.MustParseAddr(serverV6), mbPort)
	}
	cp, err := report.ReadCapture(capFile, report.Filter{Conns: []report.Conn{{A: cli, B: srv}}})
	if err != nil {
		t.Fatalf("read capture: %v", err)
	}
	fromClient := func(p *report.Packet) bool { return p.Src.Addr().Unmap() == cli.Addr() && p.Src.Port() == cli.Port() }
	fin, rst := -1, -1
	for i := range cp.Packets {
		p := &cp.Packets[i]
		switch {
		case fin < 0 && fromClient(p) && p.Flags&packet.FIN != 0 && !p.Injected:
			fin = i
		case rst < 0 && p.Injected && p.Flags&packet.RST != 0 && p.Dst == srv:
			rst = i
		}
	}
	if fin < 0 || rst < 0 || rst < fin {
		t.Fatalf("%v: want the client's FIN then an injected RST to the server; FIN at %d, RST at %d of %d packets", cli, fin, rst, len(cp.Packets))
	}
	f, r := &cp.Packets[fin], &cp.Packets[rst]
	if f.Dropped || f.To != "server" {
		t.Errorf("%v: the client's FIN did not reach the server (to %q, dropped %v, %q)", cli, f.To, f.Dropped, f.Note)
	}
	rcvNxt := f.Seq + uint32(f.Len) + 1 // the FIN takes one sequence number
	if r.Seq != rcvNxt-1 {
		t.Errorf("%v: RST seq %d, want RCV.NXT-1 = %d (FIN seq %d, len %d)", cli, r.Seq, rcvNxt-1, f.Seq, f.Len)
	}
	acked, late := 0, 0
	for i := fin + 1; i < len(cp.Packets); i++ {
		p := &cp.Packets[i]
		if !fromClient(p) && !p.Injected && p.Flags&packet.ACK != 0 && p.Ack == rcvNxt {
			acked++ // the server's own RCV.NXT after the FIN
		}
		if i > rst && !p.Injected && !p.Dropped {
			late++
			t.Errorf("%v: delivered after the RST: %v->%v flags %v seq %d len %d (%q)", cli, p.Src, p.Dst, p.Flags, p.Seq, p.Len, p.Note)
		}
	}
	dropped := 0
	for i := rst + 1; i < len(cp.Packets); i++ {
		if cp.Packets[i].Dropped && fromClient(&cp.Packets[i]) {
			dropped++
		}
	}
	t.Logf("%v: FIN seq %d -> RST seq %d %v after it; server segments acking RCV.NXT %d: %d; after the RST %d client segments dropped, %d delivered",
		cli, f.Seq, r.Seq, r.Out.Sub(f.Out), rcvNxt, acked, dropped, late)
	if dropped == 0 {
		t.Errorf("%v: no client segment after the RST: the unacknowledged FIN should have been retransmitted (and dropped)", cli)
	}
}

// TestASATeardown_RSTNotAtRcvNxtMinus1_ServerStuckInCloseWaitUntilUserTimeout:
// the ASA teardown with the RST off by another amount, against a server
// writing a large response after the client's FIN. Linux ignores the RST,
// so the server socket stays in CLOSE_WAIT with unacknowledged data,
// retransmitting into the forgotten flow, until its TCP_USER_TIMEOUT (3 s)
// ends it (ETIMEDOUT). At RCV.NXT-2 the RST is below the window and dropped
// without a word; at RCV.NXT+1 it is inside the window and draws a
// challenge ACK (RFC 5961), which the device drops.
func TestASATeardown_RSTNotAtRcvNxtMinus1_ServerStuckInCloseWaitUntilUserTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		offset     int
		challenges bool
	}{
		{"offset-2_BelowWindow_IgnoredSilently", -2, false},
		{"offset+1_InWindow_ChallengeACKDropped", +1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prof := mbProfile(t, "asa-offset", fmt.Sprintf(`  - type: asa-teardown
    match: {protocol: tcp}
    on: [fin]
    fin: forward
    offset: %d
`, tc.offset))
			l := startLab(t, "--profile", prof)
			log := l.serve(mbPort, "--user-timeout", mbUserTimeout.String())
			before := l.status()
			shut := mbCancel(t, l, serverV4)
			ticks := mbWatch(t, l, "server", mbUserTimeout+5*time.Second, func(s []sockdiag.Socket) bool { return len(s) == 0 })
			mbCheckStuck(t, ticks, shut.time(), sockdiag.CloseWait, mbUserTimeout-500*time.Millisecond, mbUserTimeout+3*time.Second)
			errText, closed := mbServeEnd(t, log, shut.Port, 5*time.Second)
			t.Logf("serve closed %v after the client's FIN: %q", closed.Sub(shut.time()).Round(time.Millisecond), errText)
			if !strings.Contains(errText, "connection timed out") {
				t.Errorf("serve's write ended with %q, want connection timed out (ETIMEDOUT from TCP_USER_TIMEOUT)", errText)
			}
			challenges := mbNstat(t, l, "server", "TcpExtTCPChallengeACK")
			dropped := mbGrowth(l, before, "challenge_acks_dropped")
			t.Logf("server challenge ACKs (nstat): %d; dropped by the device: %v", challenges, dropped)
			if tc.challenges && (challenges == 0 || dropped == 0) {
				t.Errorf("RST at RCV.NXT%+d: %d challenge ACKs sent, %v dropped; want both > 0", tc.offset, challenges, dropped)
			}
			if !tc.challenges && (challenges != 0 || dropped != 0) {
				t.Errorf("RST at RCV.NXT%+d: %d challenge ACKs sent, %v dropped; want none (below the window)", tc.offset, challenges, dropped)
			}
		})
	}
}

// TestASATeardownLostFIN_RSTIgnoredInEstablished_StuckUntilTCPRetries2: the
// cisco-asa-lost-fin profile swallows the client's FIN, so the RST at
// RCV.NXT-1 meets a server still in ESTABLISHED, where every RFC 5961
// stack, Linux 6 included, ignores it. The server keeps writing its 64 MiB
// response into the forgotten flow; with tcp_retries2=3 in its namespace
// (default 15: ~15 min) the kernel gives up after a few seconds.
func TestASATeardownLostFIN_RSTIgnoredInEstablished_StuckUntilTCPRetries2(t *testing.T) {
	t.Parallel()
	l := startLab(t, "--profile", "cisco-asa-lost-fin")
	mbLostFINStuck(t, l, serverV6, nil)
}

// mbLostFINStuck runs the cisco-asa-lost-fin case against addr in l's
// server host: faultbox serve writing 64 MiB, the client's FIN swallowed,
// the RST ignored, the server stuck ESTABLISHED with unacknowledged data
// until tcp_retries2 (3 in its namespace) ends it. place, if not nil, puts
// the device in place once the server listens.
func mbLostFINStuck(t *testing.T, l *lab, addr string, place func()) {
	t.Helper()
	l.mustExec(10*time.Second, "server", "sysctl", "-qw", "net.ipv4.tcp_retries2=3")
	log := l.serve(mbPort)
	if place != nil {
		place()
	}
	before := l.status()
	shut := mbCancel(t, l, addr)
	ticks := mbWatch(t, l, "server", 15*time.Second, func(s []sockdiag.Socket) bool { return len(s) == 0 })
	// tcp_retries2=3 allows (2^4-1) * 200 ms = 3 s since the unacked data
	// was sent, checked when a retransmission timer fires: after 4
	// retransmissions (0.2+0.4+0.8+1.6 s) it has not quite passed, so the
	// 5th timer, 3.2 s later, ends it (about 6.5 s here).
	mbCheckStuck(t, ticks, shut.time(), sockdiag.Established, 2500*time.Millisecond, 10*time.Second)
	errText, closed := mbServeEnd(t, log, shut.Port, 5*time.Second)
	t.Logf("serve closed %v after the client's FIN: %q", closed.Sub(shut.time()).Round(time.Millisecond), errText)
	if !strings.Contains(errText, "connection timed out") {
		t.Errorf("serve's write ended with %q, want connection timed out (ETIMEDOUT: tcp_retries2)", errText)
	}
	if n := mbGrowth(l, before, "fin_swallowed"); n != 1 {
		t.Errorf("fin_swallowed grew by %v, want 1", n)
	}
	if n := mbGrowth(l, before, "rst_injected"); n != 1 {
		t.Errorf("rst_injected grew by %v, want 1", n)
	}
}

// mbCheckStuck checks a server socket's life after the client's FIN at
// shut: in state want with unacknowledged data from 200 ms after the FIN
// on, still there at least min after it, gone at most max after it.
func mbCheckStuck(t *testing.T, ticks []mbTick, shut time.Time, want sockdiag.State, atLeast, atMost time.Duration) {
	t.Helper()
	var last time.Time
	var maxUnacked uint32
	var maxRetrans uint8
	for _, tk := range ticks {
		for _, s := range tk.socks {
			if tk.at.Sub(shut) < 200*time.Millisecond {
				continue // the FIN may still be on its way
			}
			if s.State != want || s.Unacked == 0 {
				t.Errorf("%v after the FIN: %s, want %s with unacknowledged data", tk.at.Sub(shut).Round(time.Millisecond), mbDescribe([]sockdiag.Socket{s}), want)
			}
			last = tk.at
			maxUnacked, maxRetrans = max(maxUnacked, s.Unacked), max(maxRetrans, s.Retrans)
		}
	}
	end := ticks[len(ticks)-1].at
	stuck, gone := last.Sub(shut), end.Sub(shut)
	t.Logf("server socket %s with up to %d unacked segments (%d retransmissions of one) for %v after the client's FIN; gone at %v (polled every %v)",
		want, maxUnacked, maxRetrans, stuck.Round(time.Millisecond), gone.Round(time.Millisecond), mbPoll)
	if last.IsZero() || stuck < atLeast {
		t.Errorf("server socket last seen %v after the FIN, want >= %v", stuck, atLeast)
	}
	if gone > atMost {
		t.Errorf("server socket gone %v after the FIN, want <= %v", gone, atMost)
	}
}

// TestDialupVanish_ServerSitsInFinWait2UntilTCPFinTimeout: ten keep-alive
// clients whose server closes them after 500 ms idle; under dialup-vanish
// each client's kernel ACKs the server's FIN and then nothing more arrives
// from it, its own FIN included. The ten server sockets, orphaned by
// close(), sit in FIN_WAIT_2 for tcp_fin_timeout (3 s in the server's
// namespace) and then disappear without TIME_WAIT. Without the profile the
// clients' FINs arrive: FIN_WAIT_2 lasts no time and the sockets go to
// TIME_WAIT.
func TestDialupVanish_ServerSitsInFinWait2UntilTCPFinTimeout(t *testing.T) {
	t.Parallel()
	const n, finTimeout = 10, 3 * time.Second
	l := startLab(t, "--profile", "dialup-vanish")
	l.mustExec(10*time.Second, "server", "sysctl", "-qw", fmt.Sprintf("net.ipv4.tcp_fin_timeout=%d", int(finTimeout.Seconds())))
	l.serve(mbPort, "--keepalive-timeout", "500ms")
	before := l.status()

	run := func() (fw2, tw int, lives map[sockdiag.Key][2]time.Time) {
		c := l.start("client", fmt.Sprintf("timeout 20 python3 %s vanish %s %d %d", mbClient(t), serverV4, mbPort, n))
		fw2, tw, lives = mbFinWait2(t, l)
		var done struct {
			Closed int `json:"closed"`
			EOFs   int `json:"eofs"`
		}
		mbLine(t, c, "closed", 10*time.Second, &done)
		if done.EOFs != n {
			t.Errorf("client read EOF on %d of %d connections, want all (the server's keep-alive close)", done.EOFs, n)
		}
		return fw2, tw, lives
	}

	fw2, tw, lives := run()
	var shortest, longest time.Duration
	for _, se := range lives {
		d := se[1].Sub(se[0])
		if shortest == 0 || d < shortest {
			shortest = d
		}
		longest = max(longest, d)
	}
	t.Logf("dialup-vanish: at most %d server sockets in FIN-WAIT-2 at once (%d TIME-WAIT); each seen there for %v to %v (tcp_fin_timeout %v, polled every %v)",
		fw2, tw, shortest.Round(time.Millisecond), longest.Round(time.Millisecond), finTimeout, mbPoll)
	if fw2 != n || len(lives) != n {
		t.Errorf("%d server sockets in FIN-WAIT-2 at once (%d in all), want %d", fw2, len(lives), n)
	}
	if shortest < finTimeout-500*time.Millisecond || longest > finTimeout+time.Second {
		t.Errorf("FIN-WAIT-2 lasted %v to %v, want about tcp_fin_timeout %v", shortest, longest, finTimeout)
	}
	if tw != 0 {
		t.Errorf("%d server sockets in TIME-WAIT: a client's FIN got through", tw)
	}
	if v := mbGrowth(l, before, "flows_vanished"); v != n {
		t.Errorf("flows_vanished grew by %v, want %d", v, n)
	}

	l.apply("passthrough")
	fw2, tw, lives = run()
	longest = 0
	for _, se := range lives {
		longest = max(longest, se[1].Sub(se[0]))
	}
	t.Logf("passthrough: at most %d sockets in FIN-WAIT-2 (longest seen %v), %d in TIME-WAIT", fw2, longest.Round(time.Millisecond), tw)
	if longest > 500*time.Millisecond || tw != n {
		t.Errorf("passthrough: FIN-WAIT-2 seen for up to %v and %d sockets in TIME-WAIT, want < 500ms and %d", longest, tw, n)
	}
}

// mbFinWait2 watches the server's port-80 sockets from before the clients
// connect until all their sockets are gone or in TIME-WAIT (at most 15 s),
// and returns the most seen at once in FIN-WAIT-2 and in TIME-WAIT, and
// each FIN-WAIT-2 socket's first and last sighting.
func mbFinWait2(t *testing.T, l *lab) (fw2, tw int, lives map[sockdiag.Key][2]time.Time) {
	t.Helper()
	lives = map[sockdiag.Key][2]time.Time{}
	seen := false
	ticks := mbWatch(t, l, "server", 15*time.Second, func(socks []sockdiag.Socket) bool {
		for _, s := range socks {
			if s.State != sockdiag.TimeWait {
				seen = true
				return false
			}
		}
		return seen
	})
	for _, tk := range ticks {
		nf, nt := 0, 0
		for _, s := range tk.socks {
			switch s.State {
			case sockdiag.FinWait2:
				nf++
				se, ok := lives[s.Key()]
				if !ok {
					se[0] = tk.at
				}
				se[1] = tk.at
				lives[s.Key()] = se
			case sockdiag.TimeWait:
				nt++
			}
		}
		fw2, tw = max(fw2, nf), max(tw, nt)
	}
	return fw2, tw, lives
}

// mbRace runs the race client: n connections, each reused idle after its
// first response, and returns how each second request ended.
func mbRace(t *testing.T, l *lab, n int, idle time.Duration) map[string]int {
	t.Helper()
	r := l.exec(60*time.Second, "client", "timeout", "50", "python3", mbClient(t), "race", serverV4, fmt.Sprint(mbPort),
		fmt.Sprint(n), fmt.Sprint(idle.Milliseconds()))
	if r.Code != 0 {
		t.Fatalf("race client: %s", r)
	}
	var sum struct {
		Summary map[string]int `json:"summary"`
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.Summary == nil {
		t.Fatalf("race client summary: %v: %s", err, r.Stdout)
	}
	for _, line := range lines[:len(lines)-1] {
		if !strings.Contains(line, `"reset"`) {
			t.Logf("  %s", line) // the exceptions
		}
	}
	return sum.Summary
}

// TestKeepaliveRace_FINDelayed20ms_ReuseJustAfterIdleTimeoutGetsECONNRESET:
// serve closes keep-alive connections after 200 ms idle; the client reuses
// each connection 205 ms after its first response. Under keepalive-race
// (the server's FIN held 20 ms) the request meets a closed socket whose
// RST overtakes the late FIN: ECONNRESET, 19 times of 20 at least. Under
// passthrough the FIN has already arrived: the same client reads EOF (an
// empty reply) instead.
func TestKeepaliveRace_FINDelayed20ms_ReuseJustAfterIdleTimeoutGetsECONNRESET(t *testing.T) {
	t.Parallel()
	const n, timeout, aim = 20, 200 * time.Millisecond, 205 * time.Millisecond
	l := startLab(t, "--profile", "keepalive-race")
	l.serve(mbPort, "--keepalive-timeout", timeout.String())
	before := l.status()

	start := time.Now()
	got := mbRace(t, l, n, aim)
	t.Logf("keepalive-race: %v in %v", got, time.Since(start).Round(time.Millisecond))
	if got["reset"] < n-1 {
		t.Errorf("keepalive-race: %d of %d reused connections reset, want >= %d: %v", got["reset"], n, n-1, got)
	}
	if d := mbGrowth(l, before, "fins_delayed"); d != n {
		t.Errorf("fins_delayed grew by %v, want %d (one per connection)", d, n)
	}

	l.apply("passthrough")
	start = time.Now()
	got = mbRace(t, l, n, aim)
	t.Logf("passthrough: %v in %v", got, time.Since(start).Round(time.Millisecond))
	if got["eof"] < n-1 || got["reset"] > 0 {
		t.Errorf("passthrough: %d of %d reused connections read EOF and %d reset, want >= %d EOF and no reset: %v", got["eof"], n, got["reset"], n-1, got)
	}
}

// mbIdle is what the idle client reports.
type mbIdle struct {
	Result   string  `json:"result"`
	WaitedMS float64 `json:"waited_ms"`
	Port     int     `json:"port"`
}

// mbIdleRun runs the idle client: a request, idle seconds of silence, a
// second request answered within wait seconds or not.
func mbIdleRun(t *testing.T, l *lab, idle, wait time.Duration) mbIdle {
	t.Helper()
	r := l.exec(idle+wait+30*time.Second, "client", "timeout", fmt.Sprint(int((idle+wait).Seconds())+20), "python3", mbClient(t),
		"idle", serverV4, fmt.Sprint(mbPort), fmt.Sprint(idle.Seconds()), fmt.Sprint(wait.Seconds()))
	var res mbIdle
	if r.Code != 0 || json.Unmarshal([]byte(strings.TrimSpace(r.Stdout)), &res) != nil {
		t.Fatalf("idle client: %s", r)
	}
	return res
}

// mbServerConn returns the server's socket for the client's port, if any.
func mbServerConn(t *testing.T, l *lab, port int) (sockdiag.Socket, bool) {
	t.Helper()
	socks, err := sockdiag.Dump(mbNS(l, "server"), sockdiag.Filter{Port: mbPort})
	if err != nil {
		t.Fatalf("sock_diag: %v", err)
	}
	for _, s := range socks {
		if s.Dst.Port() == uint16(port) {
			return s, true
		}
	}
	return sockdiag.Socket{}, false
}

// TestNATIdle_SilentExpiryHangsIdleConnection: under nat-idle (flows
// forgotten after 5 s idle, silently), a connection used again after 1 s
// answers, one used again after 6 s gets no answer within 2 s: the request
// and its retransmissions vanish, and the server's socket is still
// ESTABLISHED, never told.
func TestNATIdle_SilentExpiryHangsIdleConnection(t *testing.T) {
	t.Parallel()
	l := startLab(t, "--profile", "nat-idle")
	l.serve(mbPort, "--keepalive-timeout", "60s", "--read-timeout", "60s")
	before := l.status()

	if res := mbIdleRun(t, l, time.Second, 2*time.Second); res.Result != "response" {
		t.Errorf("after 1 s idle (under the 5 s timeout): %q, want response", res.Result)
	}
	res := mbIdleRun(t, l, 6*time.Second, 2*time.Second)
	t.Logf("after 6 s idle: %q after %.0f ms", res.Result, res.WaitedMS)
	if res.Result != "timeout" {
		t.Errorf("after 6 s idle: %q, want timeout (no answer: the NAT forgot the flow)", res.Result)
	}
	if s, ok := mbServerConn(t, l, res.Port); !ok || s.State != sockdiag.Established {
		t.Errorf("server socket of the hung connection: %s, want ESTABLISHED (the server never heard)", mbDescribe([]sockdiag.Socket{s}))
	}
	if n := mbGrowth(l, before, "flows_expired"); n != 1 {
		t.Errorf("flows_expired grew by %v, want 1", n)
	}
	if n := mbGrowth(l, before, "rst_injected"); n != 0 {
		t.Errorf("rst_injected grew by %v in silent mode, want 0", n)
	}
}

// TestNATIdle_RSTModeResetsIdleConnection: the same with mode: rst (an AWS
// NAT gateway, Azure's TCP reset on idle): the request after 6 s idle is
// answered at once by RSTs to both ends: the client reads ECONNRESET and
// the server's socket is gone.
func TestNATIdle_RSTModeResetsIdleConnection(t *testing.T) {
	t.Parallel()
	prof := mbProfile(t, "nat-idle-rst", `  - type: idle-timeout
    match: {protocol: tcp}
    timeout: 5s
    mode: rst
    rst_to: both
`)
	l := startLab(t, "--profile", prof)
	log := l.serve(mbPort, "--keepalive-timeout", "60s", "--read-timeout", "60s")
	before := l.status()

	res := mbIdleRun(t, l, 6*time.Second, 2*time.Second)
	t.Logf("after 6 s idle: %q after %.1f ms", res.Result, res.WaitedMS)
	if res.Result != "reset" || res.WaitedMS > 500 {
		t.Errorf("after 6 s idle: %q after %.0f ms, want reset at once", res.Result, res.WaitedMS)
	}
	errText, _ := mbServeEnd(t, log, res.Port, 5*time.Second)
	t.Logf("serve: %q", errText)
	if !strings.Contains(errText, "connection reset by peer") {
		t.Errorf("serve's read ended with %q, want connection reset by peer", errText)
	}
	if s, ok := mbServerConn(t, l, res.Port); ok {
		t.Errorf("server socket of the reset connection still there: %s", mbDescribe([]sockdiag.Socket{s}))
	}
	if n := mbGrowth(l, before, "rst_injected"); n != 2 {
		t.Errorf("rst_injected grew by %v, want 2 (client and server, once)", n)
	}
}
