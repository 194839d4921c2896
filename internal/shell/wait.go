package shell

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Forwarded are the signals faultbox run passes on to the command.
var Forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT}

// The command is the leader of a process group of its own, so that a
// signal reaches it once: sent to faultbox, it is passed on to the
// command's group; typed at a terminal, it goes to the command's group
// alone, since the command has the terminal's foreground (as a shell gives
// a job). faultbox takes the foreground back when the command ends or
// stops.

// terminal is the controlling terminal of a faultbox run started in its
// foreground.
type terminal struct {
	fd   int
	pgrp int // faultbox's process group
}

// foregroundTerminal returns f's terminal if faultbox runs in its
// foreground, else nil: then the command does not take the terminal.
func foregroundTerminal(f *os.File) *terminal {
	if f == nil {
		return nil
	}
	fd := int(f.Fd())
	pg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || pg != unix.Getpgrp() {
		return nil
	}
	return &terminal{fd: fd, pgrp: pg}
}

// give makes process group pgid the terminal's foreground. From the
// background, the kernel would stop faultbox for asking (SIGTTOU) unless
// it ignores that meanwhile.
func (t *terminal) give(pgid int) {
	signal.Ignore(unix.SIGTTOU)
	unix.IoctlSetPointerInt(t.fd, unix.TIOCSPGRP, pgid)
	signal.Reset(unix.SIGTTOU)
}

// reclaim takes the foreground back for faultbox.
func (t *terminal) reclaim() { t.give(t.pgrp) }

// ours reports whether faultbox has the foreground.
func (t *terminal) ours() bool {
	pg, err := unix.IoctlGetInt(t.fd, unix.TIOCGPGRP)
	return err == nil && pg == t.pgrp
}

// exitStatus is a shell's status for a process that ended: its exit
// status, or 128 + the signal that killed it.
func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// waitCommand waits until the command (pid, leader of its process group)
// ends and returns its status, passing the signals from sigc to its
// group. With a terminal, a command that stops (^Z) stops faultbox too,
// as one job; both carry on when the job is continued.
func waitCommand(pid int, tty *terminal, sigc <-chan os.Signal) (int, error) {
	type waited struct {
		ws  unix.WaitStatus
		err error
	}
	flags := 0
	var contc chan os.Signal
	if tty != nil {
		flags = unix.WUNTRACED
		contc = make(chan os.Signal, 1)
		signal.Notify(contc, unix.SIGCONT)
		defer signal.Stop(contc)
	}
	wc := make(chan waited)
	go func() {
		for {
			var ws unix.WaitStatus
			_, err := unix.Wait4(pid, &ws, flags, nil)
			if err == unix.EINTR {
				continue
			}
			wc <- waited{ws, err}
			if err != nil || !ws.Stopped() {
				return
			}
		}
	}()
	for {
		select {
		case sig := <-sigc:
			unix.Kill(-pid, sig.(syscall.Signal))
		case w := <-wc:
			if w.err != nil {
				return 0, w.err
			}
			if w.ws.Stopped() {
				suspend(pid, tty, contc)
				continue
			}
			if tty != nil {
				tty.reclaim()
			}
			return exitStatus(w.ws), nil
		}
	}
}

// suspend stops faultbox's own job after the command stopped, and when
// the job is continued (fg or bg) continues the command, in the
// foreground if faultbox got it.
func suspend(pid int, tty *terminal, contc <-chan os.Signal) {
	tty.reclaim()
	select { // a SIGCONT from before the stop does not count
	case <-contc:
	default:
	}
	unix.Kill(0, unix.SIGSTOP) // not SIGTSTP, which a parent may have left ignored
	<-contc
	if tty.ours() {
		tty.give(pid)
	}
	unix.Kill(-pid, unix.SIGCONT)
}
