package behaviors_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/flow"
	"github.com/faultbox/faultbox/internal/fuzzframe"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/profiles"
)

// fuzzParams gives each behavior parameter sets that make it act often on a
// short fuzzed sequence; the fuzzer picks one per run. A behavior missing
// here runs with its defaults, and if those do not validate the test fails:
// a new behavior must be added, never skipped.
var fuzzParams = map[string][]string{
	"asa-teardown": {"", "on: [fin, rst]\nfin: swallow\noffset_mode: window\nrst_to_client: true\nforget_for: 1s"},
	"conntrack":    {"max: 2\ntimeout_established: 1s\ntimeout_time_wait: 100ms", "max: 1\nearly_drop: false", "max: 3\nbuckets: 1\ngc_interval: 10ms"},
	"corrupt":      {"p: 0.5", "p: 1\nchecksum: correct"},
	"delay": {"delay: 10ms\njitter: 5ms", "delay: 50ms\njitter: 40ms\ndistribution: pareto\ncorrelation: 0.5",
		"delay: 20ms\njitter: 20ms\ndistribution: normal\nreorder: true", "delay: 1ms\njitter: 1ms\ndistribution: paretonormal"},
	"drop":            {"probability: 0.3", "count: 2"},
	"ecn-syn-drop":    {""},
	"duplicate":       {"p: 0.5", "p: 1"},
	"fin-delay":       {"delay: 100ms"},
	"hold-first-data": {"hold: 200ms"},
	"idle-timeout":    {"timeout: 1s", "timeout: 10ms\nmode: rst\nrst_to: both", "timeout: 1s\ntransitory_timeout: 10ms\nmode: rst\nrst_to: sender"},
	"loss":            {"p: 0.3", "model: gilbert-elliott\np: 0.2\nr: 0.3\nh: 0.5\nk: 0.9"},
	"mss-clamp":       {"mtu: 1400", "mss: 536"},
	"mtu":             {"mtu: 576", "mtu: 1280\nicmp: send\nrouter: [198.18.0.254, '2001:db8::fe']"},
	"outage":          {"every: 1s\nduration: 300ms", "mean_interval: 500ms\nmean_duration: 100ms\nmode: hold"},
	"rate":            {"rate: 1mbit", "rate: 100kbit\nlimit: 3kb\noverhead: 14"},
	"seq-randomize":   {"", "side: client\nrewrite_sack: true", "offset: 3000\nrewrite_sack: true"},
	"reorder":         {"p: 0.3\ndelay: 10ms", "p: 1\ngap: 3\ndelay: 5ms"},
	"reset": {"trigger: bytes\nafter_bytes: 100\nto: both", "trigger: regex\npattern: '^GET'\ndrop: true",
		"trigger: time\nafter: 10ms\nto: client", "trigger: client-fin"},
	"syn-drop":      {"", "probability: 0.5", "count: 1"},
	"tfo-drop":      {"", "drop: [data, option]\nflow: true"},
	"synack-drop":   {"", "count: 1"},
	"ack-drop":      {"", "all_bare_acks: true\nprobability: 0.5"},
	"trace":         {"opportunities: [1, 1, 3, 7, 10]", "opportunities: [0, 2]\nmtu: 100"},
	"vanish":        {"", "trigger: bytes\nafter_bytes: 1\nalso_server: true"},
	"wscale-mangle": {"", "mode: strip\non: syn", "shift: 14"},
}

// fuzzProfiles parses, once, one single-behavior profile per registered
// behavior and parameter set, plus one profile with every behavior in a
// chain, so that each fuzz run only builds fresh instances from them.
func fuzzProfiles(f *testing.F) (single map[string][]*profiles.Profile, all []*profiles.Profile) {
	single = map[string][]*profiles.Profile{}
	var everything [][]string
	for _, name := range behaviors.Names() {
		sets := fuzzParams[name]
		if len(sets) == 0 {
			sets = []string{""}
		}
		var entries []string
		for i, params := range sets {
			entry := "  - type: " + name + "\n"
			for _, line := range strings.Split(params, "\n") {
				if line != "" {
					entry += "    " + line + "\n"
				}
			}
			p, err := profiles.Parse(fmt.Sprintf("fuzz-%s-%d.yaml", name, i), []byte("name: fuzz\nbehaviors:\n"+entry))
			if err == nil {
				_, err = p.Chain(1, nil)
			}
			if err != nil {
				f.Fatalf("behavior %s with parameters %q does not validate; give it sensible ones in fuzzParams: %v", name, params, err)
			}
			single[name] = append(single[name], p)
			entries = append(entries, entry)
		}
		everything = append(everything, entries)
	}
	// Chains of all behaviors, each with its i-th parameter set (wrapping),
	// rotated so that each behavior is sometimes early, before the drops.
	for i := 0; i < 4; i++ {
		var b strings.Builder
		b.WriteString("name: fuzz-all\nbehaviors:\n")
		for j := range everything {
			entries := everything[(j+i*len(everything)/4)%len(everything)]
			b.WriteString(entries[i%len(entries)])
		}
		p, err := profiles.Parse("fuzz-all.yaml", []byte(b.String()))
		if err != nil {
			f.Fatal(err)
		}
		all = append(all, p)
	}
	return single, all
}

// fuzzEnv is the engine's side of behaviors.Env, checking what behaviors
// inject.
type fuzzEnv struct {
	t        *testing.T
	name     string
	in       []byte // the packet the chain is running on
	now      int64
	injected int
}

func (e *fuzzEnv) Inject(pkt []byte, depart int64, note string) {
	e.injected++
	if depart < e.now {
		e.t.Fatalf("%s: injected %q departs at %d, before the packet's arrival %d", e.name, note, depart, e.now)
	}
	var p packet.Parsed
	p.Decode(pkt)
	if p.Version == 0 {
		e.t.Fatalf("%s: injected %q with an unreadable IP header: %x", e.name, note, pkt)
	}
	// Synthesized packets are well formed with correct checksums. A copy
	// of the packet itself (duplicate) may only carry what arrived.
	if bytes.Equal(pkt, e.in) {
		return
	}
	if p.Malformed != packet.OK && samePrefix(pkt, e.in) {
		return // a duplicate of a malformed packet, with its checksums fixed
	}
	if p.Fragment && p.Malformed != packet.OK && p.ChecksumsValid() {
		// A fragment (mtu) carries the transport header as it arrived: as
		// malformed as the packet it was cut from, no more.
		var in packet.Parsed
		in.Decode(e.in)
		if in.Malformed == p.Malformed {
			return
		}
	}
	if p.Malformed != packet.OK || !p.ChecksumsValid() {
		e.t.Fatalf("%s: injected %q is malformed (%v) or has bad checksums: %x", e.name, note, p.Malformed, pkt)
	}
}

// samePrefix reports whether a and b are one packet up to checksum bytes:
// equal length and at most 4 differing bytes.
func samePrefix(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	diff := 0
	for i := range a {
		if a[i] != b[i] {
			diff++
		}
	}
	return diff <= 4
}

func (e *fuzzEnv) Event(p *behaviors.Packet, note string) {}

// runChain passes every frame of data through chain as the engine does:
// decode, track in a small flow table (so flows are evicted and their
// state reused), run the chain, fix checksums of modified packets.
func runChain(t *testing.T, name string, chain *behaviors.Chain, data []byte) {
	flows := flow.NewTable(8, flow.Timeouts{Handshake: time.Second, Established: 5 * time.Second, Closed: time.Second})
	env := &fuzzEnv{t: t, name: name, now: 1}
	var scratch [2048]byte // the engine's per-worker scratch size
	var parsed packet.Parsed
	var bp behaviors.Packet
	buf := make([]byte, 0, 1<<16)
	fuzzframe.Each(data, func(step, _ uint8, pkt []byte) {
		env.now += fuzzframe.StepNs(step)
		buf = append(buf[:0], pkt...)
		parsed.Decode(buf)
		env.in = parsed.Buf // live: a duplicate copies it as earlier behaviors left it
		if parsed.Version == 0 {
			return // the engine drops these before any behavior
		}
		f, from := flows.Track(&parsed, env.now)
		bp.Reset(&parsed, f, from, env.now)
		v := chain.Run(&bp, env, scratch[:])
		flows.Expire(env.now, 8)
		if v == behaviors.Drop {
			return
		}
		if bp.Depart < bp.Now {
			t.Fatalf("%s: depart %d before now %d", name, bp.Depart, bp.Now)
		}
		if !bp.Modified() {
			if !bytes.Equal(bp.Buf, pkt[:len(bp.Buf)]) {
				t.Fatalf("%s: packet changed without MarkModified:\n%x\n%x", name, pkt, bp.Buf)
			}
			return
		}
		if bp.KeepsChecksums() {
			return // corrupt: wrong on purpose
		}
		parsed.FixChecksums()
		var q packet.Parsed
		q.Decode(bp.Buf)
		if q.Version == 0 || q.Malformed != parsed.Malformed {
			t.Fatalf("%s: modification broke the packet (%v, was %v): %x", name, q.Malformed, parsed.Malformed, bp.Buf)
		}
		if q.Malformed == packet.OK && !q.ChecksumsValid() {
			t.Fatalf("%s: modified packet has bad checksums after the fix: %x", name, bp.Buf)
		}
	})
	for _, st := range chain.Status() { // counters and Stats must not panic
		if st.Counters.Matched < st.Counters.Dropped {
			t.Fatalf("%s: %s dropped %d of %d matched", name, st.Type, st.Counters.Dropped, st.Counters.Matched)
		}
	}
}

// FuzzBehaviors runs every registered behavior, alone and all in one
// chain, over a sequence of fuzzed packets with increasing arrival times:
// no panic, no departure before arrival, no change without MarkModified,
// and every synthesized packet well formed with correct checksums.
//
//	go test ./behaviors -run '^$' -fuzz '^FuzzBehaviors$' -fuzztime 10m
func FuzzBehaviors(f *testing.F) {
	single, all := fuzzProfiles(f)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range single {
			if !yield(n) {
				return
			}
		}
	})
	for _, s := range seedConnections() {
		f.Add(s, uint64(1), uint8(0))
		f.Add(s, uint64(7), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, variant uint8) {
		// A behavior looping on some input would stall the fuzzer
		// silently; crash instead, so the input is recorded.
		defer time.AfterFunc(10*time.Second, func() { panic("FuzzBehaviors: one run took 10s") }).Stop()
		for _, name := range names {
			ps := single[name]
			chain, err := ps[int(variant)%len(ps)].Chain(seed, nil)
			if err != nil {
				t.Fatal(err)
			}
			runChain(t, name, chain, data)
		}
		chain, err := all[int(variant)%len(all)].Chain(seed, nil)
		if err != nil {
			t.Fatal(err)
		}
		runChain(t, "all", chain, data)
	})
}

// seedConnections are small built-in seeds (the corpus in testdata/fuzz
// holds the real captures): a TCP connection over IPv4 with data and a
// FIN handshake, the same over IPv6, and one with the options the
// option-rewriting behaviors act on (an ECN-setup SYN with window scale
// and a Fast Open cookie and data, its plain retransmission, a SYN-ACK
// with window scale, ACKs with SACK blocks).
func seedConnections() [][]byte {
	var out [][]byte
	for _, c := range [][2]string{{"198.18.0.1", "198.18.0.2"}, {"2001:db8::1", "2001:db8::2"}} {
		k := behaviors.NewTestConn(netip.MustParseAddr(c[0]), netip.MustParseAddr(c[1]), 1000, 0xfffff000)
		var b []byte
		add := func(step uint8, pkt []byte) { b = fuzzframe.Append(b, step, 0, nil, pkt) }
		add(0, k.Seg(true, packet.SYN, nil))
		add(10, k.Seg(false, packet.SYN|packet.ACK, nil))
		add(10, k.Seg(true, packet.ACK, nil))
		add(1, k.Seg(true, packet.ACK|packet.PSH, []byte("GET / HTTP/1.1\r\nHost: server\r\n\r\n")))
		add(20, k.Seg(false, packet.ACK|packet.PSH, bytes.Repeat([]byte("x"), 1000)))
		add(5, k.Seg(true, packet.ACK, nil))
		add(100, k.Seg(false, packet.ACK|packet.FIN, nil))
		add(5, k.Seg(true, packet.ACK|packet.FIN, nil))
		add(5, k.Seg(false, packet.ACK, nil))
		add(250, k.Seg(true, packet.ACK|packet.PSH, []byte("late")))
		out = append(out, b)
	}
	k := behaviors.NewTestConn(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 1000, 0xfffffff0)
	var b []byte
	add := func(step uint8, pkt []byte) { b = fuzzframe.Append(b, step, 0, nil, pkt) }
	tfo := append(behaviors.SYNOptions(7), packet.OptFastOpen, 10, 1, 2, 3, 4, 5, 6, 7, 8)
	add(0, behaviors.WithOptions(k.Seg(true, packet.SYN|packet.ECE|packet.CWR, []byte("GET / HTTP/1.1\r\n\r\n")), tfo...))
	k = behaviors.NewTestConn(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 1000, 0xfffffff0)
	add(100, behaviors.WithOptions(k.Seg(true, packet.SYN, nil), behaviors.SYNOptions(7)...))
	add(10, behaviors.WithOptions(k.Seg(false, packet.SYN|packet.ACK, nil), behaviors.SYNOptions(10)...))
	add(10, k.Seg(true, packet.ACK, nil))
	add(1, k.Seg(false, packet.ACK, bytes.Repeat([]byte("x"), 1000)))
	add(1, behaviors.WithOptions(k.Seg(true, packet.ACK, nil), behaviors.SACKOption(2000, 3000, 5, 6)...))
	add(1, behaviors.WithOptions(k.Seg(true, packet.ACK, nil), packet.OptSACK, 7, 1, 2, 3, 4, 5))
	out = append(out, b)
	return out
}
