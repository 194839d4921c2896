package engine

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Timer wakes a port's scheduler at an absolute engine-clock time. The Linux
// implementation is a timerfd: Go timers fire ~1 ms late on this kernel,
// timerfd through the netpoller within tens of microseconds.
type Timer interface {
	// Arm sets the next wake-up (replacing any earlier one); 0 disarms.
	Arm(at int64) error
	// Wait blocks until the timer fires or is closed (then returns an error).
	Wait() error
	Close() error
}

type timerfd struct {
	f   *os.File
	buf [8]byte
}

func newTimerfd() (Timer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &timerfd{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

func (t *timerfd) Arm(at int64) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(at)}
	if at == 0 {
		spec.Value = unix.Timespec{}
	}
	rc, err := t.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.TimerfdSettime(int(fd), unix.TFD_TIMER_ABSTIME, &spec, nil)
	})
	if err != nil {
		return err
	}
	return serr
}

func (t *timerfd) Wait() error {
	_, err := t.f.Read(t.buf[:])
	if errors.Is(err, os.ErrClosed) {
		return errClosed
	}
	return err
}

func (t *timerfd) Close() error { return t.f.Close() }

var errClosed = errors.New("engine closed")
