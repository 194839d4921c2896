package report

import (
	"cmp"
	"fmt"
	"html/template"
	"net/netip"
	"slices"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// DefaultMaxPackets is the ladder's arrow cap when LadderOptions leaves it 0.
const DefaultMaxPackets = 200

// ladderView is what the page shows of the capture.
type ladderView struct {
	SVG       template.HTML
	Conns     []connView
	Selected  int // packets the filter selected
	Shown     int // arrows drawn
	Injected  int // among the selected packets
	Dropped   int
	Delayed   int
	Modified  int
	Marked    int // packets of LadderOptions.Marks found
	Records   int
	Truncated bool
}

type connView struct {
	ID       int
	Color    string
	Proto    string
	From, To string // "client 198.18.0.1:40312"
	Packets  int
}

// pktView is one selected packet with what the ladder derives for it.
type pktView struct {
	*Packet
	conn     int  // index into ladder.conns
	up       bool // sent by the connection's initiator
	relSeq   int64
	relAck   int64 // -1: no ISN known, show absolute
	show     bool
	from, to int    // column indexes of sender and receiver; -1 unknown
	mark     string // the note of the Mark that highlights it
}

type connState struct {
	idx      int
	view     connView
	init     netip.AddrPort
	isn      [2]uint32 // by side: 0 initiator, 1 responder
	hasISN   [2]bool
	lastSYN  uint32
	finOrRST bool
}

type connKey struct {
	lo, hi netip.AddrPort
	proto  uint8
}

// buildLadder reads the capture and lays out the ladder for r.
func buildLadder(path string, r *Report) (*ladderView, error) {
	c, err := ReadCapture(path, r.Ladder.Filter)
	if c == nil {
		return nil, err
	}
	v := &ladderView{Selected: len(c.Packets), Records: c.Records, Truncated: c.Truncated}
	if len(c.Packets) == 0 {
		return v, err
	}
	hosts := columns(r.Ladder.Hosts, c)
	col := map[string]int{}
	for i, h := range hosts {
		col[h] = i
	}
	addrHost := hostAddrs(c)
	pkts := make([]pktView, len(c.Packets))
	for i := range c.Packets {
		p := &c.Packets[i]
		// Columns of the sending and receiving hosts; for an injected packet
		// the host it pretends to come from, for a dropped one the host it
		// was meant for.
		pv := pktView{Packet: p, from: -1, to: -1}
		for _, h := range []string{p.From, addrHost[p.Src.Addr().Unmap()]} {
			if ci, ok := col[h]; ok && h != "" && pv.from < 0 {
				pv.from = ci
			}
		}
		for _, h := range []string{p.To, addrHost[p.Dst.Addr().Unmap()]} {
			if ci, ok := col[h]; ok && h != "" && pv.to < 0 {
				pv.to = ci
			}
		}
		pkts[i] = pv
		switch {
		case p.Injected:
			v.Injected++
		case p.Dropped:
			v.Dropped++
		case p.Delayed:
			v.Delayed++
		case p.Modified:
			v.Modified++
		}
	}
	v.Marked = markPackets(pkts, r.Ladder.Marks)
	v.Conns = annotateConns(pkts, addrHost)
	limit := r.Ladder.MaxPackets
	if limit <= 0 {
		limit = DefaultMaxPackets
	}
	v.Shown = selectShown(pkts, limit)
	base := r.Start
	if base.IsZero() {
		base = c.Packets[0].When()
	}
	v.SVG = template.HTML(drawLadder(pkts, hosts, hostAddrList(hosts, addrHost), v.Conns, r.Profile, base))
	return v, err
}

// columns orders the hosts the selected packets touch.
func columns(order []string, c *Capture) []string {
	used := map[string]bool{}
	for i := range c.Packets {
		used[c.Packets[i].From], used[c.Packets[i].To] = true, true
	}
	var out []string
	add := func(h string) {
		if h != "" && used[h] && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	for _, h := range order {
		add(h)
	}
	for _, h := range []string{"client", "lb", "server"} {
		add(h)
	}
	for _, h := range c.Ports {
		add(h)
	}
	if len(out) == 0 {
		out = append(out, c.Ports...)
	}
	return out
}

// hostAddrs learns which host owns which address: an arrival on a port was
// sent by that host, a departure is meant for it.
func hostAddrs(c *Capture) map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for i := range c.Packets {
		p := &c.Packets[i]
		if p.From != "" {
			m[p.Src.Addr().Unmap()] = p.From
		}
		if p.To != "" {
			m[p.Dst.Addr().Unmap()] = p.To
		}
	}
	return m
}

func hostAddrList(hosts []string, m map[netip.Addr]string) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	for a, h := range m {
		out[h] = append(out[h], a)
	}
	for _, h := range hosts {
		slices.SortFunc(out[h], func(a, b netip.Addr) int { return a.Compare(b) })
	}
	return out
}

var connColors = []string{"#1d4ed8", "#b45309", "#7c3aed", "#0f766e", "#be185d", "#4d7c0f", "#0369a1", "#9a3412"}

// annotateConns numbers the connections in order of appearance and works out
// each packet's direction and its sequence numbers relative to the ISNs.
func annotateConns(pkts []pktView, addrHost map[netip.Addr]string) []connView {
	conns := map[connKey]*connState{}
	var all []*connState
	for i := range pkts {
		p := &pkts[i]
		k := connKey{p.Src, p.Dst, p.Proto}
		if p.ICMP != nil { // drawn with the connection of the packet it quotes
			k = connKey{p.ICMP.Src, p.ICMP.Dst, p.ICMP.Proto}
			if k.hi.Compare(k.lo) < 0 {
				k.lo, k.hi = k.hi, k.lo
			}
			if cs := conns[k]; cs != nil {
				cs.view.Packets++
				p.conn, p.up = cs.idx, p.Dst.Addr() != cs.init.Addr()
				p.relSeq, p.relAck = -1, -1
				continue
			}
			k = connKey{p.Src, p.Dst, p.Proto}
		}
		if k.hi.Compare(k.lo) < 0 {
			k.lo, k.hi = k.hi, k.lo
		}
		syn := p.Proto == packet.ProtoTCP && p.Flags&packet.SYN != 0
		bareSYN := syn && p.Flags&packet.ACK == 0
		cs := conns[k]
		if cs != nil && bareSYN && cs.hasISN[0] && cs.init == p.Src && cs.isn[0] != p.Seq && cs.finOrRST {
			cs = nil // the tuple is reused by a new connection
		}
		if cs == nil {
			cs = &connState{idx: len(all), init: p.Src}
			if syn && !bareSYN {
				cs.init = p.Dst
			}
			cs.view = connView{ID: len(all) + 1, Color: connColors[len(all)%len(connColors)], Proto: protoName(p.Proto),
				From: endName(cs.init, addrHost), To: endName(other(k, cs.init), addrHost)}
			conns[k] = cs
			all = append(all, cs)
		}
		cs.view.Packets++
		p.conn = cs.idx
		p.up = p.Src == cs.init
		side := 1
		if p.up {
			side = 0
		}
		if syn && !cs.hasISN[side] {
			cs.isn[side], cs.hasISN[side] = p.Seq, true
		}
		if p.Flags&(packet.FIN|packet.RST) != 0 && p.Proto == packet.ProtoTCP {
			cs.finOrRST = true
		}
		p.relSeq, p.relAck = -1, -1
		if p.Proto == packet.ProtoTCP {
			if cs.hasISN[side] {
				p.relSeq = int64(p.Seq - cs.isn[side])
			}
			if cs.hasISN[1-side] {
				p.relAck = int64(p.Ack - cs.isn[1-side])
			}
		}
	}
	out := make([]connView, len(all))
	for i, c := range all {
		out[i] = c.view
	}
	return out
}

func other(k connKey, a netip.AddrPort) netip.AddrPort {
	if k.lo == a {
		return k.hi
	}
	return k.lo
}

func endName(a netip.AddrPort, addrHost map[netip.Addr]string) string {
	s := a.String()
	if a.Port() == 0 {
		s = a.Addr().String()
	}
	if h := addrHost[a.Addr().Unmap()]; h != "" {
		return h + " " + s
	}
	return s
}

func protoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "TCP"
	case packet.ProtoUDP:
		return "UDP"
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return "ICMP"
	}
	return fmt.Sprintf("proto %d", p)
}

// notable reports whether a packet must stay in a capped ladder: the device
// acted on it, or it opens or closes its connection.
func notable(p *pktView) bool {
	return p.Note != "" || p.mark != "" || p.Injected || p.Dropped || p.Delayed || p.Modified ||
		(p.Proto == packet.ProtoTCP && p.Flags&(packet.SYN|packet.FIN|packet.RST) != 0)
}

// markPackets gives each mark's note to its packet and returns how many
// marks found one.
func markPackets(pkts []pktView, marks []Mark) int {
	n := 0
	for _, m := range marks {
		for i := range pkts {
			p := &pkts[i]
			// Unmarked only: a packet and what the device injected in its
			// place (a RST that pretends to come from the same end) may
			// share ends and instant.
			if p.mark == "" && p.When().Equal(m.At) && SameEnd(p.Src, m.Src) && SameEnd(p.Dst, m.Dst) {
				p.mark = m.Note
				n++
				break
			}
		}
	}
	return n
}

// selectShown marks at most limit packets to draw: notable ones first, then
// those nearest to a notable one; among packets as near, those nearest to a
// verdict's mark (when every packet is notable, as when a device rewrites
// them all, this keeps the marks and what surrounds them). It returns how
// many it marked.
func selectShown(pkts []pktView, limit int) int {
	if len(pkts) <= limit {
		for i := range pkts {
			pkts[i].show = true
		}
		return len(pkts)
	}
	const far = 1 << 30
	dist := make([]int, len(pkts))
	last := -far
	for i := range pkts {
		if notable(&pkts[i]) {
			last = i
		}
		dist[i] = i - last
	}
	last = far
	for i := len(pkts) - 1; i >= 0; i-- {
		if notable(&pkts[i]) {
			last = i
		}
		dist[i] = min(dist[i], last-i)
	}
	toMark := distanceToMark(pkts)
	idx := make([]int, len(pkts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Or(cmp.Compare(dist[a], dist[b]), cmp.Compare(toMark[a], toMark[b]))
	})
	for _, i := range idx[:limit] {
		pkts[i].show = true
	}
	return limit
}

// distanceToMark is, for each packet, how many packets away the nearest
// marked one lies (1<<30 when none is marked).
func distanceToMark(pkts []pktView) []int {
	const far = 1 << 30
	dist := make([]int, len(pkts))
	last := -1
	for i := range pkts {
		if pkts[i].mark != "" {
			last = i
		}
		dist[i] = far
		if last >= 0 {
			dist[i] = i - last
		}
	}
	last = -1
	for i := len(pkts) - 1; i >= 0; i-- {
		if pkts[i].mark != "" {
			last = i
		}
		if last >= 0 {
			dist[i] = min(dist[i], last-i)
		}
	}
	return dist
}

// offset formats t as seconds since base.
func offset(t, base time.Time) string {
	return fmt.Sprintf("%.6f", t.Sub(base).Seconds())
}
