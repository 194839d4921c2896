package behaviors

import (
	"errors"
	"slices"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

func newWScaleMangle(mut func(*WScaleMangle)) *WScaleMangle {
	b, _ := New("wscale-mangle")
	w := b.(*WScaleMangle)
	if mut != nil {
		mut(w)
	}
	return w
}

func wscaleOf(seg []byte) int {
	var p packet.Parsed
	p.Decode(seg)
	return p.WindowScale()
}

func TestWScaleMangle_RewritesTheSYNACKOnly(t *testing.T) {
	h := newHarness(t, "wscale-mangle", newWScaleMangle(nil), Match{})
	k := newConn(client4, server4, 1000, 5000)
	syn := withOptions(k.seg(true, packet.SYN, nil), synOptions(7)...)
	synack := withOptions(k.seg(false, packet.SYN|packet.ACK, nil), synOptions(10)...)
	h.send(syn)
	if wscaleOf(syn) != 7 || h.p.Modified() {
		t.Errorf("the SYN's window scale became %d", wscaleOf(syn))
	}
	h.send(synack)
	if wscaleOf(synack) != 0 || !h.p.Modified() || h.p.Note == "" {
		t.Errorf("the SYN-ACK's window scale is %d (modified %v, note %q), want 0", wscaleOf(synack), h.p.Modified(), h.p.Note)
	}
	data := withOptions(k.seg(false, packet.ACK, []byte("x")), synOptions(10)...) // an option where it means nothing
	h.send(data)
	if wscaleOf(data) != 10 {
		t.Error("a segment other than the SYN-ACK was mangled")
	}
}

func TestWScaleMangle_StripKeepsTheLengthAndOtherOptions(t *testing.T) {
	h := newHarness(t, "wscale-mangle", newWScaleMangle(func(w *WScaleMangle) { w.Mode = "strip"; w.On = "syn" }), Match{})
	k := newConn(client6, server6, 1000, 5000)
	syn := withOptions(k.seg(true, packet.SYN, nil), synOptions(7)...)
	n := len(syn)
	h.send(syn)
	var p packet.Parsed
	p.Decode(syn)
	if len(syn) != n || p.WindowScale() != -1 {
		t.Fatalf("after strip: %d bytes (was %d), window scale %d", len(syn), n, p.WindowScale())
	}
	if off, l, ok := p.TCPOption(packet.OptMSS); !ok || l != 4 || !slices.Equal(syn[off+2:off+4], []byte{0x05, 0xb4}) {
		t.Error("the MSS option did not survive")
	}
	if _, _, ok := p.TCPOption(packet.OptTimestamps); !ok {
		t.Error("the timestamps option did not survive")
	}
}

func TestWScaleMangle_SegmentWithoutTheOptionIsCounted(t *testing.T) {
	w := newWScaleMangle(func(w *WScaleMangle) { w.Shift = 14 })
	h := newHarness(t, "wscale-mangle", w, Match{})
	k := newConn(client4, server4, 1000, 5000)
	h.send(k.seg(true, packet.SYN, nil))
	h.send(k.seg(false, packet.SYN|packet.ACK, nil)) // no options at all
	if h.p.Modified() || w.Stats()["without_option"] != 1 || w.Stats()["mangled"] != 0 {
		t.Errorf("modified %v, stats %v", h.p.Modified(), w.Stats())
	}
}

func TestWScaleMangle_Validate(t *testing.T) {
	for field, mut := range map[string]func(*WScaleMangle){
		"on":    func(w *WScaleMangle) { w.On = "ack" },
		"mode":  func(w *WScaleMangle) { w.Mode = "zero" },
		"shift": func(w *WScaleMangle) { w.Shift = 15 },
	} {
		var fe *FieldError
		if err := newWScaleMangle(mut).Validate(); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
	if err := newWScaleMangle(func(w *WScaleMangle) { w.Shift = -1 }).Validate(); err == nil {
		t.Error("shift -1 accepted")
	}
}

func BenchmarkWScaleMangle_Established(b *testing.B) {
	r := newBenchRig(b, "wscale-mangle", newWScaleMangle(nil))
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}
