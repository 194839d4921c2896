package engine

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// Event is one record of the run's event log: something a behavior or the
// engine did to a packet. Records are fixed-size values in a ring, so
// logging costs no allocation; they are formatted only when read.
type Event struct {
	Time             int64 // engine clock, ns
	Note             string
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	Flags            packet.TCPFlags
	Seq, Ack         uint32
	Len              int
}

// String renders the event like a one-line tcpdump.
func (e Event) String() string {
	t := time.Duration(e.Time - clockStartMono)
	if e.Proto != packet.ProtoTCP {
		return fmt.Sprintf("%12.6f %s proto %d %s > %s len %d", t.Seconds(), e.Note, e.Proto, e.Src, e.Dst, e.Len)
	}
	return fmt.Sprintf("%12.6f %s %s > %s [%s] seq %d ack %d len %d", t.Seconds(), e.Note,
		netip.AddrPortFrom(e.Src, e.SrcPort), netip.AddrPortFrom(e.Dst, e.DstPort), e.Flags, e.Seq, e.Ack, e.Len)
}

var clockStartMono = Monotonic()

// eventRing keeps the newest events; older ones are overwritten (and counted).
type eventRing struct {
	buf  []Event
	next uint64 // total events ever written
}

func (r *eventRing) add(p *packet.Parsed, now int64, note string) {
	if len(r.buf) == 0 {
		return
	}
	e := &r.buf[r.next%uint64(len(r.buf))]
	*e = Event{Time: now, Note: note, Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort,
		Proto: p.Proto, Flags: p.Flags, Seq: p.Seq, Ack: p.Ack, Len: len(p.Buf)}
	if p.Proto == packet.ProtoTCP {
		e.Len = p.PayloadLen()
	}
	r.next++
}

// since returns the events with sequence number >= from (oldest first) and
// the sequence number to ask for next time.
func (r *eventRing) since(from uint64) ([]Event, uint64) {
	n := uint64(len(r.buf))
	if r.next > n && from < r.next-n {
		from = r.next - n
	}
	var out []Event
	for i := from; i < r.next; i++ {
		out = append(out, r.buf[i%n])
	}
	return out, r.next
}
