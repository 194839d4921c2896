package tun

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/netns"
)

// DefaultTxQueueLen is Options.TxQueueLen's default.
const DefaultTxQueueLen = 4096

// Options say which TUN device to open and how.
type Options struct {
	// Name is the interface name inside the namespace, e.g. "fbx0"; empty
	// lets the kernel choose (tunN), see Interface.Name.
	Name string
	// NetNS is the namespace as named in /run/netns/NAME (or a path to a
	// namespace file); empty means the caller's current namespace.
	NetNS string
	// MTU of the interface; 0 means 1500.
	MTU int
	// TxQueueLen is the interface's transmit queue, the packets the kernel
	// holds for us before dropping them (PortStats.QueueDrops); 0 means
	// 4096. TUN's default of 500 overflows when a TSO sender bursts while the
	// engine is busy, and a deeper queue carries more small datagrams when
	// the device is briefly descheduled (docs/benchmarks.md).
	TxQueueLen int
	// Offload asks for the virtio header (IFF_VNET_HDR) with checksum and
	// TCP segmentation offload, so the kernel hands over 64 KB super-packets
	// instead of MTU segments. If the kernel refuses, the device is opened
	// without it and Offloads reports false.
	Offload bool
	// BeforeUp, if set, runs inside the namespace once the interface
	// exists and before it is brought up, e.g. to set its sysctls before
	// the kernel acts on them (IPv6 link-local address, router
	// solicitations).
	BeforeUp func(ifname string) error
}

// vnetHdrLen is sizeof(struct virtio_net_hdr): flags u8, gso_type u8,
// hdr_len, gso_size, csum_start, csum_offset u16, in host byte order (the
// legacy virtio layout TUN uses unless told otherwise).
const vnetHdrLen = 10

// tunOffloads are the offloads asked for. UDP segmentation (USO) is included
// because Split handles GSOUDPL4; kernels before 6.2 refuse it and we retry
// without (tunOffloadsTCP).
const (
	tunOffloadsTCP = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	tunOffloads    = tunOffloadsTCP | unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// Interface is a TUN interface opened by Open. It implements Port. Read
// must not be called concurrently with Read, nor Write with Write; Read and
// Write may run concurrently with each other and with Stats and Close.
type Interface struct {
	name     string
	mtu      int
	offloads bool
	uso      atomic.Bool // the kernel takes UDP super-packets: runs are joined (coalesce.go)
	file     *os.File
	rc       syscall.RawConn
	closed   atomic.Bool
	fd       int // for WaitFD; the file owns it
	link     *linkStats

	// Per-call state of Read and Write, kept here so that the closures handed
	// to the netpoller are built once in Open rather than on every call.
	rmu    sync.Mutex
	rpkts  []Packet
	rn     int
	rerr   error
	rtry   bool // TryRead: never park
	readFn func(uintptr) bool

	wmu     sync.Mutex
	wpkts   []Packet
	wn      int
	werr    error
	writeFn func(uintptr) bool
	iovs    [maxUDPRun]unix.Iovec
	runHdrs [48]byte

	readPackets, readBytes, readDrops, gsoPackets atomic.Uint64
	writePackets, writeBytes, writeDrops          atomic.Uint64
	joinedWrites, joinedPackets                   atomic.Uint64
}

var _ Poller = (*Interface)(nil)

// Open creates the TUN device described by o inside its namespace, sets its
// MTU and transmit queue and brings it up. Addresses and routes are the
// caller's business. Closing the Interface removes it.
func Open(o Options) (*Interface, error) {
	if len(o.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tun: interface name %q longer than %d bytes", o.Name, unix.IFNAMSIZ-1)
	}
	if o.MTU == 0 {
		o.MTU = 1500
	}
	if o.MTU < 68 || o.MTU > MaxPacket {
		return nil, fmt.Errorf("tun: mtu %d out of range 68..%d", o.MTU, MaxPacket)
	}
	if o.TxQueueLen == 0 {
		o.TxQueueLen = DefaultTxQueueLen
	}
	if o.TxQueueLen < 0 {
		return nil, fmt.Errorf("tun: negative txqueuelen %d", o.TxQueueLen)
	}
	// Namespaces belong to OS threads: the device is created on a thread
	// inside the namespace and stays there when the thread leaves.
	var r struct {
		fd            int
		name          string
		offloads, uso bool
		link          *linkStats
	}
	err := netns.Do(o.NetNS, func() error {
		var err error
		var index int32
		r.fd, r.name, index, r.offloads, r.uso, err = create(o)
		if err != nil {
			return err
		}
		if r.link, err = openLinkStats(index); err != nil {
			unix.Close(r.fd)
			return fmt.Errorf("counters: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tun %s: %w", o.Name, err)
	}
	// The fd is non-blocking, so os.NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(r.fd), "/dev/net/tun")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		r.link.close()
		return nil, fmt.Errorf("tun %s: %w", r.name, err)
	}
	d := &Interface{name: r.name, mtu: o.MTU, offloads: r.offloads, file: f, rc: rc, fd: r.fd, link: r.link}
	d.uso.Store(r.uso)
	d.readFn = d.readBatch
	d.writeFn = d.writeBatch
	return d, nil
}

// create opens and configures the device in the current thread's namespace.
func create(o Options) (fd int, name string, index int32, offloads, uso bool, err error) {
	if o.Offload {
		fd, name, err = createFD(o.Name, true)
		if err == nil {
			if uso, err = setOffloadFn(fd); err == nil {
				offloads = true
			} else {
				// Fall back to a plain device; the vnet header cannot be
				// switched off on an attached fd, so start over.
				unix.Close(fd)
			}
		}
	}
	if !offloads {
		fd, name, err = createFD(o.Name, false)
		if err != nil {
			return -1, "", 0, false, false, err
		}
	}
	if o.BeforeUp != nil {
		if err := o.BeforeUp(name); err != nil {
			unix.Close(fd)
			return -1, "", 0, false, false, fmt.Errorf("tun %s: %w", name, err)
		}
	}
	if index, err = configure(name, o.MTU, o.TxQueueLen); err != nil {
		unix.Close(fd)
		return -1, "", 0, false, false, err
	}
	return fd, name, index, offloads, uso, nil
}

func createFD(name string, vnet bool) (int, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("tun: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("tun %s: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if vnet {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("tun %s: TUNSETIFF: %w", name, err)
	}
	return fd, ifr.Name(), nil
}

// setOffloadFn is replaced by tests to exercise the fallback.
var setOffloadFn = setOffload

// setOffload reports whether UDP segmentation was accepted too.
func setOffload(fd int) (uso bool, err error) {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		return false, fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads); err == nil {
		return true, nil
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloadsTCP); err != nil {
		return false, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	return false, nil
}

// configure sets MTU and txqueuelen and brings the interface up, through a
// socket of the current namespace (interface ioctls act on the socket's),
// and returns its index.
func configure(name string, mtu, txqlen int) (int32, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("tun %s: socket: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("tun %s: %w", name, err)
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return 0, fmt.Errorf("tun %s: set mtu %d: %w", name, mtu, err)
	}
	ifr.SetUint32(uint32(txqlen))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFTXQLEN, ifr); err != nil {
		return 0, fmt.Errorf("tun %s: set txqueuelen %d: %w", name, txqlen, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return 0, fmt.Errorf("tun %s: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return 0, fmt.Errorf("tun %s: set up: %w", name, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("tun %s: interface index: %w", name, err)
	}
	return int32(ifr.Uint32()), nil
}

// Name is the interface name inside its namespace.
func (d *Interface) Name() string { return d.name }

// MTU is the interface MTU set at Open.
func (d *Interface) MTU() int { return d.mtu }

// Offloads reports whether the device carries the virtio header.
func (d *Interface) Offloads() bool { return d.offloads }

// Read blocks until at least one packet is readable, then reads without
// blocking until pkts is full or nothing is left. It returns ErrClosed once
// the device is closed.
func (d *Interface) Read(pkts []Packet) (int, error) { return d.read(pkts, false) }

// TryRead is Read that returns 0 packets at once when none is waiting, for
// a caller that polls (see Poller).
func (d *Interface) TryRead(pkts []Packet) (int, error) { return d.read(pkts, true) }

// WaitFD is the device's file descriptor, readable when packets wait. It is
// valid until Close.
func (d *Interface) WaitFD() int { return d.fd }

func (d *Interface) read(pkts []Packet, try bool) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	for i := range pkts {
		if len(pkts[i].Buf) < BufSize {
			return 0, fmt.Errorf("tun %s: read buffer %d is %d bytes, want %d", d.name, i, len(pkts[i].Buf), BufSize)
		}
	}
	d.rmu.Lock()
	defer d.rmu.Unlock()
	d.rpkts, d.rn, d.rerr, d.rtry = pkts, 0, nil, try
	err := d.rc.Read(d.readFn)
	n := d.rn
	d.rpkts = nil
	if n > 0 {
		return n, nil // an error after some packets recurs on the next call
	}
	if err == nil && d.rerr != nil {
		err = fmt.Errorf("tun %s: read: %w", d.name, d.rerr)
	}
	if err != nil && d.closed.Load() {
		err = ErrClosed
	}
	return 0, err
}

// readBatch is the netpoller callback of Read: it returns false to park
// until the fd is readable, true when it has packets or an error.
func (d *Interface) readBatch(fd uintptr) bool {
	var bytes, gso uint64
	n := d.rn
	for n < len(d.rpkts) {
		p := &d.rpkts[n]
		// The virtio header lands in the headroom just before the packet,
		// so one read() fills both and nothing is copied.
		hdr := Headroom
		if d.offloads {
			hdr = Headroom - vnetHdrLen
		}
		m, err := rawRead(fd, p.Buf[hdr:BufSize])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			if n > 0 || d.rtry {
				break
			}
			return false
		}
		if err != nil {
			d.rerr = err
			break
		}
		p.Off, p.Len, p.Offload = Headroom, m-(Headroom-hdr), Offload{}
		if d.offloads {
			if p.Len < 0 || !parseVnetHdr(p) {
				d.readDrops.Add(1) // not a packet we can describe; never seen in practice
				continue
			}
			if p.Offload.IsGSO() {
				gso++
			}
		}
		bytes += uint64(p.Len)
		n++
	}
	d.rn = n
	if n > 0 {
		d.readPackets.Add(uint64(n))
		d.readBytes.Add(bytes)
		if gso > 0 {
			d.gsoPackets.Add(gso)
		}
	}
	return true
}

// parseVnetHdr fills p.Offload from the virtio header before p's packet. It
// reports false for a GSO type this package does not know.
func parseVnetHdr(p *Packet) bool {
	h := p.Buf[Headroom-vnetHdrLen : Headroom]
	o := Offload{
		NeedsCsum:  h[0]&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0,
		HdrLen:     binary.NativeEndian.Uint16(h[2:]),
		GSOSize:    binary.NativeEndian.Uint16(h[4:]),
		CsumStart:  binary.NativeEndian.Uint16(h[6:]),
		CsumOffset: binary.NativeEndian.Uint16(h[8:]),
	}
	switch h[1] &^ unix.VIRTIO_NET_HDR_GSO_ECN {
	case unix.VIRTIO_NET_HDR_GSO_NONE:
		o.GSOType = GSONone
	case unix.VIRTIO_NET_HDR_GSO_TCPV4:
		o.GSOType = GSOTCPv4
	case unix.VIRTIO_NET_HDR_GSO_TCPV6:
		o.GSOType = GSOTCPv6
	case unix.VIRTIO_NET_HDR_GSO_UDP_L4:
		o.GSOType = GSOUDPL4
	default:
		return false
	}
	if o.IsGSO() {
		// The kernel's hdr_len is the linear part of its buffer, which can be
		// more than the headers; give callers the real IP+transport length.
		data := p.Data()
		cs := int(o.CsumStart)
		switch {
		case o.GSOType == GSOUDPL4 && cs+8 <= len(data):
			o.HdrLen = uint16(cs + 8)
		case o.GSOType != GSOUDPL4 && cs+20 <= len(data):
			o.HdrLen = uint16(cs + int(data[cs+12]>>4)*4)
		}
	}
	p.Offload = o
	return true
}

// Write writes each packet with one write(); on a device with offloads the
// virtio header describing pkt.Offload goes into the headroom just before the
// packet. A full kernel queue (EAGAIN, ENOBUFS) drops the rest of the batch,
// counted in WriteDrops, and is not an error. Any other error stops the
// batch: pkts[n] failed and the caller may carry on with pkts[n+1:].
func (d *Interface) Write(pkts []Packet) (int, error) {
	if d.closed.Load() {
		return 0, ErrClosed
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.wpkts, d.wn, d.werr = pkts, 0, nil
	err := d.rc.Write(d.writeFn)
	n := d.wn
	if err == nil {
		err = d.werr
	}
	d.wpkts = nil
	if err != nil && d.closed.Load() {
		err = ErrClosed
	}
	return n, err
}

// writeBatch is the netpoller callback of Write. It never parks: TUN writes
// do not block, and a full queue is a drop, not a wait.
func (d *Interface) writeBatch(fd uintptr) bool {
	var bytes uint64
	n := 0
	for n < len(d.wpkts) {
		p := &d.wpkts[n]
		if !p.valid() {
			d.werr = fmt.Errorf("tun %s: write packet [%d:+%d] in buffer of %d: want offset >= %d", d.name, p.Off, p.Len, len(p.Buf), Headroom)
			break
		}
		if !d.offloads && (p.Offload.IsGSO() || p.Offload.NeedsCsum) {
			d.werr = fmt.Errorf("tun %s: %w", d.name, errNoOffload)
			break
		}
		k := 1
		if d.uso.Load() {
			k = udpRun(d.wpkts[n:])
		}
		var err error
		if k > 1 {
			err = d.writeUDPRun(fd, d.wpkts[n:n+k])
		} else {
			start := p.Off
			if d.offloads {
				start -= vnetHdrLen
				putVnetHdr(p.Buf[start:p.Off], p.Offload)
			}
			err = rawWrite(fd, p.Buf[start:p.Off+p.Len])
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN || err == unix.ENOBUFS {
			d.writeDrops.Add(uint64(len(d.wpkts) - n))
			break
		}
		if err != nil && k > 1 {
			// The kernel refused the joined packet although it accepted
			// USO at open: stop joining and write these one by one.
			d.uso.Store(false)
			continue
		}
		if err != nil {
			d.werr = fmt.Errorf("tun %s: write: %w", d.name, err)
			break
		}
		for _, q := range d.wpkts[n : n+k] {
			bytes += uint64(q.Len)
		}
		n += k
	}
	d.wn = n
	d.writePackets.Add(uint64(n))
	d.writeBytes.Add(bytes)
	return true
}

// writeUDPRun writes a run of datagrams found by udpRun as one UDP
// super-packet: one writev of the first packet (headers rewritten for the
// run, then put back) and the other packets' payloads, nothing copied.
func (d *Interface) writeUDPRun(fd uintptr, run []Packet) error {
	first := &run[0]
	o, hdrLen := joinUDPRun(run, &d.runHdrs)
	defer restoreUDPRun(first, &d.runHdrs, hdrLen)
	start := first.Off - vnetHdrLen
	putVnetHdr(first.Buf[start:first.Off], o)
	setIovec(&d.iovs[0], first.Buf[start:first.Off+first.Len])
	for i := 1; i < len(run); i++ {
		setIovec(&d.iovs[i], run[i].Data()[hdrLen:])
	}
	_, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&d.iovs[0])), uintptr(len(run)))
	clear(d.iovs[:len(run)]) // keep no pointers into the caller's buffers
	if errno != 0 {
		return errno
	}
	d.joinedWrites.Add(1)
	d.joinedPackets.Add(uint64(len(run)))
	return nil
}

// rawRead and rawWrite are read(2) and write(2) on the device's
// non-blocking fd as raw system calls, without the Go runtime's syscall
// entry and exit: entering a syscall the ordinary way in a process whose
// Ps were all idle first wakes the runtime's monitor thread (sysmon), a
// futex wake-up on the path of every packet that finds the device idle.
// These calls never sleep, so holding the P through them is harmless.
func rawRead(fd uintptr, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func rawWrite(fd uintptr, b []byte) error {
	_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return errno
	}
	return nil
}

func setIovec(v *unix.Iovec, b []byte) {
	v.Base = &b[0]
	v.SetLen(len(b))
}

func putVnetHdr(h []byte, o Offload) {
	var flags, gso uint8
	if o.NeedsCsum {
		flags = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	}
	switch o.GSOType {
	case GSOTCPv4:
		gso = unix.VIRTIO_NET_HDR_GSO_TCPV4
	case GSOTCPv6:
		gso = unix.VIRTIO_NET_HDR_GSO_TCPV6
	case GSOUDPL4:
		gso = unix.VIRTIO_NET_HDR_GSO_UDP_L4
	}
	h[0], h[1] = flags, gso
	binary.NativeEndian.PutUint16(h[2:], o.HdrLen)
	binary.NativeEndian.PutUint16(h[4:], o.GSOSize)
	binary.NativeEndian.PutUint16(h[6:], o.CsumStart)
	binary.NativeEndian.PutUint16(h[8:], o.CsumOffset)
}

// Stats returns the device's counters. QueueDrops comes from the kernel;
// if it cannot be read, the last value read stands.
func (d *Interface) Stats() PortStats {
	return PortStats{
		QueueDrops:    d.link.txDropped(),
		ReadPackets:   d.readPackets.Load(),
		ReadBytes:     d.readBytes.Load(),
		ReadDrops:     d.readDrops.Load(),
		WritePackets:  d.writePackets.Load(),
		WriteBytes:    d.writeBytes.Load(),
		WriteDrops:    d.writeDrops.Load(),
		GSOPackets:    d.gsoPackets.Load(),
		JoinedWrites:  d.joinedWrites.Load(),
		JoinedPackets: d.joinedPackets.Load(),
	}
}

// Close removes the interface and makes a blocked Read return ErrClosed.
func (d *Interface) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.link.txDropped() // the last count, before the interface goes
	d.link.close()
	return d.file.Close()
}
