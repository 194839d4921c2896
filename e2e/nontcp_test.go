package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// udpEcho answers every datagram on port 9000 (both families) with "echo:"
// and the datagram.
const udpEcho = `import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 9000))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(b"echo:" + d, a)
`

// udpAsk sends argv[3] to argv[2]:9000 over IPv argv[1], up to 3 tries of 2s,
// and prints the answer.
const udpAsk = `import socket, sys
fam = {"4": socket.AF_INET, "6": socket.AF_INET6}[sys.argv[1]]
addr = socket.getaddrinfo(sys.argv[2], 9000, fam, socket.SOCK_DGRAM)[0][4]
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range(3):
    s.sendto(sys.argv[3].encode(), addr)
    try:
        print(s.recvfrom(65535)[0].decode())
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
`

// TestNonTCP_UDPAndICMPPassThrough: ping (ICMP and ICMPv6 echo, with
// neighbour discovery if the kernel does any) and a UDP echo, small and
// fragmented, work through the device in both families.
func TestNonTCP_UDPAndICMPPassThrough(t *testing.T) {
	l := startLab(t, "--profile", "passthrough")
	for _, fam := range []string{"-4", "-6"} {
		out := l.mustExec(30*time.Second, "client", "ping", fam, "-c", "3", "-i", "0.2", "-W", "2", "-n", "server")
		if !strings.Contains(out, "3 received") {
			t.Errorf("ping %s server: %s", fam, out)
		}
	}
	l.start("server", "python3 -c '"+udpEcho+"'")
	l.waitListen("server", "u", 9000)
	for _, fam := range []string{"4", "6"} {
		for _, size := range []int{16, 4000} { // 4000: IP fragments unless the lab MTU is larger
			msg := fmt.Sprintf("v%s-%d-", fam, size)
			msg += strings.Repeat("x", size-len(msg))
			out := l.mustExec(30*time.Second, "client", "python3", "-c", udpAsk, fam, "server", msg)
			if got := strings.TrimSpace(out); got != "echo:"+msg {
				t.Errorf("UDP IPv%s %d bytes: got %.40q..., want %.40q...", fam, size, got, "echo:"+msg)
			}
		}
	}
	st := l.status()
	if d := l.counter(st, "dropped_by_behavior"); d != 0 {
		t.Errorf("device dropped %v packets by behavior, want 0", d)
	}
}

// udpBurstRecv counts datagrams on port 9001 (both families) until none came
// for 2 s, checking each one's content and order (see udpBurstSend), and
// prints "received N bad B" once the client sent all of argv[1].
const udpBurstRecv = `import socket, sys, hashlib
want = int(sys.argv[1])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("::", 9001))
n = bad = 0
s.settimeout(30)
while n < want:
    try:
        d = s.recv(65535)
    except socket.timeout:
        break
    s.settimeout(2)
    seq = int.from_bytes(d[:4], "big")
    body = hashlib.sha256(d[:4]).digest() * 8
    if seq != n or d[4:] != body[:len(d) - 4]:
        bad += 1
    n += 1
print("received", n, "bad", bad, flush=True)
`

// udpBurstSend sends argv[2] datagrams to argv[1]:9001 in bursts of 50:
// a 4-byte sequence number, then 60-200 bytes derived from it (a burst's
// datagrams have one size but the last; bursts differ).
const udpBurstSend = `import socket, sys, hashlib, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.connect((sys.argv[1], 9001))
total = int(sys.argv[2])
for start in range(0, total, 50):
    size = 60 + (start // 50) * 7 % 141
    for seq in range(start, min(start + 50, total)):
        n = size if seq % 50 != 49 else size // 2
        head = seq.to_bytes(4, "big")
        s.send(head + (hashlib.sha256(head).digest() * 8)[:n])
    time.sleep(0.002)
`

// TestUDP_BurstsArriveIntactAndInOrder: bursts of small datagrams of one
// flow, which the device writes as UDP super-packets, reach the server's
// socket each intact and in order, over IPv4 and IPv6, with the device
// running either way.
func TestUDP_BurstsArriveIntactAndInOrder(t *testing.T) {
	for _, mode := range deviceModes() {
		t.Run(mode.name, func(t *testing.T) {
			l := startLab(t, append([]string{"--profile", "passthrough"}, mode.args...)...)
			const n = 20000
			for _, dst := range []string{"198.18.0.2", serverV6} {
				recv := l.start("server", fmt.Sprintf("python3 -c '%s' %d", udpBurstRecv, n))
				l.waitListen("server", "u", 9001)
				l.mustExec(60*time.Second, "client", "python3", "-c", udpBurstSend, dst, fmt.Sprint(n))
				got := recv.waitOutput(t, "received", 40*time.Second)
				if want := fmt.Sprintf("received %d bad 0", n); got != want {
					t.Errorf("to %s: %q, want %q", dst, got, want)
				}
			}
			st := l.status()
			if j := numbers(st, "joined_packets"); len(j) == 0 {
				t.Errorf("no datagrams were written joined (no joined_packets in the status)")
			} else {
				t.Logf("%v of %d datagrams written as parts of UDP super-packets, in %v writes", j, 2*n, numbers(st, "joined_writes"))
			}
		})
	}
}
