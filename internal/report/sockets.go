package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Socket chart geometry.
const (
	sockW      = 1240.0
	sockLeft   = 330.0 // plot starts here; socket names to its left
	sockRight  = 1215.0
	sockTop    = 40.0
	sockRowH   = 17.0
	sockMax    = 40 // sockets drawn as bands; the rest only counted
	countH     = 150.0
	countTop   = 36.0
	countLeft  = 70.0
	countRight = 1215.0
)

// stateOrder lists ss state names in the order a connection meets them.
var stateOrder = []string{"LISTEN", "SYN-SENT", "SYN-RECV", "ESTAB", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT",
	"CLOSING", "LAST-ACK", "TIME-WAIT", "CLOSE"}

var stateColors = map[string]string{
	"LISTEN": "#94a3b8", "SYN-SENT": "#60a5fa", "SYN-RECV": "#38bdf8", "ESTAB": "#22c55e",
	"FIN-WAIT-1": "#facc15", "FIN-WAIT-2": "#f97316", "CLOSE-WAIT": "#dc2626", "CLOSING": "#ec4899",
	"LAST-ACK": "#a855f7", "TIME-WAIT": "#64748b", "CLOSE": "#334155",
}

func stateColor(s string) string {
	if c, ok := stateColors[s]; ok {
		return c
	}
	return "#a8a29e"
}

func stateRank(s string) int {
	if i := slices.Index(stateOrder, s); i >= 0 {
		return i
	}
	return len(stateOrder)
}

// sockView is what the page shows of the socket samples.
type sockView struct {
	Bands   string // svg#sockets
	Counts  string // svg#socket-counts
	Sockets int
	Omitted int // sockets not drawn as bands
	Samples int
	States  []string
	// CountsFirst puts the per-state counts above the bands: with many
	// sockets the counts tell the story.
	CountsFirst bool
}

type sockKey struct {
	host          string
	local, remote string
}

type sockSeries struct {
	key     sockKey
	samples []SocketSample
}

// buildSockets draws the socket states over time: one band per socket
// coloured by state, and the number of sockets in each state per sample.
func buildSockets(r *Report) *sockView {
	if len(r.Sockets) == 0 {
		return nil
	}
	samples := slices.Clone(r.Sockets)
	slices.SortStableFunc(samples, func(a, b SocketSample) int { return cmp.Compare(a.At, b.At) })
	var ticks []time.Duration
	series := map[sockKey]*sockSeries{}
	var order []*sockSeries
	states := map[string]bool{}
	for _, s := range samples {
		if n := len(ticks); n == 0 || ticks[n-1] != s.At {
			ticks = append(ticks, s.At)
		}
		k := sockKey{s.Host, s.Local.String(), s.Remote.String()}
		ss := series[k]
		if ss == nil {
			ss = &sockSeries{key: k}
			series[k] = ss
			order = append(order, ss)
		}
		ss.samples = append(ss.samples, s)
		states[s.State] = true
	}
	interval := r.SampleInterval
	if interval <= 0 {
		interval = time.Second
		for i := 1; i < len(ticks); i++ {
			interval = min(interval, ticks[i]-ticks[i-1])
		}
	}
	v := &sockView{Sockets: len(order), Samples: len(samples), CountsFirst: len(order) > 12}
	for s := range states {
		v.States = append(v.States, s)
	}
	slices.SortFunc(v.States, func(a, b string) int {
		return cmp.Or(cmp.Compare(stateRank(a), stateRank(b)), strings.Compare(a, b))
	})
	t0 := min(0, ticks[0])
	t1 := ticks[len(ticks)-1] + interval
	v.Bands = drawBands(order, ticks, interval, t0, t1, r.Timeline, v)
	v.Counts = drawCounts(samples, ticks, interval, t0, t1, v.States)
	return v
}

// next returns the time a sample taken at t stops describing its socket:
// the next sample instant, but no later than one interval on.
func next(ticks []time.Duration, t, interval time.Duration) time.Duration {
	i, _ := slices.BinarySearch(ticks, t)
	end := t + interval
	if i+1 < len(ticks) && ticks[i+1] < end+interval/2 {
		end = ticks[i+1]
	}
	return end
}

func drawBands(order []*sockSeries, ticks []time.Duration, interval, t0, t1 time.Duration, timeline []Entry, v *sockView) string {
	shown := order
	if len(shown) > sockMax {
		shown, v.Omitted = shown[:sockMax], len(shown)-sockMax
	}
	height := sockTop + float64(len(shown))*sockRowH + 40
	x := scaler(t0, t1, sockLeft, sockRight)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="sockets" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="socket states over time">`,
		sockW, height, sockW, height)
	legend(&b, v.States, sockLeft, 16)
	axis(&b, t0, t1, x, sockTop-4, height-34)
	for _, e := range timeline {
		if e.At < t0 || e.At > t1 {
			continue
		}
		xx := x(e.At)
		fmt.Fprintf(&b, `<g class="mark"><title>%s %s: %s</title><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><path d="M%.1f %.1fl-4 -7h8z"/></g>`,
			fmtOffset(e.At), esc(e.Actor), esc(e.Text), xx, sockTop-2, xx, height-34, xx, sockTop-2)
	}
	for i, ss := range shown {
		y := sockTop + float64(i)*sockRowH
		name := ss.key.local + " ↔ " + ss.key.remote
		if ss.key.host != "" {
			name = ss.key.host + " " + name
		}
		fmt.Fprintf(&b, `<g class="sock" data-local="%s" data-remote="%s"><text class="sname" x="%.1f" y="%.1f">%s</text>`,
			esc(ss.key.local), esc(ss.key.remote), sockLeft-8, y+12, esc(name))
		// One band per run of samples in the same state; its title gives
		// the run's last sample.
		for j := 0; j < len(ss.samples); {
			s := ss.samples[j]
			start, end := s.At, next(ticks, s.At, interval)
			k := j + 1
			for ; k < len(ss.samples) && ss.samples[k].State == s.State && ss.samples[k].At <= end; k++ {
				end = next(ticks, ss.samples[k].At, interval)
			}
			last := ss.samples[k-1]
			fmt.Fprintf(&b, `<rect class="band" data-state="%s" x="%.1f" y="%.1f" width="%.1f" height="12" fill="%s"><title>%s %s → %s  %s–%s  retrans %d  unacked %d  rtt %s%s</title></rect>`,
				esc(s.State), x(start), y+2.5, max(1.5, x(end)-x(start)), stateColor(s.State),
				esc(s.State), esc(ss.key.local), esc(ss.key.remote), fmtOffset(start), fmtOffset(end),
				last.Retrans, last.Unacked, roundDur(last.RTT), timerNote(last.Timer))
			j = k
		}
		prevRetrans := 0
		for _, s := range ss.samples {
			if s.Retrans > prevRetrans {
				fmt.Fprintf(&b, `<path class="retrans" d="M%.1f %.1fv-4"><title>%s retrans %d</title></path>`, x(s.At), y+2.5, fmtOffset(s.At), s.Retrans)
			}
			prevRetrans = s.Retrans
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func timerNote(t string) string {
	if t == "" || t == "off" {
		return ""
	}
	return "  timer " + t
}

func drawCounts(samples []SocketSample, ticks []time.Duration, interval, t0, t1 time.Duration, states []string) string {
	counts := make([]map[string]int, len(ticks))
	peak := 1
	for i, j := 0, 0; i < len(ticks); i++ {
		counts[i] = map[string]int{}
		n := 0
		for ; j < len(samples) && samples[j].At == ticks[i]; j++ {
			counts[i][samples[j].State]++
			n++
		}
		peak = max(peak, n)
	}
	step := max(1, niceStep(float64(peak), 5))
	top := math.Ceil(float64(peak)/step) * step
	height := countTop + countH + 34
	x := scaler(t0, t1, countLeft, countRight)
	y := func(n float64) float64 { return countTop + countH - n/top*countH }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="socket-counts" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="sockets per state over time">`,
		sockW, height, sockW, height)
	legend(&b, states, countLeft, 16)
	for n := 0.0; n <= top; n += step {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><text class="ytick" x="%.1f" y="%.1f">%g</text>`,
			countLeft, y(n), countRight, y(n), countLeft-8, y(n)+4, n)
	}
	axis(&b, t0, t1, x, countTop+countH, countTop+countH)
	for i, t := range ticks {
		end := next(ticks, t, interval)
		acc := 0
		for _, s := range states {
			c := counts[i][s]
			if c == 0 {
				continue
			}
			fmt.Fprintf(&b, `<rect data-state="%s" shape-rendering="crispEdges" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %d %s</title></rect>`,
				esc(s), x(t), y(float64(acc+c)), max(1, x(end)-x(t)), y(float64(acc))-y(float64(acc+c)), stateColor(s), fmtOffset(t), c, esc(s))
			acc += c
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func legend(b *strings.Builder, states []string, x, y float64) {
	for _, s := range states {
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="12" height="12" rx="2" fill="%s"/><text class="leg" x="%.1f" y="%.1f">%s</text>`,
			x, y-10, stateColor(s), x+16, y, esc(s))
		x += 16 + float64(len(s))*7 + 18
	}
}

func scaler(t0, t1 time.Duration, x0, x1 float64) func(time.Duration) float64 {
	span := float64(t1 - t0)
	if span <= 0 {
		span = 1
	}
	return func(t time.Duration) float64 { return x0 + float64(t-t0)/span*(x1-x0) }
}

// axis draws vertical grid lines and time labels under the plot.
func axis(b *strings.Builder, t0, t1 time.Duration, x func(time.Duration) float64, gy0, gy1 float64) {
	step := time.Duration(niceStep(float64(t1-t0), 10))
	if step <= 0 {
		return
	}
	for t := (t0 + step - 1) / step * step; t <= t1; t += step {
		fmt.Fprintf(b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><text class="xtick" x="%.1f" y="%.1f">%s</text>`,
			x(t), gy0, x(t), gy1, x(t), gy1+16, fmtTick(t, t1-t0))
	}
}

// niceStep returns 1, 2 or 5 times a power of ten, giving about n steps.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(t, span time.Duration) string {
	if span < 2*time.Second {
		return fmt.Sprintf("%gms", float64(t)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%gs", t.Seconds())
}

func fmtOffset(t time.Duration) string { return fmt.Sprintf("%.3fs", t.Seconds()) }
