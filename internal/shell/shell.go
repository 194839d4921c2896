// Package shell is `faultbox run`: one command in a network namespace of
// its own whose only way out is the device, to the network of the
// namespace faultbox run was started in (the host side) — Mahimahi's
// shells with faultbox's behaviors. A run named N in slot S is:
//
//	command      CMD, the first process of a new network and mount
//	             namespace (unnamed: it ends with its last process); fbx0,
//	             the device's port, is its only interface, with
//	             198.19.0.0/16 + 4S+2 and 2001:db8:fb:S::2 and the default
//	             routes; /etc/resolv.conf names the host side
//	host side    fbxrunS, the device's other port, with 4S+1 and
//	             2001:db8:fb:S::1 and routes to the command; an nft table
//	             inet faultbox-run-N masquerading the command's addresses;
//	             a DNS forwarder on port 53 of the host-side addresses
//	runtime dir  /run/faultbox/N/ (the device's, kind "run")
//
// Run creates the command's namespaces with faultbox's Init as their first
// process, starts the device (whose Placement, place.go, opens and wires
// the ports), then lets Init become the command and waits for it. When the
// command ends, or faultbox is told to stop (the signal goes to the
// command first), the device is stopped and everything goes; after a
// SIGKILL of faultbox, RemoveDead removes what is left.
package shell

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
	"github.com/faultbox/faultbox/profiles"
)

// Options say what Run runs and how, and what every device takes (Name:
// run-S, S its slot; Profile: required; Executable is also the command's
// first process; Notes also gets one line on the run). Zero values take
// the defaults.
type Options struct {
	device.Options
	Command []string // the command and its arguments
	// The command's standard files (this process's).
	Stdin, Stdout, Stderr *os.File
}

// MTU is the MTU of both ports.
const MTU = 1500

// Run runs the command as a run and returns its status: its exit status,
// or 128 + the signal that killed it. An error before the command started
// comes with status 0 and leaves nothing behind. An error after it ended
// (removing the run) comes with the command's status.
func Run(o Options) (int, error) {
	o.setDefaults()
	pl, err := o.plan()
	if err != nil {
		return 0, err
	}
	// Taken before the launch, which takes SIGINT and SIGTERM only while
	// it waits: the command gets every one that comes after.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, Forwarded...)
	defer signal.Stop(sigc)

	st, err := o.NewState(device.KindRun, nil, MTU, pl.profile)
	if err != nil {
		return 0, err
	}
	r := &run{o: &o, pl: pl}
	if err := device.Launch(&o.Options, st, r); err != nil {
		return 0, err
	}
	if err := device.WriteAPISummary(o.Notes, st); err != nil {
		return 0, device.Undo(st, err, r.Remove)
	}
	tty := foregroundTerminal(o.Stdin)
	if tty != nil {
		tty.give(r.rec.Process.PID)
	}
	if _, err := io.WriteString(r.goPipe, initGo); err != nil {
		if tty != nil {
			tty.reclaim()
		}
		return 0, device.Undo(st, fmt.Errorf("starting the command: %w", err), r.Remove)
	}
	r.goPipe.Close()
	status, err := waitCommand(r.rec.Process.PID, tty, sigc)
	if rerr := end(st.Name); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return status, err
}

func (o *Options) setDefaults() {
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
}

// plan is what Run found out before creating anything.
type plan struct {
	profile  *profiles.Profile
	host     netns.ID // the namespace faultbox runs in: the host side
	hostPath string
	resolv   resolvConf
	// hasResolv: /etc/resolv.conf exists here, so the command's can be
	// mounted over it.
	hasResolv bool
}

// plan checks everything Run was asked for and the machine it runs on. It
// creates nothing.
func (o *Options) plan() (*plan, error) {
	if len(o.Command) == 0 {
		return nil, device.InputErrorf("no command to run: faultbox run --profile NAME -- CMD [ARGS...]")
	}
	if o.Name != "" {
		if err := device.CheckName(o.Name); err != nil {
			return nil, err
		}
	}
	if o.Profile == "" {
		return nil, device.InputErrorf("--profile is required: a built-in profile (faultbox profile list) or a profile file")
	}
	p, err := o.LoadProfile(resolver(0))
	if err != nil {
		return nil, err
	}
	if err := o.Check(); err != nil {
		return nil, err
	}
	if !device.HasCaps(device.CapNetAdmin, device.CapSysAdmin) {
		return nil, errors.New("faultbox run needs root: it creates network and mount namespaces and TUN devices (CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo")
	}
	if err := device.CheckTUN(); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(o.Command[0]); err != nil {
		return nil, device.InputErrorf("%s: command not found", o.Command[0])
	}
	pl := &plan{profile: p}
	if pl.host, err = netns.IDOf("/proc/self/ns/net"); err != nil {
		return nil, err
	}
	pl.hostPath = hostPath(pl.host)
	data, err := os.ReadFile("/etc/resolv.conf")
	pl.hasResolv = err == nil
	if !pl.hasResolv {
		fmt.Fprintf(o.Notes, "faultbox run: %v: the command resolves names as this host does without one\n", err)
	}
	pl.resolv = parseResolvConf(data)
	for _, w := range forwardingWarnings() {
		fmt.Fprintln(o.Notes, "faultbox run: "+w)
	}
	return pl, nil
}

// forwardingWarnings says what the host side's forwarding settings keep
// the command from reaching. faultbox changes none of them: they are the
// host's.
func forwardingWarnings() []string {
	var out []string
	if sysctlOff("/proc/sys/net/ipv4/ip_forward") {
		out = append(out, "IPv4 forwarding is off here (net.ipv4.ip_forward=0): over IPv4 the command reaches this host's own addresses only. "+
			"To let it out: sysctl -w net.ipv4.ip_forward=1")
	}
	if sysctlOff("/proc/sys/net/ipv6/conf/all/forwarding") {
		out = append(out, "IPv6 forwarding is off here (net.ipv6.conf.all.forwarding=0): over IPv6 the command reaches this host's own addresses only. "+
			"To let it out: sysctl -w net.ipv6.conf.all.forwarding=1 (an interface that takes its IPv6 route from router advertisements then needs accept_ra=2)")
	}
	return out
}

func sysctlOff(path string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.TrimSpace(string(data)) == "0"
}

// run is a run being started, run and removed: the device.Site of runs.
type run struct {
	o      *Options
	pl     *plan
	rec    *record
	init   *exec.Cmd // the command's first process, once started
	goPipe *os.File  // "go" for Init
}

// Claim takes a slot and the name (o.Name, else the slot's), removing
// dead runs first, and writes the run's first state.
func (r *run) Claim(st *device.State) error {
	unlock, err := device.LockFile(lockFile)
	if err != nil {
		return err
	}
	defer unlock()
	removed, err := removeDead()
	for _, rm := range removed {
		fmt.Fprintf(r.o.Notes, "faultbox run: removed %s, left by a faultbox run that was killed\n", rm)
	}
	if err != nil {
		return fmt.Errorf("removing dead runs: %w", err)
	}
	runs, err := device.OfKind(device.KindRun)
	if err != nil {
		return err
	}
	taken := map[slot]bool{}
	for _, st := range runs {
		if rec, err := decode(st); err == nil {
			taken[rec.Slot] = true
		}
	}
	inUse, err := hostPrefixes()
	if err != nil {
		return err
	}
	s, err := freeSlot(taken, inUse)
	if err != nil {
		return err
	}
	if st.Name == "" {
		st.Name = s.DefaultName()
	}
	r.rec = &record{Slot: s, Command: r.o.Command, Host: r.pl.host, HostPath: r.pl.hostPath}
	for _, a := range r.pl.resolv.Nameservers {
		r.rec.Nameservers = append(r.rec.Nameservers, a.String())
	}
	if err := st.Encode(r.rec); err != nil {
		return err
	}
	return device.Claim(st, func() ([]string, error) { return remove(st.Name) }, r.o.Notes)
}

// hostPrefixes are the addresses and routes of the host side (default
// routes aside), which a run's addresses must not overlap.
func hostPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing this namespace's addresses: %w", err)
	}
	for _, a := range addrs {
		out = appendPrefix(out, a.IPNet)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing this namespace's routes: %w", err)
	}
	for _, r := range routes {
		out = appendPrefix(out, r.Dst)
	}
	return out, nil
}

func appendPrefix(out []netip.Prefix, n *net.IPNet) []netip.Prefix {
	if n == nil {
		return out // a default route
	}
	a, ok := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	if !ok || ones == 0 {
		return out
	}
	return append(out, netip.PrefixFrom(a.Unmap(), ones))
}

// Prepare creates the command's namespaces with Init in them.
func (r *run) Prepare(st *device.State, interrupt <-chan os.Signal, _ func(string)) error {
	fmt.Fprintf(r.o.Notes, "faultbox run %s: profile %s, seed %d; the command is %s and %s\n",
		st.Name, st.Profile, st.Seed, r.rec.Slot.Command4(), r.rec.Slot.Command6())
	resolv := ""
	if r.pl.hasResolv {
		resolv = filepath.Join(device.Dir(st.Name), "resolv.conf")
		if err := os.WriteFile(resolv, commandResolvConf(st.Name, r.rec.Slot, r.pl.resolv), 0o644); err != nil {
			return err
		}
	}
	return r.startInit(st, resolv, interrupt)
}

// startInit starts the command's first process in new network and mount
// namespaces, in a process group of its own, and waits until it has
// mounted its views. Its pid and namespace go into the state for the
// device.
func (r *run) startInit(st *device.State, resolv string, sigc <-chan os.Signal) error {
	goR, goW, err := os.Pipe()
	if err != nil {
		return err
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		goR.Close()
		goW.Close()
		return err
	}
	defer reportR.Close()
	cmd := exec.Command(r.o.Executable, append([]string{"run-init", "--resolv", resolv, "--"}, r.o.Command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r.o.Stdin, r.o.Stdout, r.o.Stderr
	cmd.ExtraFiles = []*os.File{goR, reportW} // fds 3 and 4: initGoFD, initReportFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS, Setpgid: true}
	err = cmd.Start()
	goR.Close()
	reportW.Close()
	if err != nil {
		goW.Close()
		return fmt.Errorf("starting the command's namespaces: %w", err)
	}
	r.init, r.goPipe = cmd, goW

	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(reportR).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != initReady {
			if l = strings.TrimSpace(l); l == "" {
				l = "it ended without a word"
			}
			return fmt.Errorf("the command's namespace: %s", l)
		}
	case sig := <-sigc:
		return fmt.Errorf("interrupted (%v) while starting", sig)
	case <-time.After(r.o.Timeout):
		return fmt.Errorf("the command's namespace was not ready within %s", r.o.Timeout)
	}

	pid := cmd.Process.Pid
	if r.rec.Process, err = device.ProcOf(pid); err != nil {
		return err
	}
	if r.rec.Netns, err = netns.IDOf(r.rec.netnsPath()); err != nil {
		return err
	}
	if err := st.Encode(r.rec); err != nil {
		return err
	}
	return device.WriteState(st)
}

// Remove removes a run that failed to start: its command's first
// process, if it started, and everything else (remove).
func (r *run) Remove(name string) ([]string, error) {
	if r.init != nil {
		r.goPipe.Close() // Init exits when it reads no "go"
		r.init.Process.Kill()
		r.init.Wait()
	}
	return remove(name)
}

// end removes the run called name after its command ended: the device
// stops (and undoes its placement); whatever is still there goes too.
func end(name string) error {
	var errs []error
	if st, err := device.ReadState(name); err == nil && st.Device.Alive() {
		if _, err := device.Stop(name, st.Device); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := remove(name); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("run %s: removing it: %w", name, err)
	}
	return nil
}
