// Package apitest runs a device in memory for tests of the device, its
// control API and its clients: a real device (package device) whose
// placement is two memory ports, client and server, with the API served
// on its unix socket.
package apitest

import (
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/profiles"
	"github.com/faultbox/faultbox/tun"
)

// The hosts behind the two ports.
var (
	ClientAddr = netip.MustParseAddr("198.18.0.1")
	ServerAddr = netip.MustParseAddr("198.18.0.2")
)

// Kind is the kind of device a device in memory says it is.
const Kind device.Kind = "test"

// Device is a device in memory with the API on a unix socket.
type Device struct {
	*device.Device
	Client, Server *tun.MemPort
	Socket         string
	oldRunDir      string
}

// Start runs a device called name whose runtime directory is in dir:
// device.RunDir is dir until Close, so its socket is dir/name/control.sock,
// where client.Dial looks with client.RunDir = dir. It starts on
// passthrough, seed 3, its counters at zero after its start-up check.
func Start(dir, name string, logger *log.Logger) (*Device, error) {
	return StartState(dir, device.State{Name: name}, logger)
}

// StartState is Start for a state of the caller's (its name, and API
// fields for a TCP API; the rest as Start's).
func StartState(dir string, st device.State, logger *log.Logger) (*Device, error) {
	if logger == nil {
		logger = log.New(os.Stderr, "apitest: ", 0)
	}
	d := &Device{oldRunDir: device.RunDir}
	device.RunDir = dir
	st.Kind, st.Profile, st.Seed, st.MTU = Kind, "passthrough", 3, 1500
	err := os.Mkdir(device.Dir(st.Name), 0o700)
	if err == nil {
		err = device.WriteState(&st)
	}
	p := &placement{}
	if err == nil {
		d.Device, err = device.Open(st.Name, func(*device.State) (device.Placement, error) { return p, nil }, logger)
	}
	if err != nil {
		device.RunDir = d.oldRunDir
		return nil, err
	}
	d.Client, d.Server = p.client, p.server
	d.Socket = filepath.Join(device.Dir(st.Name), "control.sock")
	return d, nil
}

// Close stops the device, removes its runtime directory and puts
// device.RunDir back.
func (d *Device) Close() {
	d.Device.Close()
	device.RunDir = d.oldRunDir
}

// placement places two memory ports: the device's whole life without
// root or a kernel.
type placement struct{ client, server *tun.MemPort }

func (p *placement) Place(*log.Logger) ([]device.Port, error) {
	p.client, p.server = tun.NewMemPort("client", 1500, true), tun.NewMemPort("server", 1500, true)
	return []device.Port{
		{Name: "client", Namespace: "memory", Dev: p.client, Prefixes: []netip.Prefix{netip.PrefixFrom(ClientAddr, 32)}},
		{Name: "server", Namespace: "memory", Dev: p.server, Prefixes: []netip.Prefix{netip.PrefixFrom(ServerAddr, 32)}},
	}, nil
}

// Check sends one SYN from the client to the server.
func (p *placement) Check(*log.Logger) error {
	p.client.Send(Segment(true, 40000, 1, packet.SYN, 0), tun.Offload{})
	if _, _, ok := p.server.Recv(5 * time.Second); !ok {
		return errors.New("the start-up SYN did not cross")
	}
	return nil
}

func (p *placement) Resolver() behaviors.Resolver { return profiles.DefaultResolver }
func (p *placement) Describe() string             { return "two memory ports" }
func (p *placement) Remove(*log.Logger)           {}

// Logger is a device log that goes to t's log, shown with the test's
// failure.
func Logger(t testing.TB) *log.Logger { return log.New(testLog{t}, "", 0) }

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Segment is a TCP segment from the client (port sport) to the server's
// port 80, or back, with payload bytes of data.
func Segment(fromClient bool, sport uint16, seq uint32, flags packet.TCPFlags, payload int) []byte {
	spec := packet.TCPSpec{Src: ClientAddr, Dst: ServerAddr, SrcPort: sport, DstPort: 80, Seq: seq, Ack: 1,
		Flags: flags, Window: 65535, Payload: make([]byte, payload)}
	if !fromClient {
		spec.Src, spec.Dst, spec.SrcPort, spec.DstPort = ServerAddr, ClientAddr, 80, sport
	}
	b := make([]byte, 60+payload)
	return b[:packet.BuildTCP(b, spec)]
}

// Send has the client send pkt.
func (d *Device) Send(pkt []byte) error {
	if !d.Client.Send(pkt, tun.Offload{}) {
		return fmt.Errorf("the client port's queue is full")
	}
	return nil
}

// Receive waits up to timeout for the server to get a packet and returns
// when it came.
func (d *Device) Receive(timeout time.Duration) (time.Time, bool) {
	_, _, ok := d.Server.Recv(timeout)
	return time.Now(), ok
}

// RoundTrip sends one data segment from the client and returns how long
// it took to reach the server.
func (d *Device) RoundTrip(sport uint16, seq uint32, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := d.Send(Segment(true, sport, seq, packet.ACK|packet.PSH, 100)); err != nil {
		return 0, err
	}
	at, ok := d.Receive(timeout)
	if !ok {
		return 0, fmt.Errorf("segment %d did not arrive within %v", seq, timeout)
	}
	return at.Sub(start), nil
}
