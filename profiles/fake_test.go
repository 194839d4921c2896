package profiles

import (
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/units"
)

// fake is a test-only behavior with a parameter of every supported type, so
// the decoder's every path can be exercised without depending on which real
// behaviors exist yet.
type fake struct {
	Delay   time.Duration     `param:"delay"`
	Count   int               `param:"count" unit:"packets" help:"how many"`
	Small   uint8             `param:"small"`
	Big     int64             `param:"big"`
	Ratio   float64           `param:"ratio"`
	On      bool              `param:"on"`
	Mode    string            `param:"mode" values:"a|b" default:"a"`
	Hosts   []string          `param:"hosts" values:"x|y"`
	Rate    units.Rate        `param:"rate"`
	Size    units.Size        `param:"size"`
	Loss    units.Probability `param:"loss"`
	private int               // not a parameter
}

func (*fake) Handle(*behaviors.Packet) behaviors.Verdict { return behaviors.Pass }

func (f *fake) Validate() error {
	if f.Count > 100 {
		return behaviors.Errorf("count", "%d is out of range 0-100", f.Count)
	}
	if f.Mode == "bad" {
		return behaviors.Errorf("nowhere", "a field the profile did not set")
	}
	return nil
}

// common is embedded to check that embedded parameter structs are seen.
type common struct {
	After time.Duration `param:"after"`
}

type fakeEmbedded struct {
	common
	Every int `param:"every"`
}

func (*fakeEmbedded) Handle(*behaviors.Packet) behaviors.Verdict { return behaviors.Pass }

// fakeUnsupported has a parameter type the decoder cannot fill.
type fakeUnsupported struct {
	Table map[string]int `param:"table"`
}

func (*fakeUnsupported) Handle(*behaviors.Packet) behaviors.Verdict { return behaviors.Pass }

func init() {
	behaviors.Register("test-fake", "test-only behavior with every parameter type", func() behaviors.Behavior {
		return &fake{Delay: 300 * time.Millisecond, Count: 1, Hosts: []string{"x"}}
	})
	behaviors.Register("test-fake-embedded", "test-only behavior with an embedded struct", func() behaviors.Behavior {
		return &fakeEmbedded{Every: 2}
	})
	behaviors.Register("test-fake-unsupported", "test-only behavior with a bad parameter type", func() behaviors.Behavior {
		return &fakeUnsupported{}
	})
}
