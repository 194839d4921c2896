package tun

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// MemQueueLen is the number of packets each direction of a MemPort holds.
const MemQueueLen = 1024

// MemPort is an in-memory Port for tests of the engine: the test plays the
// host behind the port, Sending what the host transmits (the engine Reads
// it) and Receiving what the engine Writes. Both directions are bounded
// queues of MemQueueLen packets whose buffers are reused, so a MemPort does
// not allocate per packet once warm.
type MemPort struct {
	name     string
	mtu      int
	offloads bool
	in, out  memQueue // in: host → engine (Read); out: engine → host (Recv)
	done     chan struct{}
	closed   atomic.Bool

	readPackets, readBytes, gsoPackets atomic.Uint64
	writePackets, writeBytes, drops    atomic.Uint64
	sendDrops                          atomic.Uint64
}

var _ Poller = (*MemPort)(nil)

// NewMemPort returns an open MemPort. offloads says what Offloads reports:
// with false, Write refuses GSO and NeedsCsum packets as a real plain TUN
// device would.
func NewMemPort(name string, mtu int, offloads bool) *MemPort {
	m := &MemPort{name: name, mtu: mtu, offloads: offloads, done: make(chan struct{})}
	m.in.init()
	m.out.init()
	return m
}

// Send queues a copy of pkt as if the host had transmitted it, with offload
// descriptor o (the test is trusted to send only what the port's offload
// setting allows). It reports false if the packet was dropped because the
// queue is full or the port closed.
func (m *MemPort) Send(pkt []byte, o Offload) bool {
	if m.closed.Load() || !m.in.push(pkt, o) {
		m.sendDrops.Add(1)
		return false
	}
	return true
}

// Recv returns a copy of the next packet written to the port, waiting up to
// timeout; ok is false on timeout or when the port is closed and empty.
func (m *MemPort) Recv(timeout time.Duration) (pkt []byte, o Offload, ok bool) {
	var t *time.Timer
	for {
		if pkt, o, ok = m.out.pop(); ok {
			return pkt, o, true
		}
		if m.closed.Load() {
			return nil, Offload{}, false
		}
		if t == nil {
			t = time.NewTimer(timeout)
			defer t.Stop()
		}
		select {
		case <-m.out.ready:
		case <-m.done:
		case <-t.C:
			return m.out.pop()
		}
	}
}

// SendDrops is the number of Sends dropped because the read queue was full.
func (m *MemPort) SendDrops() uint64 { return m.sendDrops.Load() }

// Name is the port's name.
func (m *MemPort) Name() string { return m.name }

// MTU is the port's MTU.
func (m *MemPort) MTU() int { return m.mtu }

// Offloads reports the offloads setting given to NewMemPort.
func (m *MemPort) Offloads() bool { return m.offloads }

// Read returns the packets Sent so far, up to len(pkts), blocking until there
// is at least one. It returns ErrClosed once the port is closed.
func (m *MemPort) Read(pkts []Packet) (int, error) { return m.read(pkts, false) }

// TryRead is Read that returns 0 packets at once when none waits.
func (m *MemPort) TryRead(pkts []Packet) (int, error) { return m.read(pkts, true) }

// WaitFD is -1: a MemPort has no file descriptor to wait on.
func (m *MemPort) WaitFD() int { return -1 }

func (m *MemPort) read(pkts []Packet, try bool) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	for {
		if m.closed.Load() {
			return 0, ErrClosed
		}
		n, bytes, gso, err := m.in.drain(pkts)
		if n > 0 { // an error after some packets recurs on the next call
			m.readPackets.Add(uint64(n))
			m.readBytes.Add(bytes)
			m.gsoPackets.Add(gso)
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("memport %s: %w", m.name, err)
		}
		if try {
			return 0, nil
		}
		select {
		case <-m.in.ready:
		case <-m.done:
		}
	}
}

// Write queues copies of pkts for Recv. A full queue drops the rest of the
// batch (counted in WriteDrops), like a real port.
func (m *MemPort) Write(pkts []Packet) (n int, err error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	// Validate first so that the batch goes into the queue under one lock.
	for i := range pkts {
		p := &pkts[i]
		if !p.valid() {
			pkts = pkts[:i]
			err = fmt.Errorf("memport %s: write packet [%d:+%d] in buffer of %d: want offset >= %d", m.name, p.Off, p.Len, len(p.Buf), Headroom)
			break
		}
		if !m.offloads && (p.Offload.IsGSO() || p.Offload.NeedsCsum) {
			pkts = pkts[:i]
			err = fmt.Errorf("memport %s: %w", m.name, errNoOffload)
			break
		}
	}
	n, bytes := m.out.pushBatch(pkts)
	if n < len(pkts) {
		m.drops.Add(uint64(len(pkts) - n))
	}
	m.writePackets.Add(uint64(n))
	m.writeBytes.Add(bytes)
	return n, err
}

// Stats returns the port's counters.
func (m *MemPort) Stats() PortStats {
	return PortStats{
		ReadPackets:  m.readPackets.Load(),
		ReadBytes:    m.readBytes.Load(),
		WritePackets: m.writePackets.Load(),
		WriteBytes:   m.writeBytes.Load(),
		WriteDrops:   m.drops.Load(),
		GSOPackets:   m.gsoPackets.Load(),
	}
}

// Close unblocks Read and Recv; later Reads and Writes return ErrClosed.
func (m *MemPort) Close() error {
	if !m.closed.Swap(true) {
		close(m.done)
	}
	return nil
}

// memQueue is a bounded ring of packets with reusable buffers. It has one
// consumer; ready carries a wake-up for it after a push.
type memQueue struct {
	mu    sync.Mutex
	slots [MemQueueLen]memSlot
	head  int
	n     int
	ready chan struct{}
}

type memSlot struct {
	buf []byte
	o   Offload
}

func (q *memQueue) init() { q.ready = make(chan struct{}, 1) }

func (q *memQueue) push(b []byte, o Offload) bool {
	q.mu.Lock()
	ok := q.put(b, o)
	q.mu.Unlock()
	q.wake()
	return ok
}

// pushBatch queues the packets until the queue is full.
func (q *memQueue) pushBatch(pkts []Packet) (n int, bytes uint64) {
	q.mu.Lock()
	for n < len(pkts) && q.put(pkts[n].Data(), pkts[n].Offload) {
		bytes += uint64(pkts[n].Len)
		n++
	}
	q.mu.Unlock()
	if n > 0 {
		q.wake()
	}
	return n, bytes
}

func (q *memQueue) put(b []byte, o Offload) bool {
	if q.n == len(q.slots) {
		return false
	}
	s := &q.slots[(q.head+q.n)%len(q.slots)]
	s.buf = append(s.buf[:0], b...)
	s.o = o
	q.n++
	return true
}

func (q *memQueue) wake() {
	select {
	case q.ready <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// pop returns a copy of the oldest packet (test side: it may allocate).
func (q *memQueue) pop() ([]byte, Offload, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return nil, Offload{}, false
	}
	s := &q.slots[q.head]
	b := append([]byte(nil), s.buf...)
	q.head = (q.head + 1) % len(q.slots)
	q.n--
	return b, s.o, true
}

// drain moves up to len(pkts) packets into the caller's buffers.
func (q *memQueue) drain(pkts []Packet) (n int, bytes, gso uint64, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for n < len(pkts) && q.n > 0 {
		s := &q.slots[q.head]
		p := &pkts[n]
		if len(p.Buf) < Headroom+len(s.buf) {
			return n, bytes, gso, fmt.Errorf("read buffer %d is %d bytes, packet needs %d", n, len(p.Buf), Headroom+len(s.buf))
		}
		p.Off, p.Len, p.Offload = Headroom, copy(p.Buf[Headroom:], s.buf), s.o
		bytes += uint64(p.Len)
		if s.o.IsGSO() {
			gso++
		}
		q.head = (q.head + 1) % len(q.slots)
		q.n--
		n++
	}
	return n, bytes, gso, nil
}
