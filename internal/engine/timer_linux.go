package engine

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Timer wakes a port's scheduler at an absolute engine-clock time. The Linux
// implementation is a timerfd, which wakes the netpoller on time: Go's own
// timers wait in the netpoller's epoll_wait, whose timeout is in whole
// milliseconds (docs/benchmarks.md has what that cost).
type Timer interface {
	// Arm sets the next wake-up (replacing any earlier one); 0 disarms.
	Arm(at int64) error
	// Wait blocks until the timer fires or is closed (then returns an error).
	Wait() error
	Close() error
}

type timerfd struct {
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
	// Wait's, and Arm's (under the engine lock); the functions are built
	// once, so that neither allocates.
	buf    [8]byte
	rerr   unix.Errno
	readFn func(uintptr) bool
	spec   unix.ItimerSpec
	aerr   unix.Errno
	armFn  func(uintptr)
}

func newTimerfd() (Timer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	t := &timerfd{f: os.NewFile(uintptr(fd), "timerfd")}
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.f.Close()
		return nil, err
	}
	// Raw system calls, as the TUN ports make theirs (tun.rawRead): after
	// an idle spell an ordinary one first wakes the Go runtime's monitor
	// thread, on the way to every release. Neither call can sleep.
	t.readFn = func(fd uintptr) bool {
		_, _, t.rerr = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&t.buf[0])), uintptr(len(t.buf)))
		return t.rerr != unix.EAGAIN
	}
	t.armFn = func(fd uintptr) {
		_, _, t.aerr = unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, unix.TFD_TIMER_ABSTIME, uintptr(unsafe.Pointer(&t.spec)), 0, 0, 0)
	}
	return t, nil
}

func (t *timerfd) Arm(at int64) error {
	t.spec = unix.ItimerSpec{Value: unix.NsecToTimespec(at)}
	if err := t.rc.Control(t.armFn); err != nil {
		return err
	}
	if t.aerr != 0 {
		return t.aerr
	}
	return nil
}

func (t *timerfd) Wait() error {
	for {
		err := t.rc.Read(t.readFn)
		if err != nil && t.closed.Load() {
			return errClosed
		}
		if err != nil {
			return err
		}
		switch t.rerr {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return t.rerr
	}
}

func (t *timerfd) Close() error {
	t.closed.Store(true)
	return t.f.Close()
}

var errClosed = errors.New("engine closed")
