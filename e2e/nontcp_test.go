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
