package behaviors

import (
	"slices"
	"testing"
	"time"
)

const sec = int64(time.Second)

func TestOutage_ScheduledDrop(t *testing.T) {
	o := &Outage{Every: 10 * time.Second, Duration: 2 * time.Second, Start: 5 * time.Second}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, nil), 1)
	origin := 1000 * sec // the engine clock's zero means nothing
	dropped := 0
	for ms := int64(0); ms < 60_000; ms += 100 {
		v := o.Handle(dp.at(origin+ms*int64(time.Millisecond), ms%200 == 0))
		// Down in [5s, 7s), [15s, 17s), ...
		want := Pass
		if ms >= 5000 && (ms-5000)%10_000 < 2000 {
			want = Drop
		}
		if v != want {
			t.Fatalf("at %dms: %v, want %v", ms, v, want)
		}
		if v == Drop {
			dropped++
		}
	}
	if dropped != 6*20 {
		t.Fatalf("%d dropped, want 120", dropped)
	}
}

func TestOutage_ScheduledHoldReleasesAtTheEnd(t *testing.T) {
	h := newHarness(t, "outage", &Outage{Every: 10 * time.Second, Duration: 3 * time.Second, Mode: "hold"}, Match{})
	k := newConn(client4, server4, 1000, 5000)
	var departs []int64
	for i := 0; i < 10; i++ { // 0 .. 4.5 s: down until 3 s
		v, d := h.send(dataSeg(k, i%2 == 0, 100))
		if v != Pass {
			t.Fatalf("packet %d dropped in hold mode", i)
		}
		departs = append(departs, h.now+d)
		h.now += sec / 2
	}
	want := []int64{3 * sec, 3 * sec, 3 * sec, 3 * sec, 3 * sec, 3 * sec, 3 * sec, 7 * sec / 2, 4 * sec, 9 * sec / 2}
	if !slices.Equal(departs, want) {
		t.Fatalf("departures %v, want %v", departs, want)
	}
}

// randomRun sends one packet every step through a random outage and returns
// the verdicts.
func randomRun(t *testing.T, seed uint64, step, total int64) []Verdict {
	o := &Outage{MeanInterval: 10 * time.Second, MeanDuration: 2 * time.Second}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, nil), seed)
	var out []Verdict
	for now := int64(0); now < total; now += step {
		out = append(out, o.Handle(dp.at(now, true)))
	}
	return out
}

func TestOutage_RandomDownFraction(t *testing.T) {
	vs := randomRun(t, 1, sec/10, 40000*sec)
	down := 0
	for _, v := range vs {
		if v == Drop {
			down++
		}
	}
	// Alternating exponential up (mean 10 s) and down (mean 2 s) times:
	// down 2/12 of the time.
	near(t, "down fraction", float64(down)/float64(len(vs)), 2.0/12, 0.01)
}

func TestOutage_RandomScheduleDependsOnTimeAndSeedOnly(t *testing.T) {
	dense := randomRun(t, 7, sec/10, 2000*sec)    // every 100 ms
	sparse := randomRun(t, 7, 7*sec/10, 2000*sec) // every 700 ms
	for i, v := range sparse {
		if dense[7*i] != v {
			t.Fatalf("at %v: %v with sparse traffic, %v with dense", time.Duration(int64(i)*7*sec/10), v, dense[7*i])
		}
	}
	if slices.Equal(dense, randomRun(t, 8, sec/10, 2000*sec)) {
		t.Fatal("another seed gave the same outages")
	}
}

func TestOutage_Validate(t *testing.T) {
	for _, o := range []*Outage{
		{},
		{Every: time.Second},
		{Every: time.Second, Duration: time.Second},
		{Every: time.Second, Duration: 1, MeanInterval: time.Second, MeanDuration: 1},
		{MeanInterval: time.Second},
		{Every: time.Second, Duration: 1, Mode: "pause"},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func BenchmarkOutage_Handle(b *testing.B) {
	o := &Outage{MeanInterval: time.Second, MeanDuration: 100 * time.Millisecond, Mode: "hold"}
	if err := o.Validate(); err != nil {
		b.Fatal(err)
	}
	dp := newDirect(udpPacket(client4, server4, 1, 2, nil), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		o.Handle(dp.at(int64(i)*10000, true))
	}
}
