package main

// One-way delay probes: owd-send paces UDP datagrams that carry their send
// time (CLOCK_MONOTONIC, ns) and owd-recv subtracts it from their receive
// time. Both run in lab hosts on this machine, whose namespaces share
// CLOCK_MONOTONIC, so the difference is the one-way delay itself, not an
// estimate from round trips. The receive time is the kernel's stamp
// (rxClock), so the receiver's own wake-up stays out. owd-send paces its
// sends as echo-client does (sendPaced, raw calls); owd-recv uses blocking
// syscalls on a locked OS thread, outside the Go netpoller.

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	probes["owd-send"] = owdSend
	probes["owd-recv"] = owdRecv
}

// OWDResult is what owd-recv prints: one-way delays in ns.
type OWDResult struct {
	N         int   `json:"n"`
	Reordered int   `json:"reordered"`
	MinNS     int64 `json:"min_ns"`
	P50NS     int64 `json:"p50_ns"`
	P99NS     int64 `json:"p99_ns"`
	P999NS    int64 `json:"p999_ns"`
	MaxNS     int64 `json:"max_ns"`
	AppP99NS  int64 `json:"app_p99_ns"` // measured when the read returned
	// Arrival rate (kernel stamps) after the first -skip: datagrams and payload bytes per
	// second from the first arrival after skip to the last.
	RatePPS   float64 `json:"rate_pps"`
	RateBytes float64 `json:"rate_bytes"`
}

// OWDSent is what owd-send prints.
type OWDSent struct {
	Sent    int     `json:"sent"`
	Late    int     `json:"late"` // sent more than one interval after its slot
	Seconds float64 `json:"seconds"`
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// inetSocket returns a blocking socket of type typ (unix.SOCK_DGRAM,
// unix.SOCK_STREAM) of addr's family, and addr as its sockaddr.
func inetSocket(addr netip.AddrPort, typ int) (int, unix.Sockaddr, error) {
	if addr.Addr().Is4() {
		fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		return fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}, err
	}
	fd, err := unix.Socket(unix.AF_INET6, typ|unix.SOCK_CLOEXEC, 0)
	return fd, &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}, err
}

// owdSend sends n datagrams at pps, each slot on an absolute
// clock_nanosleep deadline (sendPaced), so the offered load is the rate
// asked for; the stamp is taken just before the send.
func owdSend(args []string) error {
	fs := flag.NewFlagSet("owd-send", flag.ContinueOnError)
	server := fs.String("server", "", "address:port")
	pps := fs.Int("pps", 1000, "packets per second")
	n := fs.Int("n", 3000, "packets to send")
	size := fs.Int("size", 64, "payload bytes (>= 16)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, err := netip.ParseAddrPort(*server)
	if err != nil {
		return err
	}
	if *size < 16 || *pps <= 0 || *n <= 0 {
		return errors.New("need -size >= 16, -pps > 0, -n > 0")
	}
	if err := ownProcess(-1); err != nil {
		return err
	}
	fd, err := connectedUDP(addr)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	interval := int64(time.Second) / int64(*pps)
	start := monoNow() + int64(time.Millisecond)
	late, err := sendPaced(fd, make([]byte, *size), *n, start, interval, interval)
	if err != nil {
		return err
	}
	return printJSON(OWDSent{Sent: *n, Late: late, Seconds: float64(monoNow()-start) / 1e9})
}

// rxClock turns the kernel's receive timestamps (SO_TIMESTAMPNS, which
// are CLOCK_REALTIME) into CLOCK_MONOTONIC: the offset between the two
// clocks is read right after each receive, and it moves only at NTP's slew
// rate (ppm), so the conversion is exact to nanoseconds. A kernel stamp is
// taken when the device's write reaches the receiving stack; it leaves out
// the receiver's own wake-up, which is not the device's doing.
type rxClock struct {
	fd  int
	oob []byte
}

func newRxClock(fd int) (*rxClock, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	return &rxClock{fd: fd, oob: make([]byte, 128)}, nil
}

// recv reads into buf and returns the size, the kernel's receive time and
// the time the read returned, both CLOCK_MONOTONIC ns (kernel 0 if the
// kernel gave no stamp).
func (c *rxClock) recv(buf []byte) (n int, kernel, user int64, err error) {
	n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, c.oob, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	var rt unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &rt)
	user = monoNow()
	msgs, _ := unix.ParseSocketControlMessage(c.oob[:oobn])
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			kernel = sec*1e9 + nsec - (rt.Nano() - user)
		}
	}
	return n, kernel, user, nil
}

// owdRecv receives until n datagrams arrived, none came for idle, or max
// passed, and prints the percentiles of the one-way delay: kernel receive
// time minus send stamp (and, as AppP99NS, the time the read returned).
func owdRecv(args []string) error {
	fs := flag.NewFlagSet("owd-recv", flag.ContinueOnError)
	listen := fs.String("listen", "", "address:port")
	n := fs.Int("n", 3000, "packets expected")
	idle := fs.Duration("idle", 2*time.Second, "stop after no packet for this long (after the first)")
	max := fs.Duration("max", time.Minute, "stop after this long in any case")
	skip := fs.Duration("skip", 0, "leave this much after the first arrival out of the arrival rate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	fd, sa, err := inetSocket(addr, unix.SOCK_DGRAM)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// FORCE: past rmem_max, so a stalled receiver does not lose the backlog.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	// The idle timeout bounds each read; a first packet may take up to max.
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	rx, err := newRxClock(fd)
	if err != nil {
		return err
	}
	delays := make([]int64, 0, *n)
	appDelays := make([]int64, 0, *n)
	arrivals := make([]int64, 0, *n)
	sizes := make([]int, 0, *n)
	buf := make([]byte, 2048)
	end := monoNow() + int64(*max)
	var last int64
	var prevSeq uint64
	reordered := 0
	for len(delays) < *n {
		now := monoNow()
		if now > end || last > 0 && now-last > int64(*idle) {
			break
		}
		m, kernel, user, err := rx.recv(buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if m < 16 {
			continue
		}
		if kernel == 0 {
			return errors.New("no kernel receive timestamp")
		}
		seq := binary.LittleEndian.Uint64(buf[0:])
		sent := int64(binary.LittleEndian.Uint64(buf[8:]))
		if len(delays) > 0 && seq < prevSeq {
			reordered++
		}
		prevSeq = seq
		delays = append(delays, kernel-sent)
		appDelays = append(appDelays, user-sent)
		arrivals, sizes = append(arrivals, kernel), append(sizes, m)
		last = user
	}
	r := OWDResult{N: len(delays), Reordered: reordered}
	if len(arrivals) > 1 {
		k := 0
		for k < len(arrivals)-2 && arrivals[k] < arrivals[0]+int64(*skip) {
			k++
		}
		bytes := 0
		for _, m := range sizes[k+1:] {
			bytes += m
		}
		if d := float64(arrivals[len(arrivals)-1]-arrivals[k]) / 1e9; d > 0 {
			r.RatePPS = float64(len(arrivals)-1-k) / d
			r.RateBytes = float64(bytes) / d
		}
	}
	if len(delays) > 0 {
		slices.Sort(delays)
		slices.Sort(appDelays)
		r.MinNS, r.MaxNS = delays[0], delays[len(delays)-1]
		r.P50NS, r.P99NS = pct(delays, 50), pct(delays, 99)
		r.P999NS = delays[(len(delays)-1)*999/1000]
		r.AppP99NS = pct(appDelays, 99)
	}
	return printJSON(r)
}
