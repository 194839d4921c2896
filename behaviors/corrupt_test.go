package behaviors

import (
	"bytes"
	"math"
	"math/bits"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

// flippedBits counts the bits in which a and b differ.
func flippedBits(a, b []byte) (n int) {
	for i := range a {
		n += bits.OnesCount8(a[i] ^ b[i])
	}
	return n
}

func TestCorrupt_IncorrectChecksumIsDroppedByReceiver(t *testing.T) {
	raw := udpPacket(client4, server4, 5000, 53, bytes.Repeat([]byte{0xa5}, 200))
	orig := bytes.Clone(raw)
	c := &Corrupt{P: 1}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	dp := newDirect(raw, 1)
	p := dp.at(0, true)
	c.Handle(p)
	// The IPv4 header's checksum is unchanged; UDP's sits in the
	// transport header, which is not counted here.
	n := flippedBits(orig[:p.L4Off], raw[:p.L4Off])
	m := flippedBits(orig[p.PayloadOff:], raw[p.PayloadOff:])
	if m != 1 || n != 0 {
		t.Fatalf("%d payload bits and %d header bits changed, want 1 and 0", m, n)
	}
	if !p.Modified() || !p.KeepsChecksums() {
		t.Fatal("not marked modified with checksums kept")
	}
	if dp.parsed.ChecksumsValid() {
		t.Fatal("checksum still valid: the receiver would accept the corruption")
	}
}

func TestCorrupt_IncorrectIsWrongByExactlyTheBit(t *testing.T) {
	// A partial (offload) checksum read from TUN is completed first, so
	// undoing the flipped bit gives a valid packet again.
	raw := udpPacket(client4, server4, 5000, 53, bytes.Repeat([]byte{0x5a}, 64))
	orig := bytes.Clone(raw)
	raw[20+6], raw[20+7] = 0x12, 0x34
	dp := newDirect(raw, 1)
	p := dp.at(0, true)
	(&Corrupt{P: 1}).Handle(p)
	for i := p.PayloadOff; i < len(raw); i++ {
		if raw[i] != orig[i] {
			raw[i] = orig[i]
		}
	}
	if !dp.parsed.ChecksumsValid() {
		t.Fatal("with the bit undone the checksum is not valid")
	}
}

func TestCorrupt_CorrectChecksumReachesTheApplication(t *testing.T) {
	h := newHarness(t, "corrupt", &Corrupt{P: 1, Checksum: "correct"}, Match{})
	k := newConn(client4, server4, 1000, 5000)
	for _, seg := range k.handshake() {
		h.send(seg) // no payload: untouched
	}
	seg := dataSeg(k, true, 1000)
	orig := bytes.Clone(seg)
	h.run(seg, h.now)
	p, parsed := &h.p, &h.parsed
	if !p.Modified() || p.KeepsChecksums() {
		t.Fatal("want modified, checksums to be fixed by the engine")
	}
	parsed.FixChecksums() // what the engine does for a modified packet
	if !parsed.ChecksumsValid() {
		t.Fatal("checksums not valid after the engine's fix")
	}
	if m := flippedBits(orig[parsed.PayloadOff:], seg[parsed.PayloadOff:]); m != 1 {
		t.Fatalf("%d payload bits changed, want 1", m)
	}
}

func TestCorrupt_NoPayloadUntouched(t *testing.T) {
	k := newConn(client4, server4, 1000, 5000)
	seg := k.seg(true, packet.ACK, nil)
	orig := bytes.Clone(seg)
	dp := newDirect(seg, 1)
	p := dp.at(0, true)
	(&Corrupt{P: 1}).Handle(p)
	if !bytes.Equal(seg, orig) || p.Modified() {
		t.Fatal("bare ACK was changed")
	}
}

func TestCorrupt_Probability(t *testing.T) {
	c := &Corrupt{P: 0.2, Checksum: "correct"}
	c.Validate()
	dp := newDirect(udpPacket(client4, server4, 1, 2, make([]byte, 100)), 1)
	const n = 50000
	hit := 0
	for i := 0; i < n; i++ {
		p := dp.at(int64(i), true)
		c.Handle(p)
		if p.Modified() {
			hit++
		}
	}
	near(t, "corrupted fraction", float64(hit)/n, 0.2, 5*math.Sqrt(0.16/n))
}

func TestCorrupt_Validate(t *testing.T) {
	for _, c := range []*Corrupt{{}, {P: 0.1, Checksum: "maybe"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func BenchmarkCorrupt_Handle(b *testing.B) {
	c := &Corrupt{P: 1}
	c.Validate()
	dp := newDirect(udpPacket(client4, server4, 1, 2, make([]byte, 1400)), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Handle(dp.at(int64(i), true))
	}
}
