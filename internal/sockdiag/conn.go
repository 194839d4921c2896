package sockdiag

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/netns"
)

const (
	recvBufSize = 64 << 10 // the kernel fills dump messages up to the reader's buffer
	recvTimeout = 5 * time.Second
	maxReads    = 1 << 16 // bounds one dump: 64 Ki reads of 64 KiB
)

// Conn is a sock_diag netlink socket bound to the namespace it was opened
// in, for repeated dumps. Not safe for concurrent use.
type Conn struct {
	fd     int
	netns  string
	seq    uint32
	buf    []byte
	closed bool
}

// Open opens a sock_diag socket in namespace netns (see Dump). A netlink
// socket answers for the namespace it was created in, so the socket is made
// on a locked OS thread that has entered netns, and the thread is restored
// (or discarded, if restoring fails) before Open returns.
func Open(netns string) (*Conn, error) {
	fd, err := socketIn(netns)
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockdiag: SO_RCVTIMEO: %w", err)
	}
	return &Conn{fd: fd, netns: netns, buf: make([]byte, recvBufSize)}, nil
}

// Close releases the socket.
func (c *Conn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return unix.Close(c.fd)
}

// Dump returns the sockets that pass f, IPv4 first.
func (c *Conn) Dump(f Filter) ([]Socket, error) {
	if c.closed {
		return nil, errors.New("sockdiag: dump on closed Conn")
	}
	fams, err := f.families()
	if err != nil {
		return nil, err
	}
	var out []Socket
	for _, fam := range fams {
		if out, err = c.dumpFamily(fam, f, out); err != nil {
			return nil, fmt.Errorf("sockdiag: dump %s in netns %q: %w", familyName(fam), c.netns, err)
		}
	}
	return out, nil
}

func (c *Conn) dumpFamily(fam uint8, f Filter, out []Socket) ([]Socket, error) {
	c.seq++
	req := buildRequest(c.seq, fam, f.kernelStates())
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return out, fmt.Errorf("send: %w", err)
	}
	for range maxReads {
		n, _, rflags, _, err := unix.Recvmsg(c.fd, c.buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("recv: %w", err)
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return out, fmt.Errorf("recv: message truncated at %d bytes", n)
		}
		var done bool
		out, done, err = parseMessages(c.buf[:n], c.seq, f, out)
		if err != nil || done {
			return out, err
		}
	}
	return out, fmt.Errorf("no end of dump after %d reads", maxReads)
}

// buildRequest encodes nlmsghdr + struct inet_diag_req_v2 asking for TCP
// sockets of family fam in the states of mask, with INET_DIAG_INFO.
func buildRequest(seq uint32, fam uint8, states uint32) []byte {
	b := make([]byte, nlmsgHdrLen+reqV2Len)
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	r := b[nlmsgHdrLen:]
	r[0] = fam
	r[1] = unix.IPPROTO_TCP
	r[2] = 1 << (inetDiagInfo - 1) // idiag_ext: extensions are asked for by bit (type-1)
	ne.PutUint32(r[4:], states)
	// r[8:56]: inet_diag_sockid, zero: no exact-socket lookup
	return b
}

func familyName(fam uint8) string {
	switch fam {
	case unix.AF_INET:
		return "AF_INET"
	case unix.AF_INET6:
		return "AF_INET6"
	}
	return fmt.Sprintf("family %d", fam)
}

// socketIn creates the netlink socket inside namespace ns.
func socketIn(ns string) (fd int, err error) {
	err = netns.Do(ns, func() error {
		fd, err = newSocket()
		return err
	})
	return fd, err
}

func newSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sockdiag: netlink socket: %w", err)
	}
	return fd, nil
}
