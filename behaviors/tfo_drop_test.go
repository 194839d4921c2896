package behaviors

import (
	"errors"
	"testing"

	"github.com/faultbox/faultbox/internal/packet"
)

func newTFODrop(mut func(*TFODrop)) *TFODrop {
	b, _ := New("tfo-drop")
	d := b.(*TFODrop)
	if mut != nil {
		mut(d)
	}
	return d
}

// cookie is a Fast Open option with an 8-byte cookie; cookieRequest is an
// empty one (RFC 7413 section 4.1.1).
var (
	cookie        = []byte{packet.OptFastOpen, 10, 1, 2, 3, 4, 5, 6, 7, 8}
	cookieRequest = []byte{packet.OptFastOpen, 2}
)

// tfoSYNs returns, for one tuple, a SYN with a cookie and data, its plain
// retransmission, and the SYN-ACK to it.
func tfoSYNs() (synData, plain, synack []byte) {
	k := newConn(client4, server4, 1000, 5000)
	synData = withOptions(k.seg(true, packet.SYN, []byte("GET / HTTP/1.1\r\n\r\n")), cookie...)
	k.cseq = 1000
	plain = k.seg(true, packet.SYN, nil)
	synack = k.seg(false, packet.SYN|packet.ACK, nil)
	return synData, plain, synack
}

func TestTFODrop_DataDropsSYNDataOnly(t *testing.T) {
	h := newHarness(t, "tfo-drop", newTFODrop(nil), Match{})
	synData, plain, synack := tfoSYNs()
	got := verdicts(h, synData, plain, synack)
	if !sameVerdicts(got, []Verdict{Drop, Pass, Pass}) {
		t.Fatalf("verdicts %v: the SYN with data dropped, its plain retransmission passed", got)
	}
	k := newConn(client4, server4, 7000, 5000)
	k.cport = 40001
	if v, _ := h.send(withOptions(k.seg(true, packet.SYN, nil), cookieRequest...)); v != Pass {
		t.Error("a cookie request without data was dropped")
	}
}

func TestTFODrop_OptionDropsCookieRequestsAndExperimentalForm(t *testing.T) {
	h := newHarness(t, "tfo-drop", newTFODrop(func(d *TFODrop) { d.Drop = []string{"option"} }), Match{})
	for i, opt := range [][]byte{cookieRequest, cookie, {packet.OptExperimental, 4, 0xf9, 0x89}} {
		k := newConn(client4, server4, 1000, 5000)
		k.cport = 40000 + uint16(i)
		if v, _ := h.send(withOptions(k.seg(true, packet.SYN, nil), opt...)); v != Drop {
			t.Errorf("SYN with % x passed", opt)
		}
	}
	k := newConn(client4, server4, 1000, 5000)
	k.cport = 41000
	if v, _ := h.send(k.seg(true, packet.SYN, []byte("data, no option"))); v != Pass {
		t.Error("a SYN with data and no option was dropped by drop: [option]")
	}
}

func TestTFODrop_FlowBlackholesTheRestUntilANewConnection(t *testing.T) {
	d := newTFODrop(func(d *TFODrop) { d.Flow = true })
	h := newHarness(t, "tfo-drop", d, Match{})
	synData, plain, synack := tfoSYNs()
	got := verdicts(h, synData, plain, append([]byte(nil), plain...), synack)
	if !sameVerdicts(got, []Verdict{Drop, Drop, Drop, Drop}) {
		t.Fatalf("verdicts %v: the whole flow is dropped", got)
	}
	k := newConn(client4, server4, 90000, 5000) // same tuple, new ISN
	if v, _ := h.send(k.seg(true, packet.SYN, nil)); v != Pass {
		t.Error("a new connection on the tuple was dropped")
	}
	if st := d.Stats(); st["syns_dropped"] != 1 || st["flow_dropped"] != 3 {
		t.Errorf("stats %v", st)
	}
}

func TestTFODrop_Validate(t *testing.T) {
	for _, drop := range [][]string{{}, {"cookie"}} {
		var fe *FieldError
		if err := newTFODrop(func(d *TFODrop) { d.Drop = drop }).Validate(); !errors.As(err, &fe) || fe.Field != "drop" {
			t.Errorf("drop %q: %v", drop, err)
		}
	}
	if err := newTFODrop(func(d *TFODrop) { d.Drop = []string{"Data", "option"} }).Validate(); err != nil {
		t.Error(err)
	}
}

func BenchmarkTFODrop_Established(b *testing.B) {
	r := newBenchRig(b, "tfo-drop", newTFODrop(func(d *TFODrop) { d.Flow = true }))
	up, down := benchEstablished(r)
	r.loop(b, up, down)
}
