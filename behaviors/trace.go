package behaviors

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"
)

// maxTraceFile bounds a trace file read into memory.
const maxTraceFile = 16 << 20

// Trace drives the link from a Mahimahi delivery-opportunity trace, so that
// recorded cellular links can be replayed. Each line of the trace is a
// millisecond timestamp at which the link may deliver one MTU's worth of
// bytes (several lines with the same timestamp are several opportunities);
// the trace repeats with the last timestamp as its period. As in
// Mahimahi's link queue, packets use opportunities byte by byte: small
// packets share one, a packet larger than what is left spans several, and
// bytes an opportunity finds no packet for are lost. A packet leaves at the
// opportunity that carries its last byte. The queue is unbounded, as
// Mahimahi's default.
//
// The trace comes from `file` (a path opened as given, relative to the
// current directory, at most 16 MiB) or inline as `opportunities`, a list of
// millisecond timestamps. Each direction runs through the trace on its own;
// time counts from the first packet the behavior sees.
type Trace struct {
	File          string   `param:"file" help:"a Mahimahi trace file, one millisecond timestamp per delivery opportunity (at most 16 MiB, path as given)"`
	Opportunities []string `param:"opportunities" help:"the trace inline, a list of millisecond timestamps, instead of file"`
	MTU           int      `param:"mtu" unit:"bytes" help:"what each delivery opportunity carries"`

	opps   []int64 // ns after the start of a period, sorted
	period int64
	origin epoch
	cur    [2]cursor
}

// cursor is a direction's current opportunity and the bytes it has left.
type cursor struct {
	cycle int64
	i     int
	left  int
	used  bool
}

func (tr *Trace) Validate() error {
	if tr.MTU < 1 || tr.MTU > 65535 {
		return Errorf("mtu", "%d is out of range 1-65535", tr.MTU)
	}
	var err error
	switch {
	case tr.File != "" && len(tr.Opportunities) > 0:
		return Errorf("file", "give a trace file or inline opportunities, not both")
	case tr.File != "":
		var data []byte
		if data, err = readTrace(tr.File); err == nil {
			tr.opps, err = parseTrace(bytes.Split(data, []byte("\n")))
		}
		if err != nil {
			return Errorf("file", "%v", err)
		}
	case len(tr.Opportunities) > 0:
		lines := make([][]byte, len(tr.Opportunities))
		for i, s := range tr.Opportunities {
			lines[i] = []byte(s)
		}
		if tr.opps, err = parseTrace(lines); err != nil {
			return Errorf("opportunities", "%v", err)
		}
	default:
		return Errorf("file", "give a trace file or inline opportunities")
	}
	tr.period = tr.opps[len(tr.opps)-1]
	return nil
}

func readTrace(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTraceFile+1))
	if err == nil && len(data) > maxTraceFile {
		err = fmt.Errorf("%s is larger than 16 MiB", path)
	}
	return data, err
}

// parseTrace reads millisecond timestamps, one per entry; blank entries are
// skipped. They must not decrease, and the last (the period) must be > 0.
func parseTrace(lines [][]byte) ([]int64, error) {
	var opps []int64
	for n, l := range lines {
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		ms, err := strconv.ParseUint(string(l), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %q is not a millisecond timestamp", n+1, l)
		}
		t := int64(ms) * int64(time.Millisecond)
		if len(opps) > 0 && t < opps[len(opps)-1] {
			return nil, fmt.Errorf("entry %d: %d ms is before the entry above it", n+1, ms)
		}
		opps = append(opps, t)
	}
	if len(opps) == 0 || opps[len(opps)-1] == 0 {
		return nil, fmt.Errorf("no delivery opportunity after 0 ms: the trace needs a period")
	}
	return opps, nil
}

// PerSegment: opportunities carry wire packets' bytes.
func (tr *Trace) PerSegment() bool { return true }

func (tr *Trace) Handle(p *Packet) Verdict {
	c := &tr.cur[dir(p)]
	at := max(0, tr.origin.rel(p))
	switch {
	case !c.used || tr.when(c) < at: // opportunities before arrival went unused
		tr.seek(c, at)
	case c.left == 0:
		tr.step(c)
	}
	need := len(p.Buf)
	for need > c.left {
		need -= c.left
		tr.step(c)
	}
	c.left -= need
	holdUntil(p, tr.origin.t+tr.when(c))
	return Pass
}

// when is the time of c's opportunity, relative to the origin.
func (tr *Trace) when(c *cursor) int64 { return c.cycle*tr.period + tr.opps[c.i] }

// seek moves c to the first opportunity at or after at.
func (tr *Trace) seek(c *cursor, at int64) {
	c.cycle = at / tr.period
	c.i, _ = slices.BinarySearch(tr.opps, at%tr.period)
	c.left, c.used = tr.MTU, true
}

// step moves c to the next opportunity.
func (tr *Trace) step(c *cursor) {
	if c.i++; c.i == len(tr.opps) {
		c.i, c.cycle = 0, c.cycle+1
	}
	c.left = tr.MTU
}

func init() {
	Register("trace", "replay a Mahimahi delivery-opportunity trace (one MTU per ms timestamp)", func() Behavior { return &Trace{MTU: 1500} })
}
