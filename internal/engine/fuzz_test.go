package engine

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/fuzzframe"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/profiles"
	"github.com/faultbox/faultbox/tun"
)

// fuzzChains are the profiles the engine's fuzz target runs under: none
// (the fast path), a per-segment inspector (super-packets split and, when
// untouched, forwarded whole), link faults that drop, delay, duplicate,
// reorder and corrupt, stateful TCP faults that inject RSTs, and holds.
var fuzzChains = []string{
	"behaviors: []",
	`behaviors:
  - type: log
    match: {protocol: tcp}`,
	`behaviors:
  - type: delay
    delay: 5ms
    jitter: 5ms
  - type: loss
    p: 0.2
  - type: duplicate
    p: 0.3
  - type: reorder
    p: 0.3
    delay: 2ms
  - type: corrupt
    p: 0.3
  - type: rate
    rate: 10mbit`,
	`behaviors:
  - type: asa-teardown
    on: [fin, rst]
    fin: swallow
    rst_to_client: true
  - type: reset
    trigger: bytes
    after_bytes: 2000
  - type: idle-timeout
    timeout: 50ms
    mode: rst
  - type: vanish
    match: {port: 81}`,
	`behaviors:
  - type: corrupt
    p: 1
    checksum: correct
  - type: fin-delay
    delay: 30ms
  - type: hold-first-data
    hold: 20ms
  - type: outage
    every: 100ms
    duration: 30ms
    mode: hold`,
}

// fuzzTimer stands in for a port's timerfd: the fuzz target releases delay
// lines itself, on its own clock.
type fuzzTimer struct {
	once sync.Once
	done chan struct{}
}

func (t *fuzzTimer) Arm(int64) error { return nil }
func (t *fuzzTimer) Wait() error     { <-t.done; return errClosed }
func (t *fuzzTimer) Close() error    { t.once.Do(func() { close(t.done) }); return nil }

// nopCapture takes every record, so the capture path runs too.
type nopCapture struct{ n int }

func (c *nopCapture) Record(r Record) { c.n++ }

// fuzzLab is an engine with two MemPorts, driven synchronously: the test
// plays the read loops and the delay-line writers on a fake clock.
type fuzzLab struct {
	t        *testing.T
	e        *Engine
	now      int64
	ports    [2]*tun.MemPort
	w        *worker
	outSegs  uint64 // segments the ports received
	captured *nopCapture
}

func newFuzzLab(t *testing.T, p *profiles.Profile, seed uint64, clientOffloads, serverOffloads bool) *fuzzLab {
	chain, err := p.Chain(seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &fuzzLab{t: t, now: 1 << 40, captured: &nopCapture{}}
	l.e = New(Config{MaxFlows: 8, Timeouts: fuzzTimeouts, Capture: l.captured, EventLog: 64,
		Clock:    func() int64 { return l.now },
		NewTimer: func() (Timer, error) { return &fuzzTimer{done: make(chan struct{})}, nil },
		OnFailure: func(err error) {
			t.Errorf("engine failure: %v", err)
		}})
	l.ports[0] = tun.NewMemPort("client", 1500, clientOffloads)
	l.ports[1] = tun.NewMemPort("server", 1500, serverOffloads)
	must(t, l.e.AddPort("client", l.ports[0], []netip.Prefix{netip.PrefixFrom(clientAddr, 32), netip.PrefixFrom(client6, 128)}))
	must(t, l.e.AddPort("server", l.ports[1], []netip.Prefix{netip.PrefixFrom(serverAddr, 32), netip.PrefixFrom(server6, 128)}))
	l.e.SetChain(chain)
	l.w = fuzzWorker(l.e)
	return l
}

// fuzzBuffers are one worker's read and split buffers (5 MiB), kept across
// fuzz runs: allocating them afresh would take most of a run's time.
var fuzzBuffers *worker

// fuzzWorker returns a worker for e that reuses fuzzBuffers' buffers.
func fuzzWorker(e *Engine) *worker {
	if fuzzBuffers == nil {
		fuzzBuffers = newWorker(e)
	}
	w := *fuzzBuffers
	w.e, w.owned = e, nil
	w.out = make([][]tun.Packet, len(e.ports))
	for i := range w.out {
		w.out[i] = make([]tun.Packet, 0, BatchSize)
	}
	e.mu.Lock()
	w.refillSegs(maxSegments) // slots a previous run emptied (w.segs is shared)
	e.mu.Unlock()
	return &w
}

// batch sends pkts as the host behind port in, then does what readLoop
// does with one read.
func (l *fuzzLab) batch(in int, pkts [][]byte, offs []tun.Offload) {
	for i, pkt := range pkts {
		if !l.ports[in].Send(pkt, offs[i]) {
			l.t.Fatalf("memport send queue full")
		}
	}
	e, w, port := l.e, l.w, l.e.ports[in]
	for len(pkts) > 0 {
		n, err := port.dev.Read(w.batch)
		if err != nil {
			l.t.Fatal(err)
		}
		pkts = pkts[n:]
		e.handle(w, port, n)
	}
	l.receive()
}

// release does what each port's delayLoop does when its timer fires.
func (l *fuzzLab) release() {
	e := l.e
	for _, out := range e.ports {
		due := e.release(out, nil, make([]tun.Packet, 0, BatchSize))
		e.mu.Lock()
		for _, s := range due {
			e.pool.put(s.pkt.Buf)
		}
		e.mu.Unlock()
	}
	l.receive()
}

// receive takes everything the ports were given and checks it: every
// packet leaving the device has a readable IP header, and a port without
// offloads never gets a super-packet or an unfinished checksum.
func (l *fuzzLab) receive() {
	for i, p := range l.ports {
		for {
			pkt, o, ok := p.Recv(0)
			if !ok {
				break
			}
			var h packet.Parsed
			h.Decode(pkt)
			if h.Version == 0 {
				l.t.Fatalf("port %d got a packet with an unreadable IP header: %x", i, pkt)
			}
			if !p.Offloads() && (o.IsGSO() || o.NeedsCsum) {
				l.t.Fatalf("port %d without offloads got %+v", i, o)
			}
			tp := tun.Packet{Len: len(pkt), Offload: o}
			l.outSegs += segmentCount(&tp)
		}
	}
	l.checkAccounts("")
}

// checkAccounts checks that the counters account for every packet.
func (l *fuzzLab) checkAccounts(when string) {
	st := l.e.Status()
	c := st.Counters
	in, out := c.In+c.Injected, c.Out+c.Dropped+c.NoRoute+c.Unreadable+uint64(st.Queued)+c.WriteDrops
	if in != out {
		l.t.Fatalf("%scounters do not add up: in %d + injected %d != out %d + dropped %d + no_route %d + unreadable %d + queued %d + write_drops %d",
			when, c.In, c.Injected, c.Out, c.Dropped, c.NoRoute, c.Unreadable, st.Queued, c.WriteDrops)
	}
	if c.WriteDrops != 0 {
		l.t.Fatalf("%sthe engine wrote %d packets a port refused", when, c.WriteDrops)
	}
	if l.outSegs != c.Out {
		l.t.Fatalf("%sports received %d segments, the engine counted %d out", when, l.outSegs, c.Out)
	}
}

var fuzzTimeouts = flow.Timeouts{Handshake: time.Second, Established: 5 * time.Second, Closed: time.Second}

// FuzzEngine feeds fuzzed packets, with fuzzed offload descriptors, from
// both sides through the whole packet path (read, decode, route, split,
// track, behaviors, delay lines, write) of an engine with MemPorts and a
// small flow table: no panic, nothing unreadable leaves, a port without
// offloads gets only complete packets, every packet is accounted for
// (in + injected = out + dropped + no_route + unreadable + queued +
// write_drops) and nothing is left queued once time has passed.
//
//	go test ./internal/engine -run '^$' -fuzz '^FuzzEngine$' -fuzztime 10m
func FuzzEngine(f *testing.F) {
	var ps []*profiles.Profile
	for i, y := range fuzzChains {
		p, err := profiles.Parse(fmt.Sprintf("fuzz-%d.yaml", i), []byte("name: fuzz\n"+y))
		if err != nil {
			f.Fatal(err)
		}
		ps = append(ps, p)
	}
	for _, s := range fuzzSeeds(f) {
		for v := range 4 * len(ps) {
			f.Add(s, uint64(v), uint8(v))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, variant uint8) {
		// A loop on some input would stall the fuzzer silently; crash
		// instead, so the input is recorded.
		defer time.AfterFunc(10*time.Second, func() { panic("FuzzEngine: one run took 10s") }).Stop()
		l := newFuzzLab(t, ps[int(variant>>2)%len(ps)], seed, variant&1 == 0, variant&2 == 0)
		defer l.e.Close()
		var pkts [][]byte
		var offs []tun.Offload
		from := 0
		flush := func() {
			if len(pkts) > 0 {
				l.batch(from, pkts, offs)
				pkts, offs = pkts[:0], offs[:0]
			}
		}
		fuzzframe.EachOffload(data, func(step, flags uint8, pkt []byte, o tun.Offload) {
			side := int(flags & fuzzframe.FromServer)
			if step != 0 || side != from || len(pkts) == BatchSize {
				flush()
				from = side
				l.now += fuzzframe.StepNs(step)
				l.release()
			}
			pkts = append(pkts, pkt)
			offs = append(offs, o)
		})
		flush()
		l.now += int64(time.Hour)
		l.release()
		if q := l.e.Status().Queued; q != 0 {
			t.Fatalf("%d packets still queued an hour later", q)
		}
		l.checkAccounts("at the end: ")
	})
}

// fuzzSeeds are small built-in seeds (the corpus in testdata/fuzz holds
// the real captures): a TCP exchange over IPv4 and IPv6 with a super-packet
// from the server, and a super-packet with a descriptor that lies.
func fuzzSeeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, c := range []struct{ cl, sv netip.Addr }{{clientAddr, serverAddr}, {client6, server6}} {
		var b []byte
		add := func(step, flags uint8, pkt []byte, o *tun.Offload) { b = fuzzframe.Append(b, step, flags, o, pkt) }
		add(1, 0, tcpSeg(c.cl, c.sv, 40000, 80, 1000, 0, packet.SYN, nil), nil)
		add(10, fuzzframe.FromServer, tcpSeg(c.sv, c.cl, 80, 40000, 5000, 1001, packet.SYN|packet.ACK, nil), nil)
		add(10, 0, tcpSeg(c.cl, c.sv, 40000, 80, 1001, 5001, packet.ACK, nil), nil)
		add(1, 0, tcpSeg(c.cl, c.sv, 40000, 80, 1001, 5001, packet.ACK|packet.PSH, []byte("GET / HTTP/1.1\r\n\r\n")), nil)
		super := tcpSeg(c.sv, c.cl, 80, 40000, 5001, 1019, packet.ACK|packet.PSH, make([]byte, 4000))
		hdr := 40
		gso := uint8(tun.GSOTCPv4)
		if c.cl.Is6() {
			hdr, gso = 60, tun.GSOTCPv6
		}
		o := tun.Offload{GSOSize: 1400, HdrLen: uint16(hdr), CsumStart: uint16(hdr - 20), CsumOffset: 16}
		add(5, fuzzframe.FromServer|gso<<fuzzframe.GSOShift|fuzzframe.NeedsCsum, super, &o)
		add(0, fuzzframe.FromServer|gso<<fuzzframe.GSOShift, super, &tun.Offload{GSOSize: 7, HdrLen: 9000})
		add(50, fuzzframe.FromServer, tcpSeg(c.sv, c.cl, 80, 40000, 9001, 1019, packet.ACK|packet.FIN, nil), nil)
		add(5, 0, tcpSeg(c.cl, c.sv, 40000, 80, 1019, 9002, packet.ACK|packet.FIN, nil), nil)
		add(5, fuzzframe.FromServer, tcpSeg(c.sv, c.cl, 80, 40000, 9002, 1020, packet.ACK, nil), nil)
		out = append(out, b)
	}
	return out
}

// Regression tests for what FuzzEngine found.

func fuzzProfile(t *testing.T, i int) *profiles.Profile {
	t.Helper()
	p, err := profiles.Parse("fuzz.yaml", []byte("name: fuzz\n"+fuzzChains[i]))
	must(t, err)
	return p
}

// TestEngine_UnfinishableChecksumToPlainPortIsDroppedAlone: a packet whose
// offload descriptor asks for a checksum beyond its end, bound for a port
// without offloads, is dropped as unreadable; the packets around it in the
// same batch arrive (the port used to refuse it on write, and the rest of
// the batch with it).
func TestEngine_UnfinishableChecksumToPlainPortIsDroppedAlone(t *testing.T) {
	l := newFuzzLab(t, fuzzProfile(t, 0), 1, false, true)
	defer l.e.Close()
	good := tcpSeg(serverAddr, clientAddr, 80, 40000, 1, 1, packet.ACK, []byte("first"))
	bad := tcpSeg(serverAddr, clientAddr, 80, 40000, 6, 1, packet.ACK, []byte("lying"))
	good2 := tcpSeg(serverAddr, clientAddr, 80, 40000, 11, 1, packet.ACK, []byte("third"))
	l.batch(1, [][]byte{good, bad, good2}, []tun.Offload{{}, {NeedsCsum: true, CsumStart: 20, CsumOffset: 4000}, {}})
	c := l.e.Status().Counters
	if l.outSegs != 2 || c.Out != 2 || c.Unreadable != 1 || c.WriteDrops != 0 {
		t.Fatalf("client got %d packets; counters %+v; want the two good ones out, the lying one unreadable", l.outSegs, c)
	}
}

// refusingPort is a MemPort whose Write refuses packets of one length, as a
// TUN device refuses a packet with EINVAL.
type refusingPort struct {
	*tun.MemPort
	refuse int
}

func (r refusingPort) Write(pkts []tun.Packet) (int, error) {
	for i := range pkts {
		if pkts[i].Len == r.refuse {
			n, _ := r.MemPort.Write(pkts[:i])
			return n, fmt.Errorf("refused packet %d", i)
		}
	}
	return r.MemPort.Write(pkts)
}

// TestEngine_RefusedWriteLosesOnlyThatPacket: when a port refuses one
// packet of a batch, the packets after it are still written, and the one is
// counted as a write drop, not as out.
func TestEngine_RefusedWriteLosesOnlyThatPacket(t *testing.T) {
	e := New(Config{Clock: func() int64 { return 1 }, NewTimer: func() (Timer, error) { return &fuzzTimer{done: make(chan struct{})}, nil }})
	client := tun.NewMemPort("client", 1500, true)
	server := tun.NewMemPort("server", 1500, true)
	bad := tcpSeg(clientAddr, serverAddr, 40000, 80, 6, 1, packet.ACK, []byte("refused!"))
	must(t, e.AddPort("client", client, []netip.Prefix{netip.PrefixFrom(clientAddr, 32)}))
	must(t, e.AddPort("server", refusingPort{server, len(bad)}, []netip.Prefix{netip.PrefixFrom(serverAddr, 32)}))
	defer e.Close()
	w := newWorker(e)
	for _, pkt := range [][]byte{tcpSeg(clientAddr, serverAddr, 40000, 80, 1, 1, packet.ACK, []byte("one")), bad,
		tcpSeg(clientAddr, serverAddr, 40000, 80, 14, 1, packet.ACK, []byte("three"))} {
		client.Send(pkt, tun.Offload{})
	}
	n, err := client.Read(w.batch)
	must(t, err)
	e.mu.Lock()
	w.now = 1
	for i := range n {
		e.process(w, e.ports[0], &w.batch[i])
	}
	w.flush()
	got := 0
	for {
		if _, _, ok := server.Recv(0); !ok {
			break
		}
		got++
	}
	st := e.Status()
	c := st.Counters
	if got != 2 || c.Out != 2 || c.WriteDrops != 1 || c.In != 3 {
		t.Fatalf("server got %d of 3 with one refused; counters %+v", got, c)
	}
}

// TestEngine_UnsplittableSuperPacketIsAccounted: a super-packet whose
// descriptor cannot be split (hdr_len beyond the packet) under a
// per-segment behavior leaves whole and uninspected through a port with
// offloads, and is dropped as unreadable before a port without; either way
// the counters account for it (it used to vanish uncounted).
func TestEngine_UnsplittableSuperPacketIsAccounted(t *testing.T) {
	for _, offloads := range []bool{true, false} {
		l := newFuzzLab(t, fuzzProfile(t, 1), 1, offloads, true)
		super := tcpSeg(serverAddr, clientAddr, 80, 40000, 1, 1, packet.ACK, make([]byte, 3000))
		l.batch(1, [][]byte{super}, []tun.Offload{{GSOType: tun.GSOTCPv4, GSOSize: 1000, HdrLen: 9000}})
		c := l.e.Status().Counters
		if offloads && (l.outSegs != 1 || c.Unreadable != 0) || !offloads && (l.outSegs != 0 || c.Unreadable != 1) {
			t.Errorf("client port offloads %v: %d segments out, counters %+v", offloads, l.outSegs, c)
		}
		l.e.Close()
	}
}
