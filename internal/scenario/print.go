package scenario

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/faultbox/faultbox/internal/report"
)

// MaxTimelineLines bounds the timeline printed at the end of a run; the
// report has all of it.
const MaxTimelineLines = 40

// WriteSummary prints a finished run for people: the verdict and its
// reason, the runs, a short timeline, and where the report is.
func WriteSummary(w io.Writer, res *Result) {
	rep := res.Report
	verdict := strings.ToUpper(string(rep.Outcome))
	switch {
	case rep.Outcome == report.Error:
		verdict += " (the run could not decide)"
	case rep.Pass():
		verdict += " (as expected)"
	default:
		verdict += fmt.Sprintf(" (expected: %s)", rep.Expected)
	}
	fmt.Fprintf(w, "%s: %s\n", rep.Scenario, verdict)
	if rep.Reason != "" {
		fmt.Fprintf(w, "  %s\n", rep.Reason)
	}
	if len(rep.Runs) > 0 {
		fmt.Fprintln(w, "\nruns:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, run := range rep.Runs {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", run.Name, run.Outcome, run.Reason)
		}
		tw.Flush()
	}
	if len(rep.Timeline) > 0 {
		fmt.Fprintln(w, "\ntimeline:")
		tl := rep.Timeline
		skipped := 0
		if len(tl) > MaxTimelineLines {
			skipped = len(tl) - MaxTimelineLines
			tl = tl[:MaxTimelineLines]
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, e := range tl {
			fmt.Fprintf(tw, "  %+8.3fs\t%s\t%s\n", e.At.Seconds(), e.Actor, e.Text)
		}
		tw.Flush()
		if skipped > 0 {
			fmt.Fprintf(w, "  ... %d more entries in the report\n", skipped)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "\nseed %d, kernel %s, %s wall time\n", rep.Seed, rep.Kernel, res.Wall.Round(10*time.Millisecond))
	fmt.Fprintf(w, "report: %s\n", filepath.Join(res.Dir, report.HTMLFile))
	if res.Kept {
		fmt.Fprintf(w, "lab %s was kept: faultbox lab down --name %s\n", res.Lab, res.Lab)
	}
}
