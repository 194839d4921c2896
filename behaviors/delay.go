package behaviors

import (
	"math"
	"time"

	"github.com/faultbox/faultbox/internal/units"
)

// Delay holds every packet for a fixed one-way delay plus random jitter,
// like netem's `delay 300ms 50ms 25% distribution normal`.
//
// The jitter distributions are netem's: uniform spreads over delay±jitter;
// normal has standard deviation jitter (cut at ±4 jitter, as netem's table);
// pareto and paretonormal are NIST Net's shapes (a Pareto with shape 3,
// shifted to mean 0 and scaled by 4/3, capped at +4 jitter; paretonormal is
// 3/4 of that plus 1/4 normal of the same quantile). Values are computed
// from their inverse CDFs instead of looked up in netem's 4096-entry tables.
//
// Correlation makes each jitter value depend on the previous one of its
// direction. Unlike netem, which mixes uniform draws and so narrows the
// distribution as correlation grows, it runs an AR(1) process on a normal
// variate and maps that through the chosen distribution's quantile function:
// the distribution stays as configured whatever the correlation.
//
// A link does not reorder: unless Reorder is set, a packet never leaves
// before the previous packet of its direction, so when packets come closer
// together than the jitter's spread, later ones wait behind slow ones.
type Delay struct {
	Delay        time.Duration     `param:"delay" help:"the fixed one-way delay"`
	Jitter       time.Duration     `param:"jitter" help:"the random part added to delay (uniform: within ±jitter; normal: its standard deviation)"`
	Distribution string            `param:"distribution" values:"uniform|normal|pareto|paretonormal" default:"uniform" help:"the jitter's distribution (netem's shapes)"`
	Correlation  units.Probability `param:"correlation" help:"how much each jitter value follows the previous one of its direction; the distribution stays as configured"`
	Reorder      bool              `param:"reorder" help:"let a packet overtake an earlier one of its direction whose jitter was longer (by default the link keeps order)"`

	shape shape
	last  [2]int64   // latest departure per direction, to keep order
	z     [2]float64 // previous normal variate per direction, for correlation
	zset  [2]bool
}

type shape uint8

const (
	uniform shape = iota
	normal
	pareto
	paretoNormal
)

var shapes = map[string]shape{"": uniform, "uniform": uniform, "normal": normal, "pareto": pareto, "paretonormal": paretoNormal}

func (d *Delay) Validate() error {
	if d.Delay < 0 {
		return Errorf("delay", "must not be negative")
	}
	if d.Jitter < 0 {
		return Errorf("jitter", "must not be negative")
	}
	s, ok := shapes[d.Distribution]
	if !ok {
		return Errorf("distribution", "%q is not uniform, normal, pareto or paretonormal", d.Distribution)
	}
	d.shape = s
	return nil
}

func (d *Delay) Handle(p *Packet) Verdict {
	i := dir(p)
	t := p.Depart + int64(d.Delay)
	if d.Jitter > 0 {
		t += int64(math.Round(float64(d.Jitter) * d.sample(p, i)))
	}
	holdUntil(p, t) // jitter larger than the delay: leave at once, as netem
	if !d.Reorder {
		holdUntil(p, d.last[i])
		d.last[i] = p.Depart
	}
	return Pass
}

// sample returns the next jitter value of direction i in units of Jitter.
func (d *Delay) sample(p *Packet, i int) float64 {
	z := p.Rand.NormFloat64()
	if rho := float64(d.Correlation); rho > 0 {
		if d.zset[i] {
			z = rho*d.z[i] + math.Sqrt(1-rho*rho)*z
		}
		d.z[i], d.zset[i] = z, true
	}
	switch d.shape {
	case normal:
		return clampNormal(z)
	case pareto:
		return paretoQuantile(normalCDF(z))
	case paretoNormal:
		return 0.25*clampNormal(z) + 0.75*paretoQuantile(normalCDF(z))
	}
	return 2*normalCDF(z) - 1 // uniform on (-1, 1)
}

func normalCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }

func clampNormal(z float64) float64 { return max(-4, min(4, z)) }

// paretoQuantile is NIST Net's Pareto table entry at quantile u:
// (x - 1.5) * 4/3 for x Pareto-distributed with shape 3 and scale 1,
// capped at 4 (netem's 16-bit table scaled by 8192 stops there).
func paretoQuantile(u float64) float64 {
	x := (math.Pow(1-u, -1.0/3) - 1.5) * 4 / 3
	return min(x, 4)
}

func init() {
	Register("delay", "one-way delay with jitter (uniform, normal, pareto), per direction, order-keeping", func() Behavior { return &Delay{} })
}
