package main

// Round-trip probes for the sparse-traffic section (sparse.go): echo-server
// sends every UDP datagram back; echo-client sends paced probes from an
// absolute start time and times each answer. Either may be pinned to a
// CPU, to show what a wake-up across CPUs costs.
//
// Their blocking calls are raw system calls, outside the Go scheduler, so
// that an endpoint costs one wake-up per datagram, as ping's does, and the
// figures are the network's, not Go's. (perf showed why: a goroutine whose
// syscall outlasts the scheduler's patience gives up its P, and getting
// one back wakes another thread; a goroutine locked to its thread hands
// its P around at the next preemption, two more wake-ups.) So the probes
// lock no thread and run with more Ps than blocked goroutines, and
// asynchronous preemption off (ownProcess): a goroutine that comes back
// from a long raw call is preempted at its next function call, cheaply,
// and no signal interrupts a thread blocked in one.

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	probes["echo-server"] = echoServer
	probes["echo-client"] = echoClient
}

// EchoResult is what echo-client prints: round trips in ns, from just
// before the send to the return of the receive.
type EchoResult struct {
	Sent  int   `json:"sent"`
	N     int   `json:"n"` // answered
	P50NS int64 `json:"p50_ns"`
	P99NS int64 `json:"p99_ns"`
	MaxNS int64 `json:"max_ns"`
	Late  int   `json:"late"` // sent more than a millisecond after its slot
}

// ownProcess execs this probe again, once, with asynchronous preemption
// off and, if cpu >= 0, on that CPU only (every thread inherits it).
func ownProcess(cpu int) error {
	const off = "asyncpreemptoff=1"
	const marker = "FAULTBOX_BENCH_PROBE_CPU"
	if os.Getenv(marker) != "" {
		return nil
	}
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		runtime.LockOSThread() // the thread that execs passes its affinity on
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("cpu %d: %w", cpu, err)
		}
	}
	debug := os.Getenv("GODEBUG")
	if debug != "" {
		debug += ","
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), "GODEBUG="+debug+off, marker+"="+strconv.Itoa(cpu))
	return syscall.Exec(self, os.Args, env)
}

// echoServer answers every datagram to its sender until killed.
func echoServer(args []string) error {
	fs := flag.NewFlagSet("echo-server", flag.ContinueOnError)
	listen := fs.String("listen", "", "address:port")
	cpu := fs.Int("cpu", -1, "run on this CPU only (-1: any)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return err
	}
	if err := ownProcess(*cpu); err != nil {
		return err
	}
	fd, sa, err := inetSocket(addr, unix.SOCK_DGRAM)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	// Bounded waits: a GC cannot stop a goroutine inside a raw call.
	if err := setRecvTimeout(fd, 100*time.Millisecond); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	var from unix.RawSockaddrAny
	for {
		fromLen := uint32(unix.SizeofSockaddrAny)
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			0, uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&fromLen)))
		switch errno {
		case 0:
		case unix.EAGAIN, unix.EINTR:
			continue
		default:
			return fmt.Errorf("recvfrom: %w", errno)
		}
		_, _, errno = unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), n,
			0, uintptr(unsafe.Pointer(&from)), uintptr(fromLen))
		if errno != 0 && errno != unix.ENOBUFS && errno != unix.EINTR {
			return fmt.Errorf("sendto: %w", errno)
		}
	}
}

func setRecvTimeout(fd int, d time.Duration) error {
	tv := unix.NsecToTimeval(int64(d))
	return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
}

// nanotime is CLOCK_MONOTONIC in ns, read without a preemption point: the
// time of a send or an answer is taken before anything else runs.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// connectedUDP returns a blocking UDP socket connected to addr.
func connectedUDP(addr netip.AddrPort) (int, error) {
	fd, sa, err := inetSocket(addr, unix.SOCK_DGRAM)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sendPaced writes buf to fd n times, the i-th at first + i*interval
// (CLOCK_MONOTONIC ns) on an absolute clock_nanosleep deadline, with i in
// buf[0:8] and the time just before the write in buf[8:16]. It returns how
// many went out more than lateBy after their slot. Between waking and
// writing there is no preemption point (raw calls, nanotime): the stamp is
// the send's.
func sendPaced(fd int, buf []byte, n int, first, interval, lateBy int64) (late int, err error) {
	for i := 0; i < n; i++ {
		slot := first + int64(i)*interval
		if slot > nanotime() {
			rawSleepUntil(slot)
		}
		now := nanotime()
		if now-slot > lateBy {
			late++
		}
		binary.LittleEndian.PutUint64(buf, uint64(i))
		binary.LittleEndian.PutUint64(buf[8:], uint64(now))
		if _, errno := rawIO(unix.SYS_WRITE, fd, buf); errno != 0 && errno != unix.ECONNREFUSED && errno != unix.ENOBUFS && errno != unix.EINTR {
			return late, fmt.Errorf("send %d: %w", i, errno)
		}
	}
	return late, nil
}

// rawSleepUntil sleeps until the CLOCK_MONOTONIC time at (ns), with the
// timer slack of its thread (whichever runs it now) at 1 ns, so that the
// kernel does not stretch the sleep by its default 50 us.
//
//go:nosplit
func rawSleepUntil(at int64) {
	unix.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, 1, 0, 0, 0, 0)
	ts := unix.Timespec{Sec: at / 1e9, Nsec: at % 1e9}
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_CLOCK_NANOSLEEP, unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME,
			uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if errno != unix.EINTR {
			return
		}
	}
}

// rawIO is read(2) or write(2) of b as a raw call.
//
//go:nosplit
func rawIO(trap uintptr, fd int, b []byte) (int, unix.Errno) {
	n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), errno
}

// echoClient sends n probes, one every 1/pps s from -start (CLOCK_MONOTONIC
// ns, so that probes of several clients can be interleaved), each on an
// absolute clock_nanosleep deadline. A second goroutine receives, so a
// late answer never delays the next probe; answers that have not come
// within -wait of the last probe are lost.
func echoClient(args []string) error {
	fs := flag.NewFlagSet("echo-client", flag.ContinueOnError)
	server := fs.String("server", "", "address:port")
	pps := fs.Float64("pps", 1, "probes per second")
	n := fs.Int("n", 100, "probes")
	start := fs.Int64("start", 0, "CLOCK_MONOTONIC ns of the first probe (0: now)")
	cpu := fs.Int("cpu", -1, "run on this CPU only (-1: any)")
	wait := fs.Duration("wait", time.Second, "wait this long after the last probe for answers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, err := netip.ParseAddrPort(*server)
	if err != nil {
		return err
	}
	if *pps <= 0 || *n <= 0 {
		return errors.New("need -pps > 0 and -n > 0")
	}
	if err := ownProcess(*cpu); err != nil {
		return err
	}
	// The sender and the receiver each hold a P while blocked; the rest of
	// the runtime (the final sleep, a GC) needs one more.
	runtime.GOMAXPROCS(3)
	fd, err := connectedUDP(addr)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := setRecvTimeout(fd, 100*time.Millisecond); err != nil {
		return err
	}
	interval := int64(float64(time.Second) / *pps)
	first := *start
	if first == 0 {
		first = nanotime()
	}
	rtts := make(chan []int64, 1)
	done := make(chan struct{})
	go func() { rtts <- echoReceive(fd, *n, done) }()
	late, err := sendPaced(fd, make([]byte, 16), *n, first, interval, int64(time.Millisecond))
	if err != nil {
		return err
	}
	time.Sleep(*wait)
	close(done)
	rs := <-rtts
	r := EchoResult{Sent: *n, N: len(rs), Late: late}
	if len(rs) > 0 {
		slices.Sort(rs)
		r.P50NS, r.P99NS, r.MaxNS = pct(rs, 50), pct(rs, 99), rs[len(rs)-1]
	}
	return printJSON(r)
}

// echoReceive collects round trips until done is closed: each answer
// carries its probe's number and send time.
func echoReceive(fd, n int, done <-chan struct{}) []int64 {
	rtts := make([]int64, 0, n)
	seen := make([]bool, n)
	buf := make([]byte, 64)
	for {
		select {
		case <-done:
			return rtts
		default:
		}
		m, errno := rawIO(unix.SYS_READ, fd, buf)
		now := nanotime()
		if errno != 0 || m < 16 {
			continue // the receive timeout (EAGAIN), EINTR, ICMP errors
		}
		seq := binary.LittleEndian.Uint64(buf)
		if seq >= uint64(len(seen)) || seen[seq] {
			continue
		}
		seen[seq] = true
		rtts = append(rtts, now-int64(binary.LittleEndian.Uint64(buf[8:])))
	}
}
