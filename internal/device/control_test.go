package device

import (
	"errors"
	"io"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/profiles"
	"github.com/faultbox/faultbox/tun"
)

// memPlacement places two in-memory ports, a (198.18.0.1) and b
// (198.18.0.2): the device's whole life without root or a kernel.
type memPlacement struct {
	a, b    *tun.MemPort
	removed bool
}

var addrA, addrB = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")

func (m *memPlacement) Place(*log.Logger) ([]Port, error) {
	m.a, m.b = tun.NewMemPort("a", 1500, false), tun.NewMemPort("b", 1500, false)
	return []Port{
		{Name: "a", Namespace: "ns-a", Dev: m.a, Prefixes: []netip.Prefix{netip.PrefixFrom(addrA, 32)}},
		{Name: "b", Namespace: "ns-b", Dev: m.b, Prefixes: []netip.Prefix{netip.PrefixFrom(addrB, 32)}},
	}, nil
}

// Check sends one SYN from a to b.
func (m *memPlacement) Check(*log.Logger) error {
	if !m.send(packet.SYN) {
		return errors.New("the SYN did not cross")
	}
	return nil
}

// send sends a segment from a to b and reports whether it arrived.
func (m *memPlacement) send(flags packet.TCPFlags) bool {
	b := make([]byte, 60)
	n := packet.BuildTCP(b, packet.TCPSpec{Src: addrA, Dst: addrB, SrcPort: 40000, DstPort: 80, Flags: flags, Window: 1000})
	m.a.Send(b[:n], tun.Offload{})
	_, _, ok := m.b.Recv(5 * time.Second)
	return ok
}

func (m *memPlacement) Resolver() behaviors.Resolver { return profiles.DefaultResolver }
func (m *memPlacement) Describe() string             { return "two memory ports" }
func (m *memPlacement) Remove(*log.Logger)           { m.removed = true }

// startMemDevice runs a device called name on memory ports, serving its
// control socket, until the test ends.
func startMemDevice(t *testing.T, name string) (*Device, *memPlacement) {
	t.Helper()
	withRunDir(t)
	if err := os.Mkdir(Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(&State{Name: name, Kind: KindLab, Profile: "passthrough", Seed: 3, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	m := &memPlacement{}
	d, err := newDevice(name, func(*State, func() error) (Placement, error) { return m, nil }, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.setup(); err != nil {
		t.Fatal(err)
	}
	if err := d.saveState(); err != nil { // names this process as the device
		t.Fatal(err)
	}
	go d.serveControl()
	t.Cleanup(d.closePorts)
	return d, m
}

func TestDevice_StatusApplyEventsShutdownOverTheControlSocket(t *testing.T) {
	d, m := startMemDevice(t, "mem")
	st, err := GetStatus("mem")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "mem" || st.Kind != KindLab || st.Placement != "two memory ports" || st.PID != os.Getpid() ||
		len(st.Ports) != 2 || st.Namespaces["b"] != "ns-b" || st.Profile != "passthrough" || st.Seed != 3 {
		t.Errorf("status %+v", st)
	}
	if fi, err := os.Stat(socketPath("mem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v %v, want mode 0600", fi, err)
	}

	// A file travels as text: the device opens no file a client names.
	logged := filepath.Join(t.TempDir(), "log80.yaml")
	os.WriteFile(logged, []byte("name: log80\nseed: 77\nbehaviors:\n  - type: log\n    match: {port: 80, tcp_flags: [syn]}\n"), 0o644)
	if name, seed, err := Apply("mem", logged, nil); err != nil || name != "log80" || seed != 77 {
		t.Fatalf("apply %s: %s %d %v", logged, name, seed, err)
	}
	if st, _ := GetStatus("mem"); st.Source != logged || st.Seed != 77 {
		t.Errorf("after apply: source %s seed %d", st.Source, st.Seed)
	}
	if !m.send(packet.SYN) {
		t.Fatal("a SYN did not cross")
	}
	evs, next, err := Events("mem", 0)
	if err != nil || len(evs) != 1 || next != 1 || evs[0].DstPort != 80 || !strings.Contains(evs[0].Text, "log") {
		t.Errorf("events %+v next %d %v: want the one SYN", evs, next, err)
	}

	if _, err := call("mem", request{Op: "apply", Profile: logged}, 5*time.Second); !IsInputError(err) {
		t.Errorf("apply of a file named without its text: %v, want an input error", err)
	}
	if _, _, err := Apply("mem", "no-such-profile", nil); !IsInputError(err) {
		t.Errorf("apply of an unknown profile: %v, want an input error", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: bad\nbehaviors:\n  - type: drop\n    match: {from: nohost}\n"), 0o644)
	if _, _, err := Apply("mem", bad, nil); !IsInputError(err) || !strings.Contains(err.Error(), "nohost") {
		t.Errorf("apply of a profile naming an unknown host: %v, want an input error", err)
	}
	if st, _ := GetStatus("mem"); st.Profile != "log80" {
		t.Errorf("a refused apply changed the profile to %s", st.Profile)
	}
	if _, err := call("mem", request{Op: "nonsense"}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "unknown request") {
		t.Errorf("unknown request: %v", err)
	}

	if _, err := call("mem", request{Op: "shutdown"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.shutdown:
	case <-time.After(5 * time.Second):
		t.Error("a shutdown request did not stop the device")
	}
}

func TestRunning_SaysWhatIsWrong(t *testing.T) {
	withRunDir(t)
	if _, err := Running("nothere"); !IsInputError(err) || !strings.Contains(err.Error(), "is not up") {
		t.Errorf("Running of no device: %v", err)
	}
	os.Mkdir(Dir("dead"), 0o700)
	WriteState(&State{Name: "dead", Kind: KindAttach, Device: Proc{PID: os.Getpid(), Start: 1}})
	if _, err := Running("dead"); !IsInputError(err) || !strings.Contains(err.Error(), "faultbox detach --name dead") {
		t.Errorf("Running of a dead attach: %v, want the command that removes it", err)
	}
}
