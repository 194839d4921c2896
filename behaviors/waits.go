package behaviors

import (
	"fmt"
	"strings"
)

// Waiter is implemented by behaviors that act only when something comes
// that the traffic may never bring: a client FIN, a byte count, an idle
// gap. A client that closes with a RST never meets a behavior waiting for
// its FIN; `lab status` says so instead of showing zeros without a reason.
type Waiter interface {
	Waiting() Wait
}

// Wait is what a behavior waits for and how often it came.
type Wait struct {
	For  string `json:"for"`            // in words, plural: "client FINs"
	Seen uint64 `json:"seen"`           // how many came
	Note string `json:"note,omitempty"` // what came instead, or why none did
}

// String reads as one line: "0 client FINs seen (...)".
func (w Wait) String() string {
	s := fmt.Sprintf("%d %s seen", w.Seen, w.For)
	if w.Note != "" {
		s += " (" + w.Note + ")"
	}
	return s
}

// count is "1 thing" or "n things".
func count(n uint64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// wait describes the trigger, which fired fired times.
func (t *Trigger) wait(fired uint64) Wait {
	w := Wait{Seen: fired}
	switch t.kind {
	case trigClientAckedServerFIN:
		w.For = "flows where the client acknowledged the server's FIN"
	case trigServerFIN:
		w.For = "flows where the server sent a FIN"
	case trigClientFIN:
		w.For = "flows where the client sent a FIN"
	case trigClientRST:
		w.For = "flows where the client sent a RST"
	case trigBytes:
		w.For = fmt.Sprintf("flows reaching %d payload bytes%s", uint64(t.AfterBytes), t.dirWords())
	case trigIdle:
		w.For = fmt.Sprintf("flows idle for %v", t.After)
	case trigTime:
		w.For = fmt.Sprintf("flows lasting %v", t.After)
	case trigRegex:
		w.For = fmt.Sprintf("flows whose first payload%s matches %q", t.dirWords(), t.Pattern)
	default:
		w.For = "triggers"
	}
	return w
}

func (t *Trigger) dirWords() string {
	if t.dir == Both {
		return ""
	}
	return " " + strings.ToLower(t.Direction)
}
