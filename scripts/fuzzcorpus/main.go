// Command fuzzcorpus writes the seed corpora of faultbox's packet fuzz
// targets (FuzzDecode, FuzzTrack, FuzzSplit, FuzzBehaviors, FuzzEngine) into
// their packages' testdata/fuzz directories, from a real capture plus
// hand-made hostile packets. It was run once; the corpora it wrote are
// checked in, and `go test -fuzz` adds to them.
//
// The capture is of a lab over both IP versions, with 3 % downstream TCP loss
// so that the client's ACKs carry SACK blocks beside MSS, window scale and
// timestamps, and with ICMP echo and ICMP errors (UDP to a closed port):
//
//	faultbox lab up --name fzcap --profile lossy.yaml --capture lab-curl.pcapng
//	faultbox lab exec --name fzcap server -- python3 -m http.server --bind :: 80 &
//	faultbox lab exec --name fzcap client -- curl -4 http://server/blob   # 150 kB, and -6
//	faultbox lab exec --name fzcap client -- curl -4 http://server/small  # and -6
//	faultbox lab exec --name fzcap client -- ping -c1 198.18.0.2          # and 2001:db8::2
//	(a UDP datagram to 198.18.0.2:9999 and [2001:db8::2]:9999)
//	faultbox lab down --name fzcap
//
// lossy.yaml is one behavior: loss, match {direction: downstream, protocol:
// tcp}, p: 0.03. Then, from the repository root:
//
//	go run ./scripts/fuzzcorpus -pcapng lab-curl.pcapng,lab-curl-passthrough.pcapng
//
// The second capture is the same fetches (without ping and UDP) in a
// passthrough lab: there super-packets are read and forwarded whole, so it
// holds them as the kernel hands them over (the first holds them split).
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/faultbox/faultbox/internal/fuzzframe"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/tun"
)

var (
	client4 = netip.MustParseAddr("198.18.0.1")
	server4 = netip.MustParseAddr("198.18.0.2")
	client6 = netip.MustParseAddr("2001:db8::1")
	server6 = netip.MustParseAddr("2001:db8::2")
)

// captured is one packet as the device read it from a port.
type captured struct {
	data       []byte
	t          time.Time
	fromServer bool
}

func main() {
	pcaps := flag.String("pcapng", "", "the lab captures, comma-separated")
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	if *pcaps == "" {
		log.Fatal("give -pcapng")
	}
	w := &writer{root: *root}
	hand := handMade()
	var all []captured
	for i, pcap := range strings.Split(*pcaps, ",") {
		pkts, err := readIngress(pcap)
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("%s: %d packets read by the device", pcap, len(pkts))
		all = append(all, pkts...)
		w.sequences(fmt.Sprintf("capture%d", i), pkts, hand)
	}
	w.decode(all, hand)
	w.track(all, hand)
	w.split(all)
	log.Printf("wrote %d corpus files", w.n)
}

// readIngress returns the packets of the capture as the device read them
// (each packet is also recorded as written, on the other port).
func readIngress(path string) ([]captured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return nil, err
	}
	var out []captured
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if opts.Flags != nil && opts.Flags.Direction == pcapgo.NgEpbFlagDirectionOutbound {
			continue
		}
		var p packet.Parsed
		p.Decode(data)
		out = append(out, captured{data: append([]byte(nil), data...), t: ci.Timestamp,
			fromServer: p.Src == server4 || p.Src == server6})
	}
}

// writer writes corpus files in the format of `go test fuzz v1`.
type writer struct {
	root string
	n    int
}

func (w *writer) write(pkg, target, name string, vals ...any) {
	b := []byte("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case uint8:
			b = fmt.Appendf(b, "byte(%q)\n", v)
		case bool, uint16, uint64:
			b = fmt.Appendf(b, "%T(%v)\n", v, v)
		default:
			panic(fmt.Sprintf("type %T", v))
		}
	}
	dir := filepath.Join(w.root, pkg, "testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		log.Fatal(err)
	}
	w.n++
}

// shape is what makes a captured packet different for a decoder: version,
// protocol, flags, header and option lengths, size class.
func shape(b []byte) string {
	var p packet.Parsed
	p.Decode(b)
	size := len(b)
	switch {
	case size > 1500:
		size = 9999
	case size > 200:
		size = 1000
	}
	return fmt.Sprintf("%d/%d/%x/%d/%d/%v", p.Version, p.Proto, uint8(p.Flags), len(p.TCPOptions()), size, p.Malformed)
}

// decode: one file per distinct captured packet shape, super-packets cut to
// three segments (with and without their length fields fixed), and every
// hand-made packet.
func (w *writer) decode(pkts []captured, hand []named) {
	seen := map[string]bool{}
	for i, c := range pkts {
		s := shape(c.data)
		if seen[s] {
			continue
		}
		seen[s] = true
		data := c.data
		if len(data) > 1500 {
			w.write("internal/packet", "FuzzDecode", fmt.Sprintf("capture-%03d-super-cut", i), data[:4400])
			data = trimSuper(data, 3)
		}
		w.write("internal/packet", "FuzzDecode", fmt.Sprintf("capture-%03d", i), data)
	}
	for _, h := range hand {
		w.write("internal/packet", "FuzzDecode", "hand-"+h.name, h.data)
	}
}

// track: every captured TCP shape and hand-made packet on its own (chunks
// 0: FuzzTrack reads the whole input as one packet, three times).
func (w *writer) track(pkts []captured, hand []named) {
	seen := map[string]bool{}
	for i, c := range pkts {
		s := shape(c.data)
		if seen[s] || len(c.data) > 1500 {
			continue
		}
		seen[s] = true
		w.write("internal/flow", "FuzzTrack", fmt.Sprintf("capture-%03d", i), c.data, uint8(0))
	}
	for _, h := range hand {
		w.write("internal/flow", "FuzzTrack", "hand-"+h.name, h.data, uint8(0))
	}
}

// split: the captured super-packets cut to three or four segments, with the
// offload descriptor the kernel gives such packets.
func (w *writer) split(pkts []captured) {
	k := 0
	for i, c := range pkts {
		if len(c.data) <= 1500 || k >= 6 {
			continue
		}
		k++
		data := trimSuper(c.data, 3+k%2)
		o := superOffload(data)
		w.write("tun", "FuzzSplit", fmt.Sprintf("capture-%03d", i), data, o.GSOType, o.NeedsCsum, o.HdrLen, o.GSOSize, o.CsumStart, o.CsumOffset)
	}
}

// trimSuper cuts a super-packet to n segments of its MSS and fixes its
// IP length field.
func trimSuper(data []byte, n int) []byte {
	var p packet.Parsed
	p.Decode(data)
	mss := 1500 - p.PayloadOff
	end := min(len(data), p.PayloadOff+n*mss)
	out := append([]byte(nil), data[:end]...)
	if p.Version == 4 {
		binary.BigEndian.PutUint16(out[2:], uint16(end))
	} else {
		binary.BigEndian.PutUint16(out[4:], uint16(end-40))
	}
	return out
}

// superOffload is the descriptor of a TCP super-packet read from TUN: GSO
// by version, the checksum left to finish, segments of one MTU.
func superOffload(data []byte) tun.Offload {
	var p packet.Parsed
	p.Decode(data)
	o := tun.Offload{GSOType: tun.GSOTCPv4, NeedsCsum: true, HdrLen: uint16(p.PayloadOff),
		GSOSize: uint16(1500 - p.PayloadOff), CsumStart: uint16(p.L4Off), CsumOffset: 16}
	if p.Version == 6 {
		o.GSOType = tun.GSOTCPv6
	}
	return o
}

// sequences: for FuzzBehaviors and FuzzEngine, the captured connections
// packet by packet with their timing (long transfers cut to their first
// 14 and last 8 packets), the non-TCP packets, and a connection with hand-made
// packets mixed in.
func (w *writer) sequences(prefix string, pkts []captured, hand []named) {
	flows := map[string][]captured{}
	var order []string
	var other []captured
	for _, c := range pkts {
		var p packet.Parsed
		p.Decode(c.data)
		if !p.IsTCP() {
			other = append(other, c)
			continue
		}
		lo, hi := netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)
		if c.fromServer {
			lo, hi = hi, lo
		}
		k := lo.String() + hi.String()
		if _, ok := flows[k]; !ok {
			order = append(order, k)
		}
		flows[k] = append(flows[k], c)
	}
	for i, k := range order {
		seq := flows[k]
		if len(seq) > 24 {
			seq = append(append([]captured(nil), seq[:14]...), seq[len(seq)-8:]...)
		}
		w.sequence(fmt.Sprintf("%s-conn%d", prefix, i), seq)
		if i == 0 {
			var mixed []captured
			for j, c := range seq {
				mixed = append(mixed, c)
				if j < len(hand) {
					mixed = append(mixed, captured{data: hand[j].data, t: c.t})
				}
			}
			mixed = append(mixed, seq[len(seq)/2:]...)
			for _, h := range hand[min(len(seq), len(hand)):] {
				mixed = append(mixed, captured{data: h.data, t: seq[len(seq)-1].t})
			}
			w.sequence(prefix+"-conn0-with-hand-made", mixed)
		}
	}
	if len(other) > 0 {
		w.sequence(prefix+"-icmp-udp", other)
	}
}

// sequence writes one packet sequence for both targets: for FuzzBehaviors
// with super-packets split as the engine splits them for per-segment
// behaviors, for FuzzEngine as read, with their offload descriptors.
func (w *writer) sequence(name string, seq []captured) {
	var beh, eng []byte
	segs := make([]tun.Packet, 64)
	for i := range segs {
		segs[i].Buf = make([]byte, tun.BufSize)
	}
	prev := seq[0].t
	for _, c := range seq {
		st := fuzzframe.Step(c.t.Sub(prev))
		prev = c.t
		var flags uint8
		if c.fromServer {
			flags = fuzzframe.FromServer
		}
		data := c.data
		if len(data) <= 1500 {
			beh = fuzzframe.Append(beh, st, flags, nil, data)
			eng = fuzzframe.Append(eng, st, flags, nil, data)
			continue
		}
		data = trimSuper(data, 4)
		o := superOffload(data)
		eng = fuzzframe.Append(eng, st, flags|o.GSOType<<fuzzframe.GSOShift|fuzzframe.NeedsCsum, &o, data)
		p := tun.Packet{Buf: make([]byte, tun.Headroom+len(data)), Off: tun.Headroom, Len: len(data), Offload: o}
		copy(p.Data(), data)
		n, err := tun.Split(&p, segs)
		if err != nil {
			log.Fatalf("%s: split: %v", name, err)
		}
		for i := 0; i < n; i++ {
			beh = fuzzframe.Append(beh, st, flags, nil, segs[i].Data())
			st = 0
		}
	}
	for v := range 2 {
		w.write("behaviors", "FuzzBehaviors", fmt.Sprintf("%s-v%d", name, v), beh, uint64(v+1), uint8(v))
	}
	// Engine variants: chain index << 2 | which ports lack offloads; each
	// chain once.
	for _, v := range []uint8{0, 6, 9, 12, 19} {
		w.write("internal/engine", "FuzzEngine", fmt.Sprintf("%s-v%d", name, v), eng, uint64(v+1), v)
	}
}
