package report

import (
	"fmt"
	"html"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// Ladder geometry, in SVG user units (pixels at 100%).
const (
	ladW      = 1240.0
	ladLeft   = 210.0 // first host column
	ladRight  = 1165.0
	ladTop    = 70.0 // first row
	ladRowH   = 28.0
	ladHeadY  = 10.0
	ladHeadH  = 44.0
	ladCharW  = 7.0 // monospace 11.5px, for fitting labels
	colorUp   = "#1d4ed8"
	colorDown = "#047857"
	colorInj  = "#dc2626"
	colorDrop = "#ea580c"
	colorDel  = "#b45309"
	colorMod  = "#7c3aed"
)

// ladRow is one row of the diagram: a packet, the delivery of a delayed
// packet, or a run of packets left out.
type ladRow struct {
	t      time.Time
	pkt    int // index into pkts; -1 for a gap
	second bool
	hidden int
	order  int
}

type ladGeom struct{ n int }

func (g ladGeom) host(i int) float64 {
	if g.n < 2 {
		return ladLeft
	}
	return ladLeft + float64(i)*(ladRight-ladLeft)/float64(g.n-1)
}

func (g ladGeom) lanes() int { return max(1, g.n-1) }

func (g ladGeom) lane(i int) float64 {
	i = min(max(i, 0), g.lanes()-1)
	if g.n < 2 {
		return ladRight
	}
	return (g.host(i) + g.host(i+1)) / 2
}

// laneFrom is the device lane a packet from host a toward host b meets first.
func (g ladGeom) laneFrom(a, b int) int {
	if b >= 0 && b < a {
		return a - 1
	}
	if b < 0 && a == g.n-1 {
		return a - 1
	}
	return a
}

// laneTo is the device lane a packet reaches host b from, coming from host a.
func (g ladGeom) laneTo(a, b int) int {
	if a >= 0 && a > b {
		return b
	}
	if a < 0 && b == 0 {
		return 0
	}
	return b - 1
}

func drawLadder(pkts []pktView, hosts []string, addrs map[string][]netip.Addr, conns []connView, profile string, base time.Time) string {
	rows := ladderRows(pkts)
	g := ladGeom{n: len(hosts)}
	y := func(k int) float64 { return ladTop + float64(k)*ladRowH + 18 }
	first := map[int]int{}
	second := map[int]int{}
	for k, r := range rows {
		if r.pkt >= 0 && r.second {
			second[r.pkt] = k
		} else if r.pkt >= 0 {
			first[r.pkt] = k
		}
	}
	height := ladTop + float64(len(rows))*ladRowH + 16
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="ladder" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="ladder diagram">`,
		ladW, height, ladW, height)
	b.WriteString(`<title>Ladder diagram: one arrow per packet; hover an arrow for its details</title>`)
	// Lifelines and column heads.
	for i := 0; i < g.lanes() && g.n >= 2; i++ {
		x := g.lane(i)
		fmt.Fprintf(&b, `<rect class="lane" x="%.1f" y="%.1f" width="10" height="%.1f"/>`, x-5, ladHeadY+ladHeadH, height-ladHeadY-ladHeadH-6)
		sub := "device"
		if profile != "" {
			sub = "profile " + profile
		}
		head(&b, x, "faultbox", sub, "head dev")
	}
	for i, h := range hosts {
		x := g.host(i)
		fmt.Fprintf(&b, `<line class="life" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x, ladHeadY+ladHeadH, x, height-6)
		var sub []string
		for _, a := range addrs[h] {
			sub = append(sub, a.String())
		}
		head(&b, x, h, strings.Join(sub, " · "), "head host")
	}
	fmt.Fprintf(&b, `<text class="gh" x="84" y="%.1f" text-anchor="end">time (s)</text><text class="gh" x="94" y="%.1f">conn</text>`,
		ladHeadY+ladHeadH-4, ladHeadY+ladHeadH-4)
	for k, r := range rows {
		if r.pkt < 0 {
			yy := y(k) - 4
			fmt.Fprintf(&b, `<g class="gap"><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, ladLeft-60, yy, ladRight+40, yy)
			txt := fmt.Sprintf("⋯ %d packet%s not shown ⋯", r.hidden, plural(r.hidden))
			w := float64(len([]rune(txt)))*ladCharW + 16
			mid := (ladLeft + ladRight) / 2
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="16" rx="8"/><text x="%.1f" y="%.1f">%s</text></g>`,
				mid-w/2, yy-8, w, mid, yy+4, esc(txt))
		}
	}
	for i := range pkts {
		k, ok := first[i]
		if !ok {
			continue
		}
		k2, delayed := second[i]
		drawPacket(&b, g, &pkts[i], conns, base, y(k), y(k2), delayed)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func head(b *strings.Builder, x float64, name, sub, class string) {
	w := max(130, float64(max(len(name), len(sub)))*6.6+20)
	fmt.Fprintf(b, `<g class="%s"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="6"/>`, class, x-w/2, ladHeadY, w, ladHeadH)
	fmt.Fprintf(b, `<text class="name" x="%.1f" y="%.1f">%s</text>`, x, ladHeadY+19, esc(name))
	fmt.Fprintf(b, `<text class="sub" x="%.1f" y="%.1f">%s</text></g>`, x, ladHeadY+35, esc(sub))
}

// ladderRows orders the rows by time: one per shown packet, a second one
// where a delayed packet is delivered, and one per run of hidden packets.
func ladderRows(pkts []pktView) []ladRow {
	var rows []ladRow
	for i := range pkts {
		p := &pkts[i]
		if !p.show {
			if n := len(rows); n > 0 && rows[n-1].pkt < 0 {
				rows[n-1].hidden++
			} else {
				rows = append(rows, ladRow{t: p.When(), pkt: -1, hidden: 1, order: len(rows)})
			}
			continue
		}
		rows = append(rows, ladRow{t: p.When(), pkt: i, order: len(rows)})
		if p.Delayed && !p.Injected && !p.Dropped && !p.In.IsZero() && !p.Out.IsZero() {
			rows = append(rows, ladRow{t: p.Out, pkt: i, second: true, order: len(rows)})
		}
	}
	slices.SortStableFunc(rows, func(a, b ladRow) int {
		if d := a.t.Compare(b.t); d != 0 {
			return d
		}
		return a.order - b.order
	})
	return rows
}

func drawPacket(b *strings.Builder, g ladGeom, p *pktView, conns []connView, base time.Time, y1, y2 float64, twoRows bool) {
	color := openPacket(b, p, conns, base, y1)
	a := packetArrow(g, p)
	a.draw(b, g, p, color, y1, y2, twoRows)
	a.notes(b, p, y1)
	if twoRows {
		a.delivered(b, p, base, y1, y2)
	}
	b.WriteString(`</g>`)
}

// openPacket opens the packet's group (its class and data attributes say
// what the device did, its title the details), tints the row when the
// device dropped, injected or held the packet, and writes its time and
// connection in the left margin. It returns the arrow's color.
func openPacket(b *strings.Builder, p *pktView, conns []connView, base time.Time, y1 float64) (color string) {
	color = colorDown
	if p.up {
		color = colorUp
	}
	flags := ""
	if p.Proto == packet.ProtoTCP {
		flags = p.Flags.String()
	}
	class := "pkt"
	attrs := fmt.Sprintf(` data-flags="%s" data-conn="%d" data-from="%s" data-to="%s" data-t="%s"`,
		esc(flags), conns[p.conn].ID, esc(p.From), esc(p.To), offset(p.When(), base))
	switch {
	case p.Injected:
		class += " injected"
		attrs += ` data-injected="true"`
		color = colorInj
	case p.Dropped:
		class += " dropped"
		attrs += ` data-dropped="true"`
	}
	if p.Delayed {
		class += " delayed"
		attrs += ` data-delayed="true"`
	}
	if p.Modified {
		class += " modified"
		attrs += ` data-modified="true"`
	}
	if p.mark != "" {
		class += " marked"
		attrs += fmt.Sprintf(` data-mark="%s"`, esc(p.mark))
	}
	fmt.Fprintf(b, `<g class="%s"%s><title>%s</title>`, class, attrs, esc(packetTitle(p, conns, base)))
	if p.Injected || p.Dropped || p.Delayed { // tint the row
		fmt.Fprintf(b, `<rect class="band %s" x="0" y="%.1f" width="%.0f" height="%.0f"/>`, noteClass(p), y1-18, ladW, ladRowH)
	}
	if p.mark != "" { // outline the row
		fmt.Fprintf(b, `<rect class="band mark" x="1" y="%.1f" width="%.0f" height="%.0f" rx="4"/>`, y1-17, ladW-2, ladRowH-2)
	}
	fmt.Fprintf(b, `<text class="t" x="84" y="%.1f">%s</text>`, y1+4, offset(p.When(), base))
	fmt.Fprintf(b, `<text class="c" x="94" y="%.1f" fill="%s">#%d</text>`, y1+4, conns[p.conn].Color, conns[p.conn].ID)
	return color
}

// arrow is where a packet's arrow runs: from xs to xe, past the device
// lane xl its note sits beside, in direction dir (1: rightwards).
type arrow struct {
	xs, xe, xl float64
	dir        float64
	fromLane   bool // made by the device, or never seen arriving: it starts at the lane
}

func packetArrow(g ladGeom, p *pktView) arrow {
	var a arrow
	a.fromLane = p.Injected || p.From == ""
	switch {
	case a.fromLane:
		to := max(p.to, 0)
		a.xl = g.lane(g.laneTo(p.from, to))
		a.xs, a.xe = a.xl, g.host(to)
	default:
		from := max(p.from, 0)
		a.xs = g.host(from)
		a.xl = g.lane(g.laneFrom(from, p.to))
		a.xe = a.xl
		if !p.Dropped && p.to >= 0 {
			a.xe = g.host(p.to)
		}
	}
	a.dir = 1.0
	if a.xe < a.xs || (a.xe == a.xs && a.xl < a.xs) {
		a.dir = -1
	}
	return a
}

// draw draws the arrow: cut short with a cross at the lane when dropped,
// bent down to the departure row when held (twoRows), straight across
// otherwise, with a dot where it passes another device lane.
func (a arrow) draw(b *strings.Builder, g ladGeom, p *pktView, color string, y1, y2 float64, twoRows bool) {
	xs, xe, xl, dir := a.xs, a.xe, a.xl, a.dir
	if a.fromLane {
		fmt.Fprintf(b, `<circle class="src" cx="%.1f" cy="%.1f" r="4.5" fill="%s"/>`, xs, y1, color)
	}
	w := 1.6
	if p.Injected || p.mark != "" {
		w = 2.4
	}
	switch {
	case p.Dropped:
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`, xs, y1, xl-dir*6, y1, color, w)
		fmt.Fprintf(b, `<path class="cross" d="M%.1f %.1fl10 10m0 -10l-10 10"/>`, xl-5, y1-5)
	case twoRows:
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`, xs, y1, xl, y1, color, w)
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, xl, y1, colorDel)
		fmt.Fprintf(b, `<line class="held" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, xl, y1, xe, y2)
		arrowHead(b, xl, y1, xe, y2, colorDel)
	default:
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`, xs, y1, xe, y1, color, w)
		for i := 0; i < g.lanes() && !a.fromLane && g.n >= 2; i++ {
			if x := g.lane(i); (x-xs)*(x-xe) < 0 {
				fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2.6" fill="%s"/>`, x, y1, color)
			}
		}
		arrowHead(b, xs, y1, xe, y1, color)
	}
}

// notes writes the packet's label on the sender's side of the device and
// the device's note on the other side.
func (a arrow) notes(b *strings.Builder, p *pktView, y1 float64) {
	lx, room := (a.xs+a.xl)/2, math.Abs(a.xl-a.xs)-16
	if a.fromLane {
		lx, room = (a.xl+a.xe)/2, math.Abs(a.xe-a.xl)-16
	}
	label(b, p, lx, y1-6, room)
	note, class := deviceNote(p), noteClass(p)
	if p.mark != "" {
		if note != "" {
			note = " (" + note + ")"
		}
		note, class = p.mark+note, class+" mark"
	}
	if note != "" {
		anchor, nx := "start", a.xl+12
		if a.fromLane == (a.dir > 0) {
			anchor, nx = "end", a.xl-12
		}
		ny := y1 - 6
		if p.Dropped {
			ny = y1 + 4
		}
		fmt.Fprintf(b, `<text class="note %s" x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, class, nx, ny, anchor, esc(note))
	}
}

// delivered writes, on the departure row of a held packet, its departure
// time and how long the device held it.
func (a arrow) delivered(b *strings.Builder, p *pktView, base time.Time, y1, y2 float64) {
	fmt.Fprintf(b, `<text class="t del" x="84" y="%.1f">%s</text>`, y2+4, offset(p.Out, base))
	// Beside the arrow head, clear of the slanted line coming in above.
	slope := math.Abs(a.xe-a.xl) / max(1, y2-y1)
	anchor, nx := "start", a.xe+max(16, 5*slope+12)
	if a.dir > 0 {
		anchor, nx = "end", a.xe-max(16, 5*slope+12)
	}
	fmt.Fprintf(b, `<text class="note del" x="%.1f" y="%.1f" text-anchor="%s">delivered after %s</text>`,
		nx, y2+4, anchor, esc(roundDur(p.Out.Sub(p.In)).String()))
}

func label(b *strings.Builder, p *pktView, x, y, room float64) {
	var rest string
	var flags string
	switch p.Proto {
	case packet.ProtoTCP:
		flags = "[" + p.Flags.String() + "]"
		rest = " seq " + num(p.relSeq, p.Seq)
		if p.Flags&packet.ACK != 0 {
			rest += " ack " + num(p.relAck, p.Ack)
		}
		if p.Len > 0 {
			rest += fmt.Sprintf(" len %d", p.Len)
		}
	case packet.ProtoUDP:
		flags, rest = "UDP", fmt.Sprintf(" len %d", p.Len)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		flags, rest = "ICMP", fmt.Sprintf(" type %d", p.ICMPType)
		if p.ICMP != nil {
			rest = " " + p.ICMP.String()
		}
	default:
		flags, rest = protoName(p.Proto), fmt.Sprintf(" len %d", p.Len)
	}
	if n := int(room / ladCharW); n > 8 && len(flags)+len(rest) > n {
		rest = rest[:max(0, n-len(flags)-1)] + "…"
	}
	fmt.Fprintf(b, `<text class="lbl" x="%.1f" y="%.1f"><tspan class="fl">%s</tspan>%s</text>`, x, y, esc(flags), esc(rest))
}

func num(rel int64, abs uint32) string {
	if rel >= 0 {
		return fmt.Sprint(rel)
	}
	return fmt.Sprint(abs)
}

func deviceNote(p *pktView) string {
	switch {
	case p.Injected:
		return "injected: " + p.Note
	case p.Dropped && p.Note == "":
		return "dropped"
	}
	return p.Note
}

func noteClass(p *pktView) string {
	switch {
	case p.Injected:
		return "inj"
	case p.Dropped:
		return "drop"
	case p.Delayed:
		return "del"
	}
	return "mod"
}

func packetTitle(p *pktView, conns []connView, base time.Time) string {
	var s strings.Builder
	fmt.Fprintf(&s, "#%d %s %s → %s", conns[p.conn].ID, protoName(p.Proto), p.Src, p.Dst)
	if p.Proto == packet.ProtoTCP {
		fmt.Fprintf(&s, " [%s] seq %d", p.Flags, p.Seq)
		if p.relSeq >= 0 {
			fmt.Fprintf(&s, " (relative %d)", p.relSeq)
		}
		if p.Flags&packet.ACK != 0 {
			fmt.Fprintf(&s, " ack %d", p.Ack)
			if p.relAck >= 0 {
				fmt.Fprintf(&s, " (relative %d)", p.relAck)
			}
		}
		fmt.Fprintf(&s, " win %d", p.Window)
	}
	fmt.Fprintf(&s, " len %d", p.Len)
	if p.ICMP != nil {
		fmt.Fprintf(&s, "\n%s about %s → %s", p.ICMP, p.ICMP.Src, p.ICMP.Dst)
	}
	if !p.In.IsZero() {
		fmt.Fprintf(&s, "\narrived from %s at %ss", p.From, offset(p.In, base))
	}
	if !p.Out.IsZero() {
		fmt.Fprintf(&s, "\nleft to %s at %ss", p.To, offset(p.Out, base))
	}
	if note := deviceNote(p); note != "" {
		s.WriteString("\ndevice: " + note)
	}
	return s.String()
}

// arrowHead draws a filled arrow head at (x2, y2) pointing along the
// segment from (x1, y1).
func arrowHead(b *strings.Builder, x1, y1, x2, y2 float64, color string) {
	dx, dy := x2-x1, y2-y1
	l := math.Hypot(dx, dy)
	if l == 0 {
		return
	}
	dx, dy = dx/l, dy/l
	const length, half = 10.0, 4.5
	bx, by := x2-dx*length, y2-dy*length
	fmt.Fprintf(b, `<path d="M%.1f %.1fL%.1f %.1fL%.1f %.1fZ" fill="%s"/>`,
		x2, y2, bx-dy*half, by+dx*half, bx+dy*half, by-dx*half, color)
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func esc(s string) string { return html.EscapeString(s) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
