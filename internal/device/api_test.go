package device

import (
	"context"
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
	"github.com/faultbox/faultbox/client"
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
// control API, until the test ends; api is the TCP address it also
// serves, if any.
func startMemDevice(t *testing.T, name, api string) (*Device, *memPlacement) {
	t.Helper()
	return startMemDeviceState(t, State{Name: name, API: api})
}

// startMemDeviceState is startMemDevice for a state of the test's (its
// name and API fields; the rest as startMemDevice's).
func startMemDeviceState(t *testing.T, st State) (*Device, *memPlacement) {
	t.Helper()
	name := st.Name
	withRunDir(t)
	if err := os.Mkdir(Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	st.Kind, st.Profile, st.Seed, st.MTU = KindLab, "passthrough", 3, 1500
	if err := WriteState(&st); err != nil {
		t.Fatal(err)
	}
	m := &memPlacement{}
	d, err := newDevice(name, func(*State) (Placement, error) { return m, nil }, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.setup(); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(d.state); err != nil { // names this process as the device
		t.Fatal(err)
	}
	d.serve()
	t.Cleanup(d.closePorts)
	return d, m
}

func TestDevice_StatusApplyEventsShutdownOverTheAPI(t *testing.T) {
	d, m := startMemDevice(t, "mem", "")
	st, err := GetStatus("mem")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "mem" || st.Kind != "lab" || st.Placement != "two memory ports" || st.PID != os.Getpid() ||
		len(st.Ports) != 2 || st.Namespaces["b"] != "ns-b" || st.Profile != "passthrough" || st.Seed != 3 || st.API != "" {
		t.Errorf("status %+v", st)
	}
	if fi, err := os.Stat(socketPath("mem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v %v, want mode 0600", fi, err)
	}
	// The start-up check's SYN is not counted: the profile starts at zero.
	if st.Counters.In != 0 || st.Flows.Created != 0 {
		t.Errorf("counters after start-up %+v %+v", st.Counters, st.Flows)
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
	if rec, err := ReadState("mem"); err != nil || rec.Profile != logged || rec.Seed != 77 {
		t.Errorf("state.json after apply: %+v %v", rec, err)
	}
	if !m.send(packet.SYN) {
		t.Fatal("a SYN did not cross")
	}
	evs, next, err := Events("mem", 0)
	if err != nil || len(evs) != 1 || next != 1 || evs[0].DstPort != 80 || !strings.Contains(evs[0].Text, "log") {
		t.Errorf("events %+v next %d %v: want the one SYN", evs, next, err)
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

	if err := shutdown("mem"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.shutdown:
	case <-time.After(5 * time.Second):
		t.Error("a shutdown request did not stop the device")
	}
}

// On TCP the API needs the token the device keeps in api.token (0600); a
// remote address needs to be asked for.
func TestDevice_APIOnTCPWithToken(t *testing.T) {
	startMemDevice(t, "tcp", "127.0.0.1:0")
	st, err := GetStatus("tcp")
	if err != nil || !strings.HasPrefix(st.API, "127.0.0.1:") {
		t.Fatalf("status: api %q, %v", st.API, err)
	}
	fi, err := os.Stat(TokenPath("tcp"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("api.token: %v %v, want mode 0600", fi, err)
	}
	token, _ := os.ReadFile(TokenPath("tcp"))
	ctx := context.Background()
	if _, err := client.DialTCP(st.API, strings.TrimSpace(string(token))).Status(ctx); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	var ce *client.Error
	if _, err := client.DialTCP(st.API, "guess").Status(ctx); !errors.As(err, &ce) || ce.StatusCode != 401 {
		t.Fatalf("with a wrong token: %v, want 401", err)
	}
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:7070", false, true}, {"[::1]:7070", false, true}, {"localhost:7070", false, true},
		{"0.0.0.0:7070", false, false}, {":7070", false, false}, {"198.18.0.9:7070", false, false},
		{"0.0.0.0:7070", true, true}, {"127.0.0.1", false, false},
	} {
		if err := CheckAPIAddr(c.addr, c.remote); (err == nil) != c.ok || (err != nil && !IsInputError(err)) {
			t.Errorf("CheckAPIAddr(%q, %v) = %v", c.addr, c.remote, err)
		}
	}
}

// A token file (a Kubernetes Secret's) gives the bearer token: no api.token
// is made, and a file that does not hold a token is a clear error.
func TestDevice_APITokenFromFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("0123456789abcdef-from-a-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startMemDeviceState(t, State{Name: "tokenfile", API: "127.0.0.1:0", APITokenFile: file})
	st, err := GetStatus("tokenfile")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client.DialTCP(st.API, "0123456789abcdef-from-a-secret").Status(ctx); err != nil {
		t.Fatalf("with the file's token: %v", err)
	}
	var ce *client.Error
	if _, err := client.DialTCP(st.API, "guess").Status(ctx); !errors.As(err, &ce) || ce.StatusCode != 401 {
		t.Fatalf("with a wrong token: %v, want 401", err)
	}
	if _, err := os.Stat(TokenPath("tokenfile")); err == nil {
		t.Errorf("%s made although the token came from a file", TokenPath("tokenfile"))
	}
	for content, ok := range map[string]bool{
		"0123456789abcdef\n": true, "  0123456789abcdef  ": true,
		"": false, "short\n": false, "0123456789 abcdef\n": false, "0123456789abcdef\nsecond line\n": false,
	} {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadAPIToken(file); (err == nil) != ok || (err != nil && !IsInputError(err)) {
			t.Errorf("ReadAPIToken(%q) = %v, want ok %v", content, err, ok)
		}
	}
	if _, err := ReadAPIToken(file + ".missing"); err == nil || !IsInputError(err) {
		t.Errorf("ReadAPIToken of a missing file = %v, want an input error", err)
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
