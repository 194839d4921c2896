package device_test

import (
	"context"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/api/apitest"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/packet"
)

// startMemDevice runs a device called name in memory (apitest), serving
// its control API, until the test ends; api is the TCP address it also
// serves, if any.
func startMemDevice(t *testing.T, name, api string) *apitest.Device {
	t.Helper()
	return startMemDeviceState(t, device.State{Name: name, API: api})
}

// startMemDeviceState is startMemDevice for a state of the test's (its
// name and API fields).
func startMemDeviceState(t *testing.T, st device.State) *apitest.Device {
	t.Helper()
	d, err := apitest.StartState(t.TempDir(), st, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// crosses has the client send a segment with flags to the server and
// reports whether it arrived.
func crosses(d *apitest.Device, flags packet.TCPFlags) bool {
	d.Send(apitest.Segment(true, 40000, 1, flags, 0))
	_, ok := d.Receive(5 * time.Second)
	return ok
}

func TestDevice_StatusApplyEventsShutdownOverTheAPI(t *testing.T) {
	d := startMemDevice(t, "mem", "")
	st, err := device.GetStatus("mem")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "mem" || st.Kind != string(apitest.Kind) || st.Placement != "two memory ports" || st.PID != os.Getpid() ||
		len(st.Ports) != 2 || st.Namespaces["server"] != "memory" || st.Profile != "passthrough" || st.Seed != 3 || st.API != "" {
		t.Errorf("status %+v", st)
	}
	if fi, err := os.Stat(d.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v %v, want mode 0600", fi, err)
	}
	// The start-up check's SYN is not counted: the profile starts at zero.
	if st.Counters.In != 0 || st.Flows.Created != 0 {
		t.Errorf("counters after start-up %+v %+v", st.Counters, st.Flows)
	}

	// A file travels as text: the device opens no file a client names.
	logged := filepath.Join(t.TempDir(), "log80.yaml")
	os.WriteFile(logged, []byte("name: log80\nseed: 77\nbehaviors:\n  - type: log\n    match: {port: 80, tcp_flags: [syn]}\n"), 0o644)
	if name, seed, err := device.Apply("mem", logged, nil); err != nil || name != "log80" || seed != 77 {
		t.Fatalf("apply %s: %s %d %v", logged, name, seed, err)
	}
	if st, _ := device.GetStatus("mem"); st.Source != logged || st.Seed != 77 {
		t.Errorf("after apply: source %s seed %d", st.Source, st.Seed)
	}
	if rec, err := device.ReadState("mem"); err != nil || rec.Profile != logged || rec.Seed != 77 {
		t.Errorf("state.json after apply: %+v %v", rec, err)
	}
	if !crosses(d, packet.SYN) {
		t.Fatal("a SYN did not cross")
	}
	evs, next, err := device.Events("mem", 0)
	if err != nil || len(evs) != 1 || next != 1 || evs[0].DstPort != 80 || !strings.Contains(evs[0].Text, "log") {
		t.Errorf("events %+v next %d %v: want the one SYN", evs, next, err)
	}

	if _, _, err := device.Apply("mem", "no-such-profile", nil); !device.IsInputError(err) {
		t.Errorf("apply of an unknown profile: %v, want an input error", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: bad\nbehaviors:\n  - type: drop\n    match: {from: nohost}\n"), 0o644)
	if _, _, err := device.Apply("mem", bad, nil); !device.IsInputError(err) || !strings.Contains(err.Error(), "nohost") {
		t.Errorf("apply of a profile naming an unknown host: %v, want an input error", err)
	}
	if st, _ := device.GetStatus("mem"); st.Profile != "log80" {
		t.Errorf("a refused apply changed the profile to %s", st.Profile)
	}

	c, err := client.Dial(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.ShutdownRequested():
	case <-time.After(5 * time.Second):
		t.Error("a shutdown request did not stop the device")
	}
}

// On TCP the API needs the token the device keeps in api.token (0600); a
// remote address needs to be asked for.
func TestDevice_APIOnTCPWithToken(t *testing.T) {
	startMemDevice(t, "tcp", "127.0.0.1:0")
	st, err := device.GetStatus("tcp")
	if err != nil || !strings.HasPrefix(st.API, "127.0.0.1:") {
		t.Fatalf("status: api %q, %v", st.API, err)
	}
	fi, err := os.Stat(device.TokenPath("tcp"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("api.token: %v %v, want mode 0600", fi, err)
	}
	token, _ := os.ReadFile(device.TokenPath("tcp"))
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
		if err := device.CheckAPIAddr(c.addr, c.remote); (err == nil) != c.ok || (err != nil && !device.IsInputError(err)) {
			t.Errorf("device.CheckAPIAddr(%q, %v) = %v", c.addr, c.remote, err)
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
	startMemDeviceState(t, device.State{Name: "tokenfile", API: "127.0.0.1:0", APITokenFile: file})
	st, err := device.GetStatus("tokenfile")
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
	if _, err := os.Stat(device.TokenPath("tokenfile")); err == nil {
		t.Errorf("%s made although the token came from a file", device.TokenPath("tokenfile"))
	}
	for content, ok := range map[string]bool{
		"0123456789abcdef\n": true, "  0123456789abcdef  ": true,
		"": false, "short\n": false, "0123456789 abcdef\n": false, "0123456789abcdef\nsecond line\n": false,
	} {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := device.ReadAPIToken(file); (err == nil) != ok || (err != nil && !device.IsInputError(err)) {
			t.Errorf("device.ReadAPIToken(%q) = %v, want ok %v", content, err, ok)
		}
	}
	if _, err := device.ReadAPIToken(file + ".missing"); err == nil || !device.IsInputError(err) {
		t.Errorf("device.ReadAPIToken of a missing file = %v, want an input error", err)
	}
}
