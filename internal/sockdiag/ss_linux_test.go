package sockdiag

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/testenv"
)

// ssSocket is one socket as `ss -tanoi` prints it.
type ssSocket struct {
	state        string
	recvQ, sendQ uint32
	timer        string        // "" when ss prints no timer
	rtt          time.Duration // -1 when ss prints none
	wscale       string        // "snd,rcv" as ss prints it; "" when it prints none
	sndWnd       int64         // -1 when ss prints none
}

var (
	ssTimerRE = regexp.MustCompile(`timer:\((\w+),`)
	ssRTTRE   = regexp.MustCompile(`(?:^|\s)rtt:([\d.]+)/`)
	ssWScRE   = regexp.MustCompile(`(?:^|\s)wscale:(\d+,\d+)`)
	ssSndWnd  = regexp.MustCompile(`(?:^|\s)snd_wnd:(\d+)`)
)

// parseSS reads `ss -tanoi`: a socket line (state, queues, local, peer,
// maybe a timer), then indented lines of tcp_info.
func parseSS(t *testing.T, out string) map[Key]*ssSocket {
	t.Helper()
	socks := map[Key]*ssSocket{}
	var cur *ssSocket
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "State") {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil {
				if m := ssRTTRE.FindStringSubmatch(line); m != nil {
					ms, _ := strconv.ParseFloat(m[1], 64)
					cur.rtt = time.Duration(ms * float64(time.Millisecond))
				}
				if m := ssWScRE.FindStringSubmatch(line); m != nil {
					cur.wscale = m[1]
				}
				if m := ssSndWnd.FindStringSubmatch(line); m != nil {
					cur.sndWnd, _ = strconv.ParseInt(m[1], 10, 64)
				}
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			t.Fatalf("ss line %q", line)
		}
		rq, err1 := strconv.ParseUint(f[1], 10, 32)
		sq, err2 := strconv.ParseUint(f[2], 10, 32)
		src, err3 := netip.ParseAddrPort(strings.Replace(f[3], ":*", ":0", 1))
		dst, err4 := netip.ParseAddrPort(strings.Replace(f[4], ":*", ":0", 1))
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			t.Fatalf("ss line %q: %v %v %v %v", line, err1, err2, err3, err4)
		}
		cur = &ssSocket{state: f[0], recvQ: uint32(rq), sendQ: uint32(sq), rtt: -1, sndWnd: -1}
		if m := ssTimerRE.FindStringSubmatch(line); m != nil {
			cur.timer = m[1]
		}
		socks[Key{src, dst}] = cur
	}
	return socks
}

func TestDump_AgreesWithSS_Linux(t *testing.T) {
	ns := labNS(t)
	if _, err := exec.LookPath("ss"); err != nil {
		testenv.Missing(t, "ss (iproute2)")
	}
	for _, fam := range families {
		newPair(t, ns, fam)
		p := newPair(t, ns, fam)
		if err := p.client.CloseWrite(); err != nil { // FIN-WAIT-2 and CLOSE-WAIT
			t.Fatal(err)
		}
	}
	// Let the half-closes settle: the ACK of a FIN in CLOSE-WAIT is delayed.
	waitDump(t, ns, Filter{}, "two FIN-WAIT-2 sockets", func(s []Socket) bool {
		n := 0
		for i := range s {
			if s[i].State == FinWait2 {
				n++
			}
		}
		return n == 2
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ss", "-tanoi").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	socks, err := Dump(ns, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	ss := parseSS(t, string(out))
	if len(socks) != 12 || len(ss) != len(socks) { // per family: 2 listeners, 4 ends
		t.Fatalf("Dump found %d sockets, ss %d; want 12:%s\nss:\n%s", len(socks), len(ss), show(socks), out)
	}
	sndWnds := 0 // connections whose send window ss printed
	for i := range socks {
		s := &socks[i]
		o := ss[s.Key()]
		if o == nil {
			t.Errorf("%s not in ss output:\n%s", s.Key(), out)
			continue
		}
		if o.state != s.State.String() || o.recvQ != s.RecvQ || o.sendQ != s.SendQ {
			t.Errorf("%s: Dump %s %d/%d, ss %s %d/%d", s.Key(), s.State, s.RecvQ, s.SendQ, o.state, o.recvQ, o.sendQ)
		}
		if want := s.Timer.String(); o.timer != want && !(o.timer == "" && s.Timer == TimerOff) {
			t.Errorf("%s: timer %s, ss %q", s.Key(), want, o.timer)
		}
		// Idle sockets take no new RTT samples, so both reads agree to
		// the microsecond ss prints; allow 1 ms for a late ACK's sample.
		if o.rtt >= 0 && (s.RTT-o.rtt > time.Millisecond || o.rtt-s.RTT > time.Millisecond) {
			t.Errorf("%s: rtt %v, ss %v", s.Key(), s.RTT, o.rtt)
		}
		if s.State != Listen && o.rtt < 0 {
			t.Errorf("%s: ss shows no rtt", s.Key())
		}
		if s.State != Listen {
			if got := fmt.Sprintf("%d,%d", s.SndWScale, s.RcvWScale); s.Options&OptWScale == 0 || o.wscale != got {
				t.Errorf("%s: window scales %s (options %#x), ss %q", s.Key(), got, s.Options, o.wscale)
			}
			if o.sndWnd >= 0 {
				sndWnds++
				if int64(s.SndWnd) != o.sndWnd {
					t.Errorf("%s: snd_wnd %d, ss %d", s.Key(), s.SndWnd, o.sndWnd)
				}
			}
		}
	}
	if sndWnds == 0 { // iproute2 prints snd_wnd since 5.12; Debian 12 has 6.1
		t.Errorf("ss printed no snd_wnd to compare with:\n%s", out)
	}
	t.Logf("ss -tanoi:\n%s", out)
}
