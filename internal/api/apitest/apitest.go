// Package apitest runs a device in memory for tests of the control API and
// its clients: a real engine between two memory ports (client and server),
// its controller, and the API served on a unix socket.
package apitest

import (
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/api"
	"github.com/faultbox/faultbox/internal/control"
	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/tun"
)

// The hosts behind the two ports.
var (
	ClientAddr = netip.MustParseAddr("198.18.0.1")
	ServerAddr = netip.MustParseAddr("198.18.0.2")
)

// Device is an in-memory device with the API on a unix socket.
type Device struct {
	*control.Controller
	Engine         *engine.Engine
	Client, Server *tun.MemPort
	Socket         string
	Shutdowns      atomic.Int32 // shutdown requests received
	started        time.Time
	srv            *api.Server
}

// Start runs a device called name whose API listens on a socket in dir
// (dir/name/control.sock, as client.Dial expects with client.RunDir = dir).
func Start(dir, name string, logger *log.Logger) (*Device, error) {
	if logger == nil {
		logger = log.New(os.Stderr, "apitest: ", 0)
	}
	e := engine.New(engine.Config{})
	d := &Device{Engine: e, Client: tun.NewMemPort("client", 1500, true), Server: tun.NewMemPort("server", 1500, true), started: time.Now()}
	for _, p := range []struct {
		name string
		port *tun.MemPort
		addr netip.Addr
	}{{"client", d.Client, ClientAddr}, {"server", d.Server, ServerAddr}} {
		if err := e.AddPort(p.name, p.port, []netip.Prefix{netip.PrefixFrom(p.addr, 32)}); err != nil {
			return nil, err
		}
	}
	e.Start()
	d.Controller = control.New(control.Config{Engine: e, Log: logger})
	d.srv = api.New(d, logger)
	d.Socket = filepath.Join(dir, name, "control.sock")
	if err := os.MkdirAll(filepath.Dir(d.Socket), 0o700); err != nil {
		e.Close()
		return nil, err
	}
	ln, err := net.Listen("unix", d.Socket)
	if err != nil {
		e.Close()
		return nil, err
	}
	go d.srv.Serve(ln, "")
	return d, nil
}

// Logger is a device log that goes to t's log, shown with the test's
// failure.
func Logger(t testing.TB) *log.Logger { return log.New(testLog{t}, "", 0) }

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// ServeTCP serves the API on a loopback TCP port with token and returns
// its address.
func (d *Device) ServeTCP(token string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go d.srv.Serve(ln, token)
	return ln.Addr().String(), nil
}

// Status is the controller's status with the device's facts.
func (d *Device) Status() (*client.Status, error) {
	st := d.Controller.Status()
	st.Kind, st.Name, st.PID, st.Started = "test", "apitest", os.Getpid(), d.started
	st.UptimeSeconds = time.Since(d.started).Seconds()
	return st, nil
}

// Shutdown counts the request; the test closes the device.
func (d *Device) Shutdown() { d.Shutdowns.Add(1) }

// Close stops the API and the engine.
func (d *Device) Close() {
	d.srv.Close()
	d.Engine.Close()
	os.Remove(d.Socket)
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
