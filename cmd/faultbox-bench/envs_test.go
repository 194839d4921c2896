package main

import "testing"

func TestParseBusy_AllButIdleAndIOWait(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  100 2 300 5000 70 8 90 10 40 0\ncpu0 50 1 150 2500 35 4 45 5 20 0\n"
	got, err := parseBusy(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(100+2+300+8+90+10) / 100; got != want {
		t.Errorf("busy %v s, want %v (guest is inside user, not added again)", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := parseBusy(bad); err == nil {
			t.Errorf("parseBusy(%q): no error", bad)
		}
	}
}
