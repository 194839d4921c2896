package tun

import (
	"encoding/binary"
	"fmt"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// linkStats reads an interface's kernel counters over a route netlink
// socket opened in the interface's namespace: the socket stays bound to it,
// so Stats needs no thread inside the namespace. It is for status calls,
// not the packet path.
type linkStats struct {
	mu    sync.Mutex
	fd    int
	index int32
	seq   uint32
	buf   []byte
	last  uint64 // the last tx_dropped read, kept when a read fails
}

// txDroppedOffset is tx_dropped's place in struct rtnl_link_stats64, after
// rx/tx packets, bytes, errors and rx_dropped (u64 each).
const txDroppedOffset = 7 * 8

// openLinkStats opens the socket for the interface with index in the
// current thread's namespace.
func openLinkStats(index int32) (*linkStats, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	// A status call must not hang on a kernel that does not answer.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &linkStats{fd: fd, index: index, buf: make([]byte, 64<<10)}, nil
}

// txDropped returns the packets the kernel dropped on their way to the
// device: for a TUN device, those its queue had no room for because they
// were not read in time. When the kernel does not answer (the interface is
// gone), it returns the last count it read.
func (l *linkStats) txDropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd >= 0 {
		if v, err := l.query(); err == nil {
			l.last = v
		}
	}
	return l.last
}

func (l *linkStats) query() (uint64, error) {
	l.seq++
	var req [unix.SizeofNlMsghdr + unix.SizeofIfInfomsg]byte
	hdr := (*unix.NlMsghdr)(unsafe.Pointer(&req[0]))
	*hdr = unix.NlMsghdr{Len: uint32(len(req)), Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST, Seq: l.seq}
	info := (*unix.IfInfomsg)(unsafe.Pointer(&req[unix.SizeofNlMsghdr]))
	*info = unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: l.index}
	if err := unix.Sendto(l.fd, req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("RTM_GETLINK: %w", err)
	}
	// Answers to an earlier query that timed out may still be queued:
	// skip any whose sequence number is not this one's.
	for range 8 {
		n, _, err := unix.Recvfrom(l.fd, l.buf, 0)
		if err != nil {
			return 0, fmt.Errorf("RTM_GETLINK answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(l.buf[:n])
		if err != nil {
			return 0, fmt.Errorf("RTM_GETLINK answer: %w", err)
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Header.Seq != l.seq {
				continue
			}
			if m.Header.Type == unix.NLMSG_ERROR {
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
						return 0, fmt.Errorf("RTM_GETLINK: %w", syscall.Errno(-code))
					}
				}
				return 0, fmt.Errorf("RTM_GETLINK: an error without a code")
			}
			if m.Header.Type != unix.RTM_NEWLINK {
				continue
			}
			attrs, err := syscall.ParseNetlinkRouteAttr(m)
			if err != nil {
				return 0, fmt.Errorf("RTM_GETLINK answer: %w", err)
			}
			for _, a := range attrs {
				if a.Attr.Type == unix.IFLA_STATS64 && len(a.Value) >= txDroppedOffset+8 {
					return binary.NativeEndian.Uint64(a.Value[txDroppedOffset:]), nil
				}
			}
			return 0, fmt.Errorf("RTM_GETLINK answer without IFLA_STATS64")
		}
	}
	return 0, fmt.Errorf("RTM_GETLINK: no answer to query %d", l.seq)
}

func (l *linkStats) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
	}
}
