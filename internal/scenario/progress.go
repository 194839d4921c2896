package scenario

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// progress draws one updating line on a terminal while a run waits: what
// it waits for and the time left. Elsewhere (a pipe, a file, CI) it draws
// nothing.
type progress struct {
	f     *os.File // nil: not a terminal
	label string

	mu       sync.Mutex
	what     string
	deadline time.Time
	drawn    bool
	stop     chan struct{}
	done     chan struct{}
}

// IsTerminal reports whether f is a terminal (TCGETS succeeds on it).
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newProgress(f *os.File, label string) *progress {
	p := &progress{label: label, stop: make(chan struct{}), done: make(chan struct{})}
	if !IsTerminal(f) {
		close(p.done)
		return p
	}
	p.f = f
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.draw()
		}
	}
}

// set shows what the run waits for until deadline (zero: no deadline);
// an empty what clears the line.
func (p *progress) set(what string, deadline time.Time) {
	if p.f == nil {
		return
	}
	p.mu.Lock()
	p.what, p.deadline = what, deadline
	p.mu.Unlock()
	p.draw()
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.what == "" {
		if p.drawn {
			fmt.Fprint(p.f, "\r\033[K")
			p.drawn = false
		}
		return
	}
	left := ""
	if !p.deadline.IsZero() {
		left = fmt.Sprintf(" … %.1fs left", max(0, time.Until(p.deadline).Seconds()))
	}
	fmt.Fprintf(p.f, "\r\033[K%s: waiting for %s%s", p.label, p.what, left)
	p.drawn = true
}

// close clears the line and stops drawing.
func (p *progress) close() {
	if p.f == nil {
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.set("", time.Time{})
}
