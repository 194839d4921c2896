// Package engine is faultbox's packet path: it reads batches from TUN ports,
// decodes each packet once, tracks TCP flows, runs the active profile's
// behavior chain and writes packets out now or from a port's delay line.
//
// The path of one packet, top to bottom in this file:
//
//	read batch → decode → route → (split if a per-segment behavior wants it)
//	→ flow track → behaviors → write now | delay line → write batch
//
// One lock serialises packet processing; it is taken once per batch, never
// per packet. Writes happen outside it, but each output port's write lock is
// taken before the engine lock is released, so packets leave a port in the
// order the engine decided (an injected RST never overtakes the FIN it must
// follow, whichever goroutine writes it).
package engine

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/tun"
)

// BatchSize is how many packets one read or write handles at most.
const BatchSize = 64

// Config sets up an engine. Zero values take the defaults.
type Config struct {
	MaxFlows  int           // flow table bound (default 262144)
	Timeouts  flow.Timeouts // default flow.DefaultTimeouts
	EventLog  int           // events kept (default 65536)
	Capture   Capture       // optional packet capture
	Clock     func() int64  // default Monotonic
	NewTimer  func() (Timer, error)
	OnFailure func(error) // called once if a port fails for good
	// BusyPoll, when positive, runs the packet path on one goroutine that
	// polls every port and delay line and sleeps only after BusyPoll
	// without work (poll_linux.go): long on a CPU of its own, or briefly on
	// shared CPUs; PollAlways never sleeps. Ports must then be tun.Pollers.
	BusyPoll time.Duration
}

// PollAlways as Config.BusyPoll keeps the poll goroutine awake for good:
// no packet ever waits for the device to wake up, at the price of a CPU.
const PollAlways = time.Duration(math.MaxInt64)

// Capture receives every packet as seen on a port: on ingress as read, on
// egress as written, with a note when a behavior dropped, delayed, modified
// or injected it. It is called with the engine lock held; it must copy.
type Capture interface {
	Record(r Record)
}

// Record is one captured packet.
type Record struct {
	Port    int   // index in AddPort order
	Time    int64 // engine clock, ns
	Data    []byte
	Egress  bool
	Note    string
	Delayed int64 // ns the packet was held, for egress records
}

// Counters account for every packet (segments count individually, so a
// super-packet of n segments counts n): In + Injected = Out + Dropped +
// NoRoute + Unreadable + Queued + WriteDrops.
type Counters struct {
	In         uint64 `json:"in"`
	Out        uint64 `json:"out"`
	Dropped    uint64 `json:"dropped_by_behavior"`
	Delayed    uint64 `json:"delayed"`
	Injected   uint64 `json:"injected"`
	Modified   uint64 `json:"modified"`
	NoRoute    uint64 `json:"no_route"`
	Unreadable uint64 `json:"unreadable"`  // IP header or offload unusable: dropped
	Malformed  uint64 `json:"malformed"`   // transport unreadable: passed untouched
	Split      uint64 `json:"split"`       // super-packets split for per-segment behaviors
	WriteDrops uint64 `json:"write_drops"` // refused by the port on write; not in Out
}

// Engine forwards packets between ports by destination address.
type Engine struct {
	cfg         Config
	clock       func() int64
	timerSleeps bool // delay lines wake a sleeping thread: arm early (sched.go)

	mu         sync.Mutex
	ports      []*port
	flows      *flow.Table
	chain      *behaviors.Chain
	pool       *pool
	events     eventRing
	c          Counters
	delays     delayHistogram // added delay, for metrics (metrics.go)
	writeDrops atomic.Uint64  // counted outside the engine lock
	started    bool
	closed     bool
	wg         sync.WaitGroup
	failOnce   sync.Once

	// Busy-poll mode (poll.go).
	pollWake int // eventfd that ends a sleep; -1 when not polling
	pollStop atomic.Bool
	pollWG   sync.WaitGroup
}

type port struct {
	wmu   sync.Mutex // held while writing a batch; taken under the engine lock
	id    int
	name  string
	dev   tun.Port
	addrs []netip.Prefix
	line  delayLine
	base  tun.PortStats // dev's counters at the last Reset, taken out of Status
}

// New returns an engine with an empty (passthrough) chain.
func New(cfg Config) *Engine {
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = 1 << 18
	}
	if cfg.Timeouts == (flow.Timeouts{}) {
		cfg.Timeouts = flow.DefaultTimeouts
	}
	if cfg.EventLog == 0 {
		cfg.EventLog = 1 << 16
	}
	realClock := cfg.Clock == nil
	if realClock {
		cfg.Clock = Monotonic
	}
	timerSleeps := false
	if cfg.NewTimer == nil {
		cfg.NewTimer, timerSleeps = newTimerfd, realClock
		if cfg.BusyPoll > 0 {
			cfg.NewTimer, timerSleeps = newNopTimer, false
		}
	}
	return &Engine{
		cfg:         cfg,
		timerSleeps: timerSleeps,
		clock:       cfg.Clock,
		flows:       flow.NewTable(cfg.MaxFlows, cfg.Timeouts),
		chain:       behaviors.NewChain("passthrough", 0, nil),
		pool:        newPool(),
		events:      eventRing{buf: make([]Event, cfg.EventLog)},
		pollWake:    -1,
	}
}

// AddPort attaches a device serving the given addresses. The engine owns
// dev from now on and closes it in Close. Ports are added before Start.
func (e *Engine) AddPort(name string, dev tun.Port, addrs []netip.Prefix) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return errors.New("engine: AddPort after Start")
	}
	if _, ok := dev.(tun.Poller); e.cfg.BusyPoll > 0 && !ok {
		return fmt.Errorf("engine: port %s cannot be busy-polled", name)
	}
	t, err := e.cfg.NewTimer()
	if err != nil {
		return fmt.Errorf("engine: timer for port %s: %w", name, err)
	}
	line := delayLine{timer: t}
	if e.timerSleeps {
		line.lead = wakeLead
	}
	e.ports = append(e.ports, &port{id: len(e.ports), name: name, dev: dev, addrs: addrs, line: line})
	return nil
}

// SetChain switches the behavior chain. Flows and packets already in delay
// lines are kept, so open connections survive a profile change.
func (e *Engine) SetChain(c *behaviors.Chain) {
	e.mu.Lock()
	e.chain = c
	e.mu.Unlock()
}

// Reset installs c and starts every count over: flow table, counters,
// events and the ports' statistics. A device calls it after the checks it
// ran through the engine at start-up, so that neither the profile nor the
// user meet them. Nothing may be in flight: the caller saw its checks'
// last packets arrive, and nothing else uses the ports yet. A port may
// deliver a batch before it counts it (a TUN write reaches the socket
// inside write(2)), so Reset waits for each port's write in progress.
func (e *Engine) Reset(c *behaviors.Chain) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.chain = c
	e.flows = flow.NewTable(e.cfg.MaxFlows, e.cfg.Timeouts)
	e.c = Counters{}
	e.delays.reset()
	e.writeDrops.Store(0)
	e.events.next = 0
	for _, p := range e.ports {
		p.wmu.Lock() // after the engine lock, as writers take it
		p.base = p.dev.Stats()
		p.wmu.Unlock()
	}
}

// Start runs one reader and one delay-line writer per port, or in busy-poll
// mode one goroutine for all.
func (e *Engine) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = true
	if e.cfg.BusyPoll > 0 {
		if err := e.startPoll(); err != nil {
			e.fail(err)
		}
		return
	}
	for _, p := range e.ports {
		e.wg.Add(2)
		go e.readLoop(p)
		go e.delayLoop(p)
	}
}

// Close stops the engine and closes its ports.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	ports := e.ports
	e.mu.Unlock()
	e.stopPoll()
	var first error
	for _, p := range ports {
		if err := p.dev.Close(); err != nil && first == nil {
			first = err
		}
		p.line.timer.Close()
	}
	e.wg.Wait()
	return first
}

func (e *Engine) fail(err error) {
	e.failOnce.Do(func() {
		if e.cfg.OnFailure != nil {
			e.cfg.OnFailure(err)
		}
	})
}

// readLoop is one port's ingress: read a batch, process it under the lock,
// write what leaves now.
func (e *Engine) readLoop(in *port) {
	defer e.wg.Done()
	w := newWorker(e)
	for {
		n, err := in.dev.Read(w.batch)
		if err != nil {
			if errors.Is(err, tun.ErrClosed) || e.isClosed() {
				return
			}
			e.fail(fmt.Errorf("read %s: %w", in.name, err))
			return
		}
		e.handle(w, in, n)
	}
}

// handle processes the n packets in w's batch, read from port in, and
// writes what leaves now.
func (e *Engine) handle(w *worker, in *port, n int) {
	e.mu.Lock()
	w.recycle()
	w.now = e.clock()
	for i := 0; i < n; i++ {
		e.process(w, in, &w.batch[i])
	}
	e.flows.Expire(w.now, 8)
	w.flush() // releases the engine lock
}

// process takes one packet as read from port in.
func (e *Engine) process(w *worker, in *port, pkt *tun.Packet) {
	p := &w.parsed
	p.Decode(pkt.Data())
	segs := segmentCount(pkt)
	e.c.In += segs
	w.in = in
	if p.Version == 0 {
		e.c.Unreadable += segs
		e.captureIngress(w, pkt.Data(), "unreadable IP header: dropped")
		return
	}
	if p.Malformed != packet.OK {
		e.c.Malformed += segs
	}
	out := e.route(p.Dst)
	if out == nil {
		e.c.NoRoute += segs
		e.captureIngress(w, pkt.Data(), "no route: dropped")
		return
	}
	// A port without offloads takes only finished checksums. One whose
	// offload descriptor does not fit the packet cannot be finished: it is
	// dropped here as unreadable, not refused by the port on write, where it
	// would take the rest of its batch with it.
	if pkt.Offload.NeedsCsum && !pkt.Offload.IsGSO() && !out.dev.Offloads() && tun.Complete(pkt) != nil {
		e.c.Malformed += segs
		e.c.Unreadable += segs
		e.captureIngress(w, pkt.Data(), "offload checksum not finishable: dropped")
		return
	}
	// Super-packets keep the fast path unless a per-segment behavior matches
	// their flow or the output device cannot take them.
	if pkt.Offload.IsGSO() && (!out.dev.Offloads() || e.wantsSegments(w, p)) {
		e.split(w, out, pkt)
		return
	}
	e.forward(w, out, pkt, p)
}

// wantsSegments reports whether a per-segment behavior matches the flow of
// super-packet p; it looks the flow up without changing it.
func (e *Engine) wantsSegments(w *worker, p *packet.Parsed) bool {
	f, from := e.flows.Peek(p)
	w.pkt.Reset(p, f, from, w.now)
	return e.chain.NeedsSegments(&w.pkt)
}

// split lets per-segment behaviors see each segment of a super-packet.
// Toward a port with offloads the segments are looked at in place (views)
// and, when every one passes untouched and on time (the common case for
// inspecting behaviors such as log, or a loss that did not fire), the
// super-packet is forwarded whole: one write, nothing copied. From the
// first segment a behavior acts on, the segments are copied out and leave
// one by one.
func (e *Engine) split(w *worker, out *port, pkt *tun.Packet) {
	e.c.Split++
	n := 0
	var err error
	if out.dev.Offloads() {
		n, err = w.views.Start(pkt)
		if err == nil {
			e.inspect(w, out, pkt, n)
			return
		}
	}
	if err == nil || errors.Is(err, tun.ErrLongHeaders) {
		n, err = tun.Split(pkt, w.segs)
	}
	if err != nil {
		// The offload descriptor does not fit the packet, or it has more
		// segments than a split holds. Like a packet whose transport is
		// unreadable it passes uninspected if out takes it as it is, else
		// it is dropped as unreadable; either way it is counted.
		e.c.Malformed++
		if out.dev.Offloads() {
			w.send(out, pkt, "offload not splittable: forwarded uninspected")
		} else {
			e.c.Unreadable += segmentCount(pkt)
			e.captureIngress(w, pkt.Data(), "offload not splittable: dropped")
		}
		return
	}
	var same sameFlow
	for i := 0; i < n; i++ {
		w.parsed.Decode(w.segs[i].Data())
		w.verdicts[i] = e.judge(w, &w.segs[i], &w.parsed, &same)
	}
	e.sendSegments(w, out, pkt, n)
}

// inspect judges the n segments of pkt through views (see split).
func (e *Engine) inspect(w *worker, out *port, pkt *tun.Packet, n int) {
	if n > len(w.segs) || tun.Headroom+w.views.MaxLen() > len(w.segs[0].Buf) {
		// More or longer segments than a split holds: as split does with
		// a descriptor it cannot use, pass it uninspected.
		e.c.Malformed++
		w.send(out, pkt, "offload not splittable: forwarded uninspected")
		return
	}
	injected := e.c.Injected
	var same sameFlow
	for i := 0; i < n; i++ {
		seg := w.views.View(i)
		w.parsed.Decode(seg.Data())
		v := e.judge(w, &seg, &w.parsed, &same)
		w.verdicts[i] = v
		if !v.drop && !v.modified && v.depart == w.now && e.c.Injected == injected {
			continue
		}
		// Segment i leaves on its own, as the behavior left it; so do
		// the ones before it (untouched) and after it (judged as copies).
		// It is copied before any other: Copy puts back its view.
		q := &w.segs[i]
		q.Off, q.Len, q.Offload = tun.Headroom, copy(q.Buf[tun.Headroom:], seg.Data()), seg.Offload
		for j := 0; j < i; j++ {
			w.views.Copy(j, &w.segs[j]) // cannot fail: the sizes were checked
		}
		for j := i + 1; j < n; j++ {
			w.views.Copy(j, &w.segs[j])
			w.parsed.Decode(w.segs[j].Data())
			w.verdicts[j] = e.judge(w, &w.segs[j], &w.parsed, &same)
		}
		w.views.Restore()
		e.sendSegments(w, out, pkt, n)
		return
	}
	w.views.Restore()
	e.c.Out += segmentCount(pkt)
	if e.cfg.Capture != nil {
		// The capture saw these segments come in one by one; record
		// them leaving the same way so each pairs with its arrival.
		for i := 0; i < n; i++ {
			seg := w.views.View(i)
			e.cfg.Capture.Record(Record{Port: out.id, Time: w.now, Data: seg.Data(), Egress: true})
		}
		w.views.Restore()
	}
	w.out[out.id] = append(w.out[out.id], *pkt)
}

// sendSegments dispatches the n judged segments in w.segs that stand for
// pkt, and gives the split slots fresh buffers.
func (e *Engine) sendSegments(w *worker, out *port, pkt *tun.Packet, n int) {
	// In counted the segments the descriptor claims (its hdr_len may be a
	// whole segment); these are the ones that leave.
	e.c.In = e.c.In - segmentCount(pkt) + uint64(n)
	for i := 0; i < n; i++ {
		w.own(w.segs[i].Buf)
		e.dispatch(w, out, &w.segs[i], &w.verdicts[i])
		w.segs[i].Buf = nil
	}
	w.refillSegs(n)
}

// forward takes one packet the ordinary way: judge it, then send it now,
// later, or not at all.
func (e *Engine) forward(w *worker, out *port, pkt *tun.Packet, p *packet.Parsed) {
	v := e.judge(w, pkt, p, nil)
	e.dispatch(w, out, pkt, &v)
}

// outcome is what the chain decided for one packet.
type outcome struct {
	drop     bool
	modified bool
	depart   int64
	note     string
}

// sameFlow carries the flow of a super-packet's first segment to the
// others, which share it: they are tracked without a lookup.
type sameFlow struct {
	f    *flow.Flow
	side flow.Side
}

// judge tracks the packet's flow and runs the chain on it. Modified packets
// get their checksums fixed here, while their decoded view is still valid.
// same, if not nil, is the flow of the super-packet p is a segment of,
// filled in by its first segment.
func (e *Engine) judge(w *worker, pkt *tun.Packet, p *packet.Parsed, same *sameFlow) outcome {
	var f *flow.Flow
	var from flow.Side
	if same != nil && same.f != nil {
		f, from = same.f, same.side
		e.flows.TrackAgain(f, from, p, w.now)
	} else {
		f, from = e.flows.Track(p, w.now)
		if same != nil {
			same.f, same.side = f, from
		}
	}
	if f == nil {
		from = guessSide(p)
	}
	bp := &w.pkt
	bp.Reset(p, f, from, w.now)
	segs := segmentCount(pkt)
	var original []byte
	if e.cfg.Capture != nil {
		// Capture the packet as it arrived, annotated with the verdict.
		w.capture = append(w.capture[:0], pkt.Data()...)
		original = w.capture
	}
	if e.chain.Run(bp, w, w.scratch[:]) == behaviors.Drop {
		e.c.Dropped += segs
		e.captureIngress(w, original, bp.Note)
		return outcome{drop: true}
	}
	e.captureIngress(w, original, "")
	if bp.Modified() {
		e.c.Modified += segs
		// A modified segment leaves with complete checksums (or the bad ones a
		// behavior wrote on purpose): offload state would make the receiving
		// stack trust them unchecked. A super-packet keeps its partial sum,
		// which stays valid for payload changes.
		if !pkt.Offload.IsGSO() {
			if !bp.KeepsChecksums() {
				p.FixChecksums()
			}
			pkt.Offload = tun.Offload{}
		}
	}
	return outcome{modified: bp.Modified(), depart: bp.Depart, note: bp.Note}
}

// dispatch sends a judged packet now or puts it on out's delay line.
func (e *Engine) dispatch(w *worker, out *port, pkt *tun.Packet, v *outcome) {
	switch {
	case v.drop:
	case v.depart > w.now:
		e.c.Delayed += segmentCount(pkt)
		e.delays.observe(v.depart-w.now, segmentCount(pkt))
		e.delay(w, out, pkt, v.depart, v.note)
	default:
		w.send(out, pkt, v.note)
	}
}

// delay copies pkt out of the read batch onto out's delay line.
func (e *Engine) delay(w *worker, out *port, pkt *tun.Packet, depart int64, note string) {
	buf := e.pool.get(pkt.Len)
	copy(buf[tun.Headroom:], pkt.Data())
	s := scheduled{depart: depart, note: note, delay: depart - w.now,
		pkt: tun.Packet{Buf: buf, Off: tun.Headroom, Len: pkt.Len, Offload: pkt.Offload}}
	if err := out.line.push(s); err != nil {
		e.fail(fmt.Errorf("arm timer of %s: %w", out.name, err))
	}
}

// Inject sends a packet a behavior synthesized (behaviors.Env).
func (w *worker) Inject(data []byte, depart int64, note string) {
	e := w.e
	var p packet.Parsed
	p.Decode(data)
	out := e.route(p.Dst)
	e.c.Injected++
	if out == nil || p.Version == 0 {
		e.c.NoRoute++
		return
	}
	if depart <= w.now {
		depart = w.now
	}
	buf := e.pool.get(len(data))
	copy(buf[tun.Headroom:], data)
	pkt := tun.Packet{Buf: buf, Off: tun.Headroom, Len: len(data)}
	e.events.add(&p, w.now, note)
	if e.cfg.Capture != nil {
		note = "injected: " + note
	}
	if depart == w.now {
		w.own(buf)
		w.send(out, &pkt, note)
		return
	}
	if err := out.line.push(scheduled{depart: depart, pkt: pkt, note: note, delay: depart - w.now}); err != nil {
		e.fail(err)
	}
}

// Event records a behavior's event (behaviors.Env).
func (w *worker) Event(p *behaviors.Packet, note string) {
	w.e.events.add(p.Parsed, w.now, note)
}

// delayLoop is one port's delay-line writer, woken by its timer.
func (e *Engine) delayLoop(out *port) {
	defer e.wg.Done()
	var due []scheduled
	batch := make([]tun.Packet, 0, BatchSize)
	for {
		if err := out.line.timer.Wait(); err != nil {
			return
		}
		e.untilDue(out)
		due = e.release(out, due, batch)
	}
}

// untilDue spins until the first departure of out's delay line when its
// timer fired early on purpose (delayLine.arm): at most the line's lead.
func (e *Engine) untilDue(out *port) {
	e.mu.Lock()
	at, lead := out.line.next(), out.line.lead
	e.mu.Unlock()
	if at == 0 || at-e.clock() > lead {
		return
	}
	for e.clock() < at {
	}
}

// release writes the packets of out's delay line that are due. due holds
// the previous release's packets, whose buffers go back to the pool now
// that they are written; it returns this release's.
func (e *Engine) release(out *port, due []scheduled, batch []tun.Packet) []scheduled {
	e.mu.Lock()
	for _, s := range due {
		e.pool.put(s.pkt.Buf)
	}
	now := e.clock()
	due, err := out.line.popDue(now, due[:0])
	if err != nil {
		e.fail(err)
	}
	for i := range due {
		e.egress(out, now, &due[i].pkt, due[i].note, due[i].delay)
	}
	out.wmu.Lock()
	e.mu.Unlock()
	for start := 0; start < len(due); start += BatchSize {
		batch = batch[:0]
		for i := start; i < len(due) && i < start+BatchSize; i++ {
			batch = append(batch, due[i].pkt)
		}
		e.write(out, batch)
	}
	out.wmu.Unlock()
	return due
}

// egress counts and captures a packet about to be written to out.
func (e *Engine) egress(out *port, now int64, pkt *tun.Packet, note string, delayed int64) {
	if !out.dev.Offloads() {
		tun.Complete(pkt)
	}
	e.c.Out += segmentCount(pkt)
	if e.cfg.Capture != nil {
		e.cfg.Capture.Record(Record{Port: out.id, Time: now, Data: pkt.Data(), Egress: true, Note: note, Delayed: delayed})
	}
}

func (e *Engine) captureIngress(w *worker, data []byte, note string) {
	if e.cfg.Capture != nil {
		e.cfg.Capture.Record(Record{Port: w.in.id, Time: w.now, Data: data, Note: note})
	}
}

// write sends a batch to a port; the caller holds out.wmu, not the engine lock.
func (e *Engine) write(out *port, pkts []tun.Packet) {
	if len(pkts) == 0 {
		return
	}
	for len(pkts) > 0 {
		n, err := out.dev.Write(pkts)
		if err == nil || errors.Is(err, tun.ErrClosed) || n >= len(pkts) {
			return
		}
		// pkts[n] was refused; the rest of the batch still goes (Status
		// takes it out of Out again).
		e.writeDrops.Add(segmentCount(&pkts[n]))
		pkts = pkts[n+1:]
	}
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// route returns the port serving dst, or nil.
func (e *Engine) route(dst netip.Addr) *port {
	for _, p := range e.ports {
		for _, pfx := range p.addrs {
			if pfx.Contains(dst) {
				return p
			}
		}
	}
	return nil
}

// guessSide gives non-TCP packets a direction for matches: toward the lower
// (service) port is upstream; ICMP echo requests are upstream.
func guessSide(p *packet.Parsed) flow.Side {
	switch {
	case p.HasPorts:
		if p.DstPort <= p.SrcPort {
			return flow.Client
		}
		return flow.Server
	case p.Proto == packet.ProtoICMP && p.ICMPType == 8, p.Proto == packet.ProtoICMPv6 && p.ICMPType == 128:
		return flow.Client
	}
	return flow.Server
}

// segmentCount is how many wire packets pkt stands for.
func segmentCount(pkt *tun.Packet) uint64 {
	o := pkt.Offload
	if !o.IsGSO() || o.GSOSize == 0 {
		return 1
	}
	payload := pkt.Len - int(o.HdrLen)
	if payload <= 0 {
		return 1
	}
	return uint64((payload + int(o.GSOSize) - 1) / int(o.GSOSize))
}
