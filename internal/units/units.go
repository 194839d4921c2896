// Package units holds the quantities faultbox reads from profiles and
// flags, with their units in the type: a Rate in bits per second, a Size
// in bytes, a Probability. Each reads its text form (UnmarshalText, for
// the profile loader) and names itself in words for help output.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// Rate is a bandwidth in bits per second, written with tc-style suffixes:
// 40kbit, 1.5mbit, 10gbit, or plain bit/s.
type Rate uint64

func (r *Rate) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}, {"gbps", 8e9}, {"mbps", 8e6}, {"kbps", 8e3}, {"bps", 8}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 || v*mult > 1e12 {
		return fmt.Errorf("%q is not a rate such as 40kbit, 2mbit or 1gbit", string(b))
	}
	*r = Rate(v * mult)
	return nil
}

func (r Rate) String() string {
	switch {
	case r >= 1e9 && r%1e6 == 0:
		return fmt.Sprintf("%ggbit", float64(r)/1e9)
	case r >= 1e6 && r%1e3 == 0:
		return fmt.Sprintf("%gmbit", float64(r)/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%gkbit", float64(r)/1e3)
	}
	return fmt.Sprintf("%dbit", uint64(r))
}

// Size is a byte count written with b, kb, kib, mb, mib, gb, gib suffixes.
// It is also a command-line flag value (pflag.Value).
type Size uint64

func (z *Size) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v*mult > 1<<50 {
		return fmt.Errorf("%q is not a size such as 1500b, 64kb or 1mib", string(b))
	}
	*z = Size(v * mult)
	return nil
}

// String writes the size with the largest suffix that divides it
// exactly (up to mib), as flags show their defaults.
func (z Size) String() string {
	v := uint64(z)
	for _, u := range []struct {
		suffix string
		m      uint64
	}{{"mib", 1 << 20}, {"mb", 1e6}, {"kib", 1 << 10}, {"kb", 1e3}} {
		if v >= u.m && v%u.m == 0 {
			return strconv.FormatUint(v/u.m, 10) + u.suffix
		}
	}
	return strconv.FormatUint(v, 10) + "b"
}

// Set and Type make a *Size a command-line flag value.
func (z *Size) Set(s string) error { return z.UnmarshalText([]byte(s)) }
func (z *Size) Type() string       { return "size" }

// Probability is a number in [0, 1], also written as a percentage ("1.5%").
type Probability float64

func (p *Probability) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if pct {
		v /= 100
	}
	if err != nil || v < 0 || v > 1 {
		return fmt.Errorf("%q is not a probability between 0 and 1 (or 0%% and 100%%)", s)
	}
	*p = Probability(v)
	return nil
}
