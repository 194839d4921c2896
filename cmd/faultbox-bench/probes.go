package main

// The probes that run inside the namespaces, as hidden subcommands of this
// binary: a 1-byte TCP ping-pong server and client (round-trip latency) and
// a small-packet UDP sender and receiver (packets per second). Each prints
// one JSON line on stdout for the driver.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"time"

	"golang.org/x/net/ipv4"
)

// probes maps a hidden subcommand to its function.
var probes = map[string]func(args []string) error{
	"pp-server": ppServer,
	"pp-client": ppClient,
	"udp-recv":  udpRecv,
	"udp-send":  udpSend,
}

// RTTResult is what pp-client prints.
type RTTResult struct {
	N     int   `json:"n"`
	P50NS int64 `json:"p50_ns"`
	P99NS int64 `json:"p99_ns"`
	MaxNS int64 `json:"max_ns"`
}

// UDPResult is what udp-recv and udp-send print.
type UDPResult struct {
	Packets uint64  `json:"packets"`
	Seconds float64 `json:"seconds"` // first to last packet (recv), sending time (send)
	PPS     float64 `json:"pps"`
}

// ppServer echoes every byte on every connection, until killed.
func ppServer(args []string) error {
	fs := flag.NewFlagSet("pp-server", flag.ContinueOnError)
	addr := fs.String("listen", "", "address:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			c.(*net.TCPConn).SetNoDelay(true)
			b := make([]byte, 1)
			for {
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		}()
	}
}

// ppClient sends one byte and waits for it back, n times, on one
// connection, after a warm-up, and prints the percentiles of the round trip.
func ppClient(args []string) error {
	fs := flag.NewFlagSet("pp-client", flag.ContinueOnError)
	addr := fs.String("server", "", "address:port")
	n := fs.Int("n", 20000, "round trips measured")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	// Bound the whole run: 20000 round trips take well under a minute even
	// through a slow device.
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	b := []byte{'x'}
	rtts := make([]int64, 0, *n)
	const warmup = 500
	for i := 0; i < warmup+*n; i++ {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		if i >= warmup {
			rtts = append(rtts, int64(time.Since(t0)))
		}
	}
	slices.Sort(rtts)
	return printJSON(RTTResult{N: len(rtts), P50NS: pct(rtts, 50), P99NS: pct(rtts, 99), MaxNS: rtts[len(rtts)-1]})
}

func pct(sorted []int64, p int) int64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100]
}

const udpBatch = 64

// udpRecv counts datagrams until none came for idle after the first, or
// until max, and prints the rate between the first and the last.
func udpRecv(args []string) error {
	fs := flag.NewFlagSet("udp-recv", flag.ContinueOnError)
	addr := fs.String("listen", "", "address:port")
	idle := fs.Duration("idle", time.Second, "stop after no packet for this long")
	max := fs.Duration("max", 30*time.Second, "stop after this long in any case")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := net.ListenPacket("udp4", *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.UDPConn).SetReadBuffer(8 << 20)
	pc := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	var first, last time.Time
	var count uint64
	end := time.Now().Add(*max)
	for time.Now().Before(end) {
		wait := end
		if count > 0 {
			wait = time.Now().Add(*idle)
		}
		c.SetReadDeadline(wait)
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			return err
		}
		now := time.Now()
		if count == 0 {
			first = now
		}
		last = now
		count += uint64(n)
	}
	r := UDPResult{Packets: count}
	if d := last.Sub(first).Seconds(); count > 1 && d > 0 {
		r.Seconds, r.PPS = d, float64(count-1)/d
	}
	return printJSON(r)
}

// udpSend sends size-byte datagrams to addr as fast as it can for dur, in
// batches (sendmmsg), and prints how many it sent.
func udpSend(args []string) error {
	fs := flag.NewFlagSet("udp-send", flag.ContinueOnError)
	addr := fs.String("server", "", "address:port")
	size := fs.Int("size", 64, "payload bytes")
	dur := fs.Duration("t", 3*time.Second, "how long to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := net.Dial("udp4", *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.UDPConn).SetWriteBuffer(4 << 20)
	pc := ipv4.NewPacketConn(c.(*net.UDPConn))
	payload := make([]byte, *size)
	msgs := make([]ipv4.Message, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{payload}
	}
	var sent uint64
	start := time.Now()
	end := start.Add(*dur)
	for time.Now().Before(end) {
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			// A full queue (ENOBUFS) or the peer's ICMP error: keep
			// offering load; the receiver counts what arrived.
			continue
		}
		sent += uint64(n)
	}
	el := time.Since(start).Seconds()
	return printJSON(UDPResult{Packets: sent, Seconds: el, PPS: float64(sent) / el})
}

func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(os.Stdout, string(b))
	return err
}
