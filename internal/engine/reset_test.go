package engine

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/tun"
)

// lateCountPort is a MemPort that counts a write only once release is
// closed, after it delivered the packets: as a TUN port does, whose
// packets reach their socket inside write(2) and are counted when it
// returns.
type lateCountPort struct {
	*tun.MemPort
	release chan struct{}
	written atomic.Uint64
}

func (p *lateCountPort) Write(pkts []tun.Packet) (int, error) {
	n, err := p.MemPort.Write(pkts)
	<-p.release
	p.written.Add(uint64(n))
	return n, err
}

func (p *lateCountPort) Stats() tun.PortStats {
	s := p.MemPort.Stats()
	s.WritePackets = p.written.Load()
	return s
}

// A device resets the engine as soon as its start-up check's last packet
// arrived; the port may not have counted that write yet. Reset waits for
// it, so the port's statistics start from zero (TestLab_UpStartsClean once
// saw "port server written 2 packets": the check's last batch).
func TestEngine_ResetWaitsForAWriteNotYetCounted(t *testing.T) {
	eachMode(t, resetWaitsForAWriteNotYetCounted)
}

func resetWaitsForAWriteNotYetCounted(t *testing.T, cfg Config) {
	e := New(cfg)
	client := tun.NewMemPort("client", 1500, true)
	server := &lateCountPort{MemPort: tun.NewMemPort("server", 1500, true), release: make(chan struct{})}
	must(t, e.AddPort("client", client, []netip.Prefix{netip.PrefixFrom(clientAddr, 32)}))
	must(t, e.AddPort("server", server, []netip.Prefix{netip.PrefixFrom(serverAddr, 32)}))
	e.Start()
	released := time.AfterFunc(100*time.Millisecond, func() { close(server.release) })
	t.Cleanup(func() {
		if released.Stop() {
			close(server.release)
		}
		e.Close()
	})

	client.Send(tcpSeg(clientAddr, serverAddr, 40000, 80, 1, 0, packet.SYN, nil), tun.Offload{})
	if _, _, ok := server.Recv(5 * time.Second); !ok {
		t.Fatal("the SYN did not cross")
	}
	e.Reset(behaviors.NewChain("passthrough", 0, nil))
	for deadline := time.Now().Add(5 * time.Second); server.written.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the write was not counted within 5 s")
		}
	}
	for _, p := range e.Status().Ports {
		if p.Stats.WritePackets != 0 || p.Stats.ReadPackets != 0 {
			t.Errorf("after Reset: port %s read %d written %d packets, want 0", p.Name, p.Stats.ReadPackets, p.Stats.WritePackets)
		}
	}
}
