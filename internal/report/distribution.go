package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Distribution is a set of durations the page draws as a histogram, such
// as many clients' connect times, with marks at the instants that explain
// its shape (the kernel's SYN retransmission times). Each series (an A/B
// arm) has its colour; the bars of one bin are stacked.
type Distribution struct {
	ID      string       `json:"id"`                // the chart's element id, e.g. "connect-times"
	Title   string       `json:"title"`             // a heading, e.g. "Connect times"
	Caption string       `json:"caption,omitempty"` // a sentence under it
	Series  []DistSeries `json:"series"`
	Marks   []AxisMark   `json:"marks,omitempty"`
}

// DistSeries is one series of a Distribution.
type DistSeries struct {
	Name   string          `json:"name"`
	Values []time.Duration `json:"values_ns"`
}

// AxisMark is a labelled instant on a Distribution's axis.
type AxisMark struct {
	At    time.Duration `json:"t_ns"`
	Label string        `json:"label"`
}

var seriesColors = []string{"#dc2626", "#2563eb", "#16a34a", "#d97706", "#7c3aed", "#0891b2"}

// Geometry of a distribution chart.
const (
	distW, distLeft, distRight = 1000.0, 56.0, 980.0
	distTop, distH             = 48.0, 170.0
	distMaxBins                = 80
)

// drawDistribution renders d as an SVG histogram: time on the x axis from
// 0, bins of a round width (1, 2 or 5 times a power of ten, at most
// distMaxBins of them), the count of values per bin on the y axis.
func drawDistribution(d *Distribution) string {
	var end time.Duration
	for _, s := range d.Series {
		for _, v := range s.Values {
			end = max(end, v)
		}
	}
	for _, m := range d.Marks {
		end = max(end, m.At)
	}
	end = max(end+end/20, time.Second)
	bin := time.Duration(niceStep(float64(end), distMaxBins))
	nbins := int((end + bin - 1) / bin)
	counts := make([][]int, len(d.Series)) // [series][bin]
	peak := 1
	totals := make([]int, nbins)
	for i, s := range d.Series {
		counts[i] = make([]int, nbins)
		for _, v := range s.Values {
			b := min(nbins-1, int(max(v, 0)/bin))
			counts[i][b]++
			totals[b]++
			peak = max(peak, totals[b])
		}
	}
	step := max(1, niceStep(float64(peak), 4))
	top := math.Ceil(float64(peak)/step) * step
	x := scaler(0, time.Duration(nbins)*bin, distLeft, distRight)
	y := func(n float64) float64 { return distTop + distH - n/top*distH }
	height := distTop + distH + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="distribution" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s" data-bin-ns="%d">`,
		esc(d.ID), distW, height, distW, height, esc(d.Title), int64(bin))
	lx := distLeft
	for i, s := range d.Series {
		label := fmt.Sprintf("%s (%d)", s.Name, len(s.Values))
		fmt.Fprintf(&b, `<rect x="%.1f" y="6" width="12" height="12" rx="2" fill="%s"/><text class="leg" x="%.1f" y="16">%s</text>`,
			lx, seriesColors[i%len(seriesColors)], lx+16, esc(label))
		lx += 16 + float64(len(label))*7 + 18
	}
	for n := 0.0; n <= top; n += step {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><text class="ytick" x="%.1f" y="%.1f">%g</text>`,
			distLeft, y(n), distRight, y(n), distLeft-8, y(n)+4, n)
	}
	axis(&b, 0, time.Duration(nbins)*bin, x, distTop+distH, distTop+distH)
	marks := slices.Clone(d.Marks)
	slices.SortFunc(marks, func(a, b AxisMark) int { return int(a.At - b.At) })
	for i, m := range marks {
		ty := distTop - 8 - float64(i%2)*12 // alternate heights so neighbours do not overlap
		fmt.Fprintf(&b, `<g class="mark" data-t="%s"><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#6b7280" stroke-dasharray="4 3"/><text class="leg" x="%.1f" y="%.1f" text-anchor="middle">%s</text></g>`,
			fmtOffset(m.At), x(m.At), ty+4, x(m.At), distTop+distH, x(m.At), ty, esc(m.Label))
	}
	for bi := range nbins {
		acc := 0
		for si, s := range d.Series {
			c := counts[si][bi]
			if c == 0 {
				continue
			}
			from := time.Duration(bi) * bin
			fmt.Fprintf(&b, `<rect class="bar" data-series="%s" data-from="%s" data-count="%d" shape-rendering="crispEdges" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %d in %s–%s</title></rect>`,
				esc(s.Name), fmtOffset(from), c, x(from)+0.5, y(float64(acc+c)), max(1, x(from+bin)-x(from)-1), y(float64(acc))-y(float64(acc+c)),
				seriesColors[si%len(seriesColors)], esc(s.Name), c, fmtOffset(from), fmtOffset(from+bin))
			acc += c
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}
