package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A histogram of two series with marks: every value is in a bar of its
// series, bars of one bin stack, each mark is drawn, and verdict.json
// carries the data.
func TestWrite_DistributionChart(t *testing.T) {
	dir := t.TempDir()
	var full, fixed []time.Duration
	for i := range 24 {
		full = append(full, []time.Duration{5 * time.Millisecond, 4100 * time.Millisecond, 11300 * time.Millisecond}[i/8]+time.Duration(i)*time.Millisecond)
		fixed = append(fixed, time.Duration(i)*100*time.Microsecond)
	}
	d := Distribution{ID: "connect-times", Title: "Connect times", Caption: "one value per client",
		Series: []DistSeries{{Name: "table of 8", Values: full}, {Name: "table of 64", Values: fixed}},
		Marks:  []AxisMark{{time.Second, "SYN 2"}, {2 * time.Second, "SYN 3"}, {11 * time.Second, "SYN 8"}}}
	r := &Report{Scenario: "conntrack", Outcome: Reproduced, Expected: Reproduced, Distributions: []Distribution{d}}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	svg := svgByID(t, readHTML(t, dir), "connect-times")
	bin, _ := strconv.ParseInt(attr(svg, "data-bin-ns"), 10, 64)
	if bin <= 0 || time.Duration(bin) > 200*time.Millisecond {
		t.Errorf("bin %v: want a round width of at most 200ms for a 12 s span", time.Duration(bin))
	}
	sums := map[string]int{}
	bins := map[string]int{}
	for _, bar := range find(svg, elem("rect", "bar")) {
		n, _ := strconv.Atoi(attr(bar, "data-count"))
		sums[attr(bar, "data-series")] += n
		bins[attr(bar, "data-series")]++
	}
	if sums["table of 8"] != 24 || sums["table of 64"] != 24 {
		t.Errorf("bar totals %v, want 24 per series", sums)
	}
	if bins["table of 8"] != 3 || bins["table of 64"] != 1 {
		t.Errorf("bars per series %v: want the three steps of one and the single bin of the other", bins)
	}
	if n := len(find(svg, elem("g", "mark"))); n != 3 {
		t.Errorf("%d marks drawn, want 3", n)
	}
	var v struct {
		Distributions []Distribution `json:"distributions"`
	}
	b, err := os.ReadFile(filepath.Join(dir, VerdictFile))
	if err != nil || json.Unmarshal(b, &v) != nil || len(v.Distributions) != 1 || len(v.Distributions[0].Series[0].Values) != 24 {
		t.Errorf("verdict.json does not carry the distribution: %v", err)
	}
}
