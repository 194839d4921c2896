package units

import "testing"

func TestRate_ReadsTcSuffixesAndWritesThemBack(t *testing.T) {
	for in, want := range map[string]Rate{"40kbit": 40e3, "1.5mbit": 1.5e6, "10gbit": 10e9, "300": 300, " 2Mbit ": 2e6, "1mbps": 8e6, "100bps": 800} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err != nil || r != want {
			t.Errorf("%q: %d, %v; want %d", in, r, err, want)
		}
	}
	for r, want := range map[Rate]string{40e3: "40kbit", 1.5e6: "1.5mbit", 10e9: "10gbit", 999: "999bit", 1500: "1.5kbit"} {
		if got := r.String(); got != want {
			t.Errorf("Rate(%d) = %q, want %q", uint64(r), got, want)
		}
	}
	for _, bad := range []string{"", "0", "-1kbit", "fast", "2tbit", "2000gbit"} {
		var r Rate
		if r.UnmarshalText([]byte(bad)) == nil {
			t.Errorf("%q accepted as %d", bad, r)
		}
	}
}

func TestSize_ReadsSuffixesAndIsAFlag(t *testing.T) {
	for in, want := range map[string]Size{"1500b": 1500, "1500": 1500, "64kb": 64e3, "64kib": 64 << 10, "1mib": 1 << 20, "10mib": 10 << 20,
		"2GB": 2e9, "2MB": 2e6, "0": 0, "1.5kib": 1536} {
		var z Size
		if err := z.Set(in); err != nil || z != want {
			t.Errorf("%q: %d, %v; want %d", in, z, err, want)
		}
	}
	for z, want := range map[Size]string{1000: "1kb", 1024: "1kib", 10 << 20: "10mib", 1 << 20: "1mib", 1536: "1536b",
		1500: "1500b", 64 << 10: "64kib", 0: "0b", 2e6: "2mb"} {
		if got := z.String(); got != want {
			t.Errorf("Size(%d) = %q, want %q", uint64(z), got, want)
		}
	}
	for _, bad := range []string{"", "-1b", "lots", "2pib"} {
		var z Size
		if z.Set(bad) == nil {
			t.Errorf("%q accepted as %d", bad, z)
		}
	}
	if (new(Size)).Type() != "size" {
		t.Error("the flag type is not named size")
	}
}

func TestProbability_ReadsFractionsAndPercentages(t *testing.T) {
	for in, want := range map[string]Probability{"0.5": 0.5, "1.5%": 0.015, "100%": 1, "0": 0} {
		var p Probability
		if err := p.UnmarshalText([]byte(in)); err != nil || p != want {
			t.Errorf("%q: %v, %v; want %v", in, p, err, want)
		}
	}
	for _, bad := range []string{"1.5", "-1%", "101%", "half"} {
		var p Probability
		if p.UnmarshalText([]byte(bad)) == nil {
			t.Errorf("%q accepted as %v", bad, p)
		}
	}
}
