package tcpext

import "github.com/faultbox/faultbox/internal/report"

// arm is one variant of a scenario, side by side with the others: its
// name in the report, the client host it runs from ("" for client), the
// server port whose device behavior it meets, and what it changes.
type arm struct {
	name, host string
	port       int
	change     string
}

// mark highlights packet p in the report's ladder with note; a nil p
// (not found in the capture) marks nothing.
func mark(marks []report.Mark, p *report.Packet, note string) []report.Mark {
	if p == nil {
		return marks
	}
	return append(marks, p.Mark(note))
}
