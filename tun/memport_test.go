package tun

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestMemPort_SendReadInBatches(t *testing.T) {
	m := NewMemPort("m0", 1500, true)
	defer m.Close()
	gso := Offload{GSOType: GSOTCPv4, NeedsCsum: true, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	for i := range 5 {
		o := Offload{}
		if i == 2 {
			o = gso
		}
		if !m.Send([]byte{0x45, byte(i), 1, 2}, o) {
			t.Fatalf("send %d dropped", i)
		}
	}
	pkts := outBufs(3)
	n, err := m.Read(pkts)
	if err != nil || n != 3 {
		t.Fatalf("first read: n=%d err=%v, want 3", n, err)
	}
	for i := range n {
		if !bytes.Equal(pkts[i].Data(), []byte{0x45, byte(i), 1, 2}) || pkts[i].Off != Headroom {
			t.Errorf("packet %d: %x at %d", i, pkts[i].Data(), pkts[i].Off)
		}
	}
	if pkts[2].Offload != gso || pkts[0].Offload != (Offload{}) {
		t.Errorf("offloads %+v %+v", pkts[0].Offload, pkts[2].Offload)
	}
	if n, err = m.Read(pkts); err != nil || n != 2 || pkts[1].Data()[1] != 4 {
		t.Fatalf("second read: n=%d err=%v", n, err)
	}
	st := m.Stats()
	if st.ReadPackets != 5 || st.ReadBytes != 20 || st.GSOPackets != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestMemPort_WriteRecv(t *testing.T) {
	m := NewMemPort("m0", 1500, false)
	defer m.Close()
	pkts := outBufs(2)
	for i := range pkts {
		pkts[i].Off, pkts[i].Len = Headroom, 3
		copy(pkts[i].Buf[Headroom:], []byte{0x60, byte(i), 9})
	}
	if n, err := m.Write(pkts); n != 2 || err != nil {
		t.Fatalf("write: n=%d err=%v", n, err)
	}
	pkts[0].Buf[Headroom+1] = 77 // the port holds copies
	for i := range 2 {
		b, o, ok := m.Recv(time.Second)
		if !ok || !bytes.Equal(b, []byte{0x60, byte(i), 9}) || o != (Offload{}) {
			t.Errorf("recv %d: %x %+v %v", i, b, o, ok)
		}
	}
	start := time.Now()
	if _, _, ok := m.Recv(20 * time.Millisecond); ok {
		t.Error("recv from an empty port succeeded")
	}
	if d := time.Since(start); d < 20*time.Millisecond || d > 2*time.Second {
		t.Errorf("recv timeout took %v", d)
	}

	// A port without offloads refuses what only an offload port accepts.
	pkts[1].Offload = Offload{GSOType: GSOTCPv6, GSOSize: 1000}
	if n, err := m.Write(pkts); n != 1 || !errors.Is(err, errNoOffload) {
		t.Errorf("gso write to plain port: n=%d err=%v", n, err)
	}
	pkts[1].Offload, pkts[1].Off = Offload{}, 3
	if n, err := m.Write(pkts); n != 1 || err == nil {
		t.Errorf("write without headroom: n=%d err=%v", n, err)
	}
	if st := m.Stats(); st.WritePackets != 4 || st.WriteBytes != 12 {
		t.Errorf("stats %+v", st)
	}
}

func TestMemPort_QueuesAreBounded(t *testing.T) {
	m := NewMemPort("m0", 1500, true)
	defer m.Close()
	for i := range MemQueueLen {
		if !m.Send([]byte{byte(i)}, Offload{}) {
			t.Fatalf("send %d dropped before the queue is full", i)
		}
	}
	if m.Send([]byte{1}, Offload{}) || m.SendDrops() != 1 {
		t.Errorf("send to a full queue: drops %d", m.SendDrops())
	}
	pkts := outBufs(MemQueueLen + 10)
	for i := range pkts {
		pkts[i].Off, pkts[i].Len = Headroom, 1
	}
	if n, err := m.Write(pkts); n != MemQueueLen || err != nil || m.Stats().WriteDrops != 10 {
		t.Errorf("write of %d: n=%d err=%v drops=%d", len(pkts), n, err, m.Stats().WriteDrops)
	}
}

func TestMemPort_CloseUnblocksReadAndRecv(t *testing.T) {
	m := NewMemPort("m0", 1500, true)
	errc := make(chan error, 1)
	okc := make(chan bool, 1)
	go func() {
		_, err := m.Read(outBufs(1))
		errc <- err
	}()
	go func() {
		_, _, ok := m.Recv(time.Minute)
		okc <- ok
	}()
	time.Sleep(20 * time.Millisecond)
	m.Close()
	select {
	case err := <-errc:
		if err != ErrClosed {
			t.Errorf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after Close")
	}
	select {
	case ok := <-okc:
		if ok {
			t.Error("Recv returned a packet from a closed empty port")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked 5s after Close")
	}
	if _, err := m.Write(outBufs(1)); err != ErrClosed {
		t.Errorf("Write after Close: %v", err)
	}
	if m.Send([]byte{1}, Offload{}) {
		t.Error("Send after Close accepted")
	}
}

func TestMemPort_ReadWakesOnSend(t *testing.T) {
	m := NewMemPort("m0", 1500, true)
	defer m.Close()
	done := make(chan int, 1)
	go func() {
		n, _ := m.Read(outBufs(4))
		done <- n
	}()
	time.Sleep(10 * time.Millisecond)
	m.Send([]byte{0x45}, Offload{})
	select {
	case n := <-done:
		if n != 1 {
			t.Errorf("read %d packets, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not wake on Send")
	}
}

func TestMemPort_NoAllocsPerPacketWhenWarm(t *testing.T) {
	m := NewMemPort("m0", 1500, true)
	defer m.Close()
	w, r := outBufs(32), outBufs(32)
	for i := range w {
		w[i].Off, w[i].Len = Headroom, 1400
	}
	src := NewMemPort("src", 1500, true)
	defer src.Close()
	cycle := func() {
		if n, _ := src.Write(w); n != len(w) {
			t.Fatalf("write %d", n)
		}
		for range w {
			// Move engine output to host input without Recv (which copies).
			src.out.mu.Lock()
			s := src.out.slots[src.out.head]
			src.out.head = (src.out.head + 1) % MemQueueLen
			src.out.n--
			src.out.mu.Unlock()
			m.Send(s.buf, s.o)
		}
		for got := 0; got < len(w); {
			n, err := m.Read(r)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	for range MemQueueLen / len(w) * 2 {
		cycle() // warm every slot's buffer
	}
	if a := testing.AllocsPerRun(50, cycle); a != 0 {
		t.Errorf("%v allocations per batch of %d", a, len(w))
	}
}

func TestMemPort_TryRead(t *testing.T) {
	m := NewMemPort("m", 1500, true)
	pkts := []Packet{{Buf: make([]byte, BufSize)}}
	if n, err := m.TryRead(pkts); n != 0 || err != nil || m.WaitFD() != -1 {
		t.Fatalf("empty: %d %v fd %d", n, err, m.WaitFD())
	}
	m.Send([]byte{0x45, 1, 2}, Offload{})
	if n, err := m.TryRead(pkts); n != 1 || err != nil || pkts[0].Len != 3 {
		t.Fatalf("after Send: %d %v len %d", n, err, pkts[0].Len)
	}
	m.Close()
	if _, err := m.TryRead(pkts); err != ErrClosed {
		t.Fatalf("after Close: %v", err)
	}
}
