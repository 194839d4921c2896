package sockdiag

import (
	"errors"
	"sync"
	"time"
)

// DefaultMaxSamples bounds a Series when NewSampler is given max <= 0:
// 45 s at 100 ms with 200 sockets in view.
const DefaultMaxSamples = 90_000

// Sample is one socket seen by one dump, for time-series charts.
type Sample struct {
	T            time.Duration `json:"t_ns"` // since Series.Start
	Key          Key           `json:"key"`
	State        State         `json:"state"`
	Timer        Timer         `json:"timer"`
	TimerExpires time.Duration `json:"timer_expires_ns"`
	Retrans      uint8         `json:"retrans"`
	RTT          time.Duration `json:"rtt_ns"`
	Unacked      uint32        `json:"unacked"`
	SendQ        uint32        `json:"sendq"`
	RecvQ        uint32        `json:"recvq"`
}

// Series is what a Sampler saw. Ticks lists the offsets of every successful
// dump kept, so a socket missing from a tick is known to be gone, not
// unsampled; after the last tick the series says nothing.
type Series struct {
	Start     time.Time       `json:"start"`
	Interval  time.Duration   `json:"interval_ns"`
	Filter    Filter          `json:"filter"`
	Ticks     []time.Duration `json:"ticks_ns"`
	Samples   []Sample        `json:"samples"`
	Full      bool            `json:"full"`    // the bound was reached: sampling stopped early
	Dropped   int             `json:"dropped"` // ticks not sampled because Full
	Errors    int             `json:"errors"`  // failed dumps
	LastError string          `json:"last_error,omitempty"`
}

// Sampler dumps a namespace's sockets every interval in its own goroutine.
type Sampler struct {
	dump     func() ([]Socket, error)
	close    func() error
	interval time.Duration
	max      int
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	series   Series
}

// NewSampler opens a sock_diag socket in netns and starts sampling the
// sockets that pass f: first at once, then every interval, until max ticks
// or max samples are kept (DefaultMaxSamples when max <= 0).
func NewSampler(netns string, f Filter, interval time.Duration, max int) (*Sampler, error) {
	if _, err := f.families(); err != nil {
		return nil, err
	}
	c, err := Open(netns)
	if err != nil {
		return nil, err
	}
	return startSampler(func() ([]Socket, error) { return c.Dump(f) }, c.Close, f, interval, max)
}

func startSampler(dump func() ([]Socket, error), closeFn func() error, f Filter, interval time.Duration, max int) (*Sampler, error) {
	if interval <= 0 {
		closeFn()
		return nil, errors.New("sockdiag: sampler interval must be > 0")
	}
	if max <= 0 {
		max = DefaultMaxSamples
	}
	s := &Sampler{
		dump: dump, close: closeFn, interval: interval, max: max,
		stop: make(chan struct{}), done: make(chan struct{}),
		series: Series{Start: time.Now(), Interval: interval, Filter: f},
	}
	go s.run()
	return s, nil
}

// run owns s.series until done is closed.
func (s *Sampler) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Sampler) sample() {
	sr := &s.series
	if sr.Full {
		sr.Dropped++
		return
	}
	socks, err := s.dump()
	at := time.Since(sr.Start)
	if err != nil {
		sr.Errors++
		sr.LastError = err.Error()
		return
	}
	// Keep whole ticks only, and none after the first that does not fit:
	// the series stays a true prefix, where a missing socket means gone.
	if len(sr.Ticks) >= s.max || len(sr.Samples)+len(socks) > s.max {
		sr.Full = true
		sr.Dropped++
		return
	}
	sr.Ticks = append(sr.Ticks, at)
	for i := range socks {
		sr.Samples = append(sr.Samples, sampleOf(at, &socks[i]))
	}
}

func sampleOf(at time.Duration, k *Socket) Sample {
	return Sample{
		T: at, Key: k.Key(), State: k.State, Timer: k.Timer, TimerExpires: k.TimerExpires,
		Retrans: k.Retrans, RTT: k.RTT, Unacked: k.Unacked, SendQ: k.SendQ, RecvQ: k.RecvQ,
	}
}

// Stop ends sampling, closes the socket and returns the series. Later calls
// return the same series.
func (s *Sampler) Stop() Series {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		if err := s.close(); err != nil && s.series.LastError == "" {
			s.series.LastError = err.Error()
		}
	})
	return s.series
}

// Socket returns the samples of one socket in time order.
func (sr *Series) Socket(k Key) []Sample {
	var out []Sample
	for _, x := range sr.Samples {
		if x.Key == k {
			out = append(out, x)
		}
	}
	return out
}
