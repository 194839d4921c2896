package behaviors

// Log records matched packets in the run's event log (lab status, the
// report). Records are fixed-size and formatted only when read, so logging
// every segment costs no allocation; Every samples 1 in N.
type Log struct {
	Every int `param:"every" unit:"packets" help:"record one matched packet in every N"`

	seen uint64
}

func (l *Log) Validate() error {
	if l.Every < 0 {
		return Errorf("every", "%d is negative", l.Every)
	}
	return nil
}

// PerSegment: a log shows what the endpoints sent, segment by segment.
func (*Log) PerSegment() bool { return true }

func (l *Log) Handle(p *Packet) Verdict {
	l.seen++
	if l.Every <= 1 || l.seen%uint64(l.Every) == 1 {
		p.Event("log")
	}
	return Pass
}

func init() {
	Register("log", "record matched packets in the event log", func() Behavior { return &Log{Every: 1} })
}
