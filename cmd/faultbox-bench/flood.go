package main

// Hostile-traffic generators for the hardening end-to-end tests, as hidden
// subcommands run inside a lab host: a SYN flood of distinct spoofed tuples
// and a flood of out-of-window segments aimed at one established flow. They
// write raw IPv4 packets (IPPROTO_RAW), only to lab addresses, a bounded
// count at an adaptive pace that the device keeps up with (so every packet
// reaches it), and print one JSON line.

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/packet"
)

func init() {
	probes["syn-flood"] = synFlood
	probes["oow-flood"] = oowFlood
}

// FloodResult is what syn-flood and oow-flood print.
type FloodResult struct {
	Sent    int     `json:"sent"`    // packets written, resent ones included
	Resent  int     `json:"resent"`  // packets written again after the interface dropped some
	Seconds float64 `json:"seconds"` // sending time
	PPS     float64 `json:"pps"`     // final pace
	Seq     uint32  `json:"seq,omitempty"`
}

// labPrefix is the only destination range a generator writes to.
var labPrefix = netip.MustParsePrefix("198.18.0.0/15")

// chunk is how many packets are sent between two looks at the interface's
// drop counter.
const chunk = 256

// flood writes packets 0..n-1 (built by build into buf) through a raw socket
// leaving by dev. Every packet must reach the device: after each chunk it
// reads dev's tx_dropped (the TUN queue overflowed because the device reads
// slower than we write) and then sends the chunk again, slower. The pace
// starts at pps and adapts: -20 % after a drop, +2 % after a clean chunk.
func flood(dev string, n, pps int, build func(i int, buf []byte) ([]byte, netip.Addr)) (FloodResult, error) {
	var r FloodResult
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return r, fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	dropped := "/sys/class/net/" + dev + "/statistics/tx_dropped"
	before, err := readCounter(dropped)
	if err != nil {
		return r, err
	}
	buf := make([]byte, 256)
	rate := float64(pps)
	start := time.Now()
	next := start
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		for tries := 0; ; tries++ {
			if tries == 50 {
				return r, fmt.Errorf("packets %d-%d: dropped by %s 50 times", lo, hi, dev)
			}
			for i := lo; i < hi; i++ {
				pkt, dst := build(i, buf)
				if !labPrefix.Contains(dst) {
					return r, fmt.Errorf("refusing to send to %v: not a lab address", dst)
				}
				if err := sendRaw(fd, pkt, dst); err != nil {
					return r, fmt.Errorf("packet %d: %w", i, err)
				}
				r.Sent++
			}
			next = next.Add(time.Duration(float64(hi-lo) / rate * float64(time.Second)))
			time.Sleep(time.Until(next))
			after, err := readCounter(dropped)
			if err != nil {
				return r, err
			}
			if after == before {
				rate = min(rate*1.02, float64(pps))
				break
			}
			before = after
			r.Resent += hi - lo
			rate = max(rate*0.8, 1000)
			time.Sleep(10 * time.Millisecond) // let the device drain its queue
			next = time.Now()
		}
	}
	r.Seconds = time.Since(start).Seconds()
	r.PPS = rate
	return r, nil
}

// sendRaw writes one IPv4 packet, waiting out a full socket buffer.
func sendRaw(fd int, pkt []byte, dst netip.Addr) error {
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	for tries := 0; ; tries++ {
		err := unix.Sendto(fd, pkt, 0, to)
		if err == nil || (!errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN)) || tries > 1000 {
			return err
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func readCounter(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// synFlood sends n SYNs to dst:dport from distinct spoofed tuples: sources
// 198.19.0.0/16 (never a lab host), source ports from 1024 up, numbered
// from -first so that runs can continue without repeating a tuple.
func synFlood(args []string) error {
	fs := flag.NewFlagSet("syn-flood", flag.ContinueOnError)
	dst := fs.String("dst", "198.18.0.2", "destination address")
	dport := fs.Int("dport", 9, "destination port")
	n := fs.Int("n", 1000000, "SYNs to send (at most 4M)")
	first := fs.Int("first", 0, "number of the first tuple")
	pps := fs.Int("pps", 100000, "packets per second at most")
	dev := fs.String("dev", "fbx0", "interface the SYNs leave by (its drops are resent)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	to, err := netip.ParseAddr(*dst)
	if err != nil || !to.Is4() {
		return fmt.Errorf("-dst %q: want an IPv4 lab address", *dst)
	}
	if *n < 0 || *n > 4<<20 || *first < 0 || *first+*n > 65536*60000 {
		return errors.New("-n/-first out of range")
	}
	r, err := flood(*dev, *n, *pps, func(i int, buf []byte) ([]byte, netip.Addr) {
		t := *first + i
		src := netip.AddrFrom4([4]byte{198, 19, byte(t >> 8), byte(t)})
		l := packet.BuildTCP(buf, packet.TCPSpec{Src: src, Dst: to, SrcPort: uint16(1024 + t>>16), DstPort: uint16(*dport),
			Seq: uint32(t) * 2654435761, Flags: packet.SYN, Window: 64240})
		return buf[:l], to
	})
	if err != nil {
		return err
	}
	return printJSON(r)
}

// oowFlood sends n segments that claim to belong to the established flow
// src → dst but lie outside any window: it first watches the host's own
// interface for one segment of the flow, then sends ACKs with payload at
// that sequence number + 2^31 (the far half of the sequence space, where
// no window reaches), so the receiver drops every one.
func oowFlood(args []string) error {
	fs := flag.NewFlagSet("oow-flood", flag.ContinueOnError)
	dev := fs.String("dev", "fbx0", "interface the flow leaves by")
	srcS := fs.String("src", "", "the flow's sender address:port (this host)")
	dstS := fs.String("dst", "", "the flow's receiver address:port")
	n := fs.Int("n", 500000, "segments to send (at most 4M)")
	pps := fs.Int("pps", 100000, "packets per second at most")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, err1 := netip.ParseAddrPort(*srcS)
	dst, err2 := netip.ParseAddrPort(*dstS)
	if err := errors.Join(err1, err2); err != nil || !src.Addr().Is4() || !dst.Addr().Is4() {
		return fmt.Errorf("-src %q -dst %q: want IPv4 address:port of the flow (%v)", *srcS, *dstS, err)
	}
	if *n < 0 || *n > 4<<20 {
		return errors.New("-n out of range")
	}
	seq, ack, err := sniffSegment(*dev, src, dst, 10*time.Second)
	if err != nil {
		return err
	}
	payload := make([]byte, 32)
	r, err := flood(*dev, *n, *pps, func(i int, buf []byte) ([]byte, netip.Addr) {
		l := packet.BuildTCP(buf, packet.TCPSpec{Src: src.Addr(), Dst: dst.Addr(), SrcPort: src.Port(), DstPort: dst.Port(),
			Seq: seq + 1<<31 + uint32(i%1024)*32, Ack: ack, Flags: packet.ACK | packet.PSH, Window: 512, Payload: payload})
		return buf[:l], dst.Addr()
	})
	if err != nil {
		return err
	}
	r.Seq = seq
	return printJSON(r)
}

// sniffSegment returns the sequence and acknowledgment numbers of the first
// TCP segment from src to dst leaving by dev (a TUN port: no link header).
func sniffSegment(dev string, src, dst netip.AddrPort, timeout time.Duration) (seq, ack uint32, err error) {
	proto := uint16(unix.ETH_P_ALL)
	proto = proto<<8 | proto>>8 // network byte order
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return 0, 0, fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	idx, err := ifIndex(dev)
	if err != nil {
		return 0, 0, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: idx}); err != nil {
		return 0, 0, fmt.Errorf("bind to %s: %w", dev, err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", dev, err)
		}
		var p packet.Parsed
		p.Decode(buf[:n])
		if p.IsTCP() && p.Src == src.Addr() && p.SrcPort == src.Port() && p.Dst == dst.Addr() && p.DstPort == dst.Port() {
			return p.Seq, p.Ack, nil
		}
	}
	return 0, 0, fmt.Errorf("no segment %v → %v seen on %s in %v", src, dst, dev, timeout)
}

func ifIndex(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("interface %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}
