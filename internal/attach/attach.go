// Package attach puts a faultbox device in front of services it did not
// start: inline between the processes of an existing network namespace (a
// container's, a pod's, the host's) and a list of destination prefixes,
// in both directions, IPv4 and IPv6. Traffic to anything else never enters
// the device.
//
// Inside the namespace the device has two TUN interfaces: fbx-app, where
// the namespace's own traffic to the prefixes enters it, and fbx-world,
// where that traffic leaves it toward the prefixes and their replies
// enter it. Policy routing does the selecting, per IP version:
//
//	app table    PREFIX dev fbx-app src ADDR    (ADDR: what the route had)
//	             throw OWN-ADDRESS              (for own addresses inside a prefix)
//	world table  OWN-ADDRESS dev fbx-world
//	rules        iif UPLINK from PREFIX ipproto P lookup world   (replies)
//	             iif lo ipproto P lookup app                     (the namespace's own packets)
//	             the local rule moved after these, if it was at 0
//
// for P in TCP, UDP and ICMP (IPv6: ICMPv6 only from lo, so that neighbor
// discovery stays local); with --port, TCP and UDP by port at either end.
// A rule for every protocol would also catch the kernel's own lookups,
// which name none: ARP's of the namespace's address (see matches). Plus,
// in the namespace: ip_early_demux off (a reply tied to its socket on
// arrival is not forwarded), forwarding on the uplinks (IPv6:
// force_forwarding), and on fbx-world forwarding and accept_local.
//
// Fail-open: the TUN interfaces are not persistent, so when the device
// dies its routes vanish and lookups fall through to the namespace's own
// routing. Everything else is written to state.json before it is changed
// (Record), and detach puts it back, also after a SIGKILL.
package attach

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
)

// Options say where attach puts the device (PID or Netns, To, Ports), and
// what every device takes (Name: derived from the target, pid-N, the
// netns name or self; Profile: passthrough).
type Options struct {
	device.Options
	PID   int    // the target: a process's network namespace ...
	Netns string // ... or a name in /run/netns, a path, or "self"
	To    []string
	Ports []string
}

// Attach checks everything, plans the changes, starts the device and
// returns its state once the device has made them and checked the routes.
// Bad input changes nothing. If the device fails, what it changed is put
// back and the error carries the end of its log.
func Attach(o Options) (*device.State, error) {
	st, err := o.prepare()
	if err != nil {
		return nil, err
	}
	if err := device.Launch(&o.Options, st, site{o.Notes}); err != nil {
		return nil, err
	}
	return st, nil
}

// Prepare is Attach up to starting the device: it checks everything, plans
// the changes and claims the name, first undoing what a dead attach of
// that name left. It returns the device's first state; attach
// --foreground runs the device in its own process. It fills in o's
// defaults. Bad input changes nothing.
func Prepare(o *Options) (*device.State, error) {
	st, err := o.prepare()
	if err != nil {
		return nil, err
	}
	if err := (site{o.Notes}).Claim(st); err != nil {
		return nil, err
	}
	return st, nil
}

// prepare names the attach, undoes what a dead one of that name left and
// plans.
func (o *Options) prepare() (*device.State, error) {
	if o.Name == "" {
		o.Name = defaultName(o.PID, o.Netns)
	}
	if err := removeDead(o.Name, o.Notes); err != nil {
		return nil, err
	}
	return o.plan()
}

// site is where an attach's device goes: an existing namespace, which the
// device itself changes.
type site struct{ notes io.Writer }

func (s site) Claim(st *device.State) error {
	return device.Claim(st, func() ([]string, error) { return Detach(st.Name) }, s.notes)
}

func (site) Prepare(*device.State, <-chan os.Signal, func(string)) error { return nil }

func (site) Remove(name string) ([]string, error) { return Detach(name) }

// removeDead undoes what a dead attach called name left before planning
// reads the namespace: a restarted sidecar container finds the state of
// the one that died (on the pod's volume), and its rules still in place,
// which would leave no room for new ones. A live attach, or another kind
// of device, is left to Claim to refuse.
func removeDead(name string, notes io.Writer) error {
	st, err := device.ReadState(name)
	if err != nil || st.KindOf() != device.KindAttach || st.Device.Alive() || (st.Device.PID == 0 && st.Creator.Alive()) {
		return nil
	}
	removed, err := Detach(name)
	if err != nil {
		return fmt.Errorf("attach %s: removing what its dead device left: %w", name, err)
	}
	if notes != nil && len(removed) > 0 {
		fmt.Fprintf(notes, "attach %s: its device had died; removed %s\n", name, strings.Join(removed, ", "))
	}
	return nil
}

// plan checks the options and the target, and returns the device's first
// state, with its record of what it will change.
func (o *Options) plan() (*device.State, error) {
	if o.Profile == "" {
		o.Profile = "passthrough"
	}
	to, err := ParsePrefixes(o.To)
	if err != nil {
		return nil, err
	}
	if err := o.Check(); err != nil {
		return nil, err
	}
	ports, err := ParsePorts(o.Ports)
	if err != nil {
		return nil, err
	}
	t, err := ResolveTarget(o.PID, o.Netns)
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = defaultName(o.PID, o.Netns)
	}
	if err := device.CheckName(o.Name); err != nil {
		return nil, err
	}
	if err := CheckPrivileges(t); err != nil {
		return nil, err
	}
	if err := device.CheckTUN(); err != nil {
		return nil, err
	}
	if err := notAttached(t); err != nil {
		return nil, err
	}
	rec, err := plan(t, to, ports)
	if err != nil {
		return nil, err
	}
	p, err := o.LoadProfile(Resolver(rec))
	if err != nil {
		return nil, err
	}
	return o.NewState(device.KindAttach, rec, rec.MTU, p)
}

// defaultName names an attach after its target: pid-1234, the namespace's
// name, or self.
func defaultName(pid int, ns string) string {
	switch {
	case pid > 0:
		return "pid-" + strconv.Itoa(pid)
	case ns == "self":
		return "self"
	}
	n := strings.ToLower(filepath.Base(ns))
	if device.CheckName(n) != nil {
		return "attach"
	}
	return n
}

// ParsePrefixes reads --to: CIDR prefixes or single addresses, comma
// separated, each at most once.
func ParsePrefixes(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range items {
		for _, s := range strings.Split(item, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return nil, device.InputErrorf("--to %q is not a prefix: want CIDR such as 198.18.1.0/24 or 2001:db8:1::/64, or an address", s)
				}
				if a.Zone() != "" {
					return nil, device.InputErrorf("--to %q: a link-local address with a zone is not a destination attach can route", s)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		return nil, device.InputErrorf("--to: give the prefixes to put the device in front of, e.g. --to 198.18.1.0/24,2001:db8:1::/64")
	}
	return out, nil
}

// ParsePorts reads --port: port numbers 1-65535, comma separated.
func ParsePorts(items []string) ([]uint16, error) {
	var out []uint16
	for _, item := range items {
		for _, s := range strings.Split(item, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 65535 {
				return nil, device.InputErrorf("--port %q: want a port number 1-65535", s)
			}
			if !slices.Contains(out, uint16(n)) {
				out = append(out, uint16(n))
			}
		}
	}
	return out, nil
}

// CheckPrivileges returns a clear error unless this process may attach to
// t: CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter a namespace not its own.
func CheckPrivileges(t Target) error {
	if !device.HasCaps(device.CapNetAdmin) {
		return errors.New("faultbox attach needs CAP_NET_ADMIN (it creates TUN interfaces and changes routing in the namespace): run it as root, or give the container NET_ADMIN")
	}
	if t.Path != "" && !device.HasCaps(device.CapSysAdmin) {
		return fmt.Errorf("faultbox attach needs CAP_SYS_ADMIN to enter %s; run it inside that namespace with --netns self, which needs only CAP_NET_ADMIN", t)
	}
	return nil
}

// notAttached refuses a second attach to one namespace.
func notAttached(t Target) error {
	attaches, _ := device.OfKind(device.KindAttach)
	for _, st := range attaches {
		n := st.Name
		r, err := RecordOf(st)
		if err != nil || r.Target.Dev != t.Dev || r.Target.Ino != t.Ino {
			continue
		}
		if !st.Device.Alive() {
			return device.InputErrorf("%s has what a dead attach (%q) changed: `faultbox detach --name %s` undoes it", t, n, n)
		}
		return device.InputErrorf("%s already has faultbox attached (%q): `faultbox apply --name %s PROFILE` changes its profile, `faultbox detach --name %s` removes it", t, n, n, n)
	}
	return nil
}

// Detach removes the attach called name: the device undoes what it
// changed; if the device is dead, what its state records is undone here.
// It returns what it removed; nothing to remove is not an error.
func Detach(name string) ([]string, error) {
	if err := device.CheckName(name); err != nil {
		return nil, err
	}
	st, err := device.ReadState(name)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(device.Dir(name)); err == nil {
			return []string{device.Dir(name)}, os.RemoveAll(device.Dir(name))
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := st.WantKind(device.KindAttach); err != nil {
		return nil, fmt.Errorf("%w; `%s` removes it", err, device.RemoveCommand(st.KindOf(), name))
	}
	rec, err := RecordOf(st)
	if err != nil {
		return nil, err
	}
	if !device.HasCaps(device.CapNetAdmin) {
		return nil, errors.New("faultbox detach needs CAP_NET_ADMIN: run it as root, or give the container NET_ADMIN")
	}
	var removed []string
	stopped, err := device.StopIfAlive(st)
	if err != nil {
		return nil, err
	}
	if stopped != "" {
		removed = append(removed, stopped)
	}
	var errs []error
	if _, err := os.Stat(device.Dir(name)); err == nil { // the device did not finish: undo from the record
		path, ok := rec.Target.Find()
		if ok {
			nl, err := netns.Handle(path)
			if err == nil {
				errs = restore(rec, path, nl)
				nl.Close()
			} else {
				errs = append(errs, err)
			}
			if len(errs) == 0 {
				removed = append(removed, "what attach changed in "+rec.Target.Said)
			}
		} else {
			removed = append(removed, rec.Target.Said+" is gone: nothing to undo there")
		}
		if len(errs) == 0 {
			if err := os.RemoveAll(device.Dir(name)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	removed = append(removed, device.Dir(name))
	if len(errs) > 0 {
		return removed, fmt.Errorf("detach %s: %w (state kept in %s: run detach again)", name, errors.Join(errs...), device.Dir(name))
	}
	return removed, nil
}

// DetachAll removes every attach, live or dead. Labs are left alone.
func DetachAll() ([]string, error) {
	attaches, err := device.OfKind(device.KindAttach)
	var removed []string
	errs := []error{err}
	for _, st := range attaches {
		r, err := Detach(st.Name)
		removed = append(removed, r...)
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// WriteSummary prints what Attach did.
func WriteSummary(w io.Writer, st *device.State) error {
	r, err := RecordOf(st)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "attached %s (device pid %d) in front of %s\n", st.Name, st.Device.PID, r.Describe())
	fmt.Fprintf(w, "profile %s, seed %d\n", st.Profile, st.Seed)
	if st.Capture != "" {
		fmt.Fprintf(w, "capture %s\n", st.Capture)
	}
	for _, s := range r.Sysctls {
		fmt.Fprintf(w, "changed %s (was %s) until detach\n", s, s.Old)
	}
	if err := device.WriteAPISummary(w, st); err != nil {
		return err
	}
	fmt.Fprintf(w, "status:  faultbox status --name %s\ndetach:  faultbox detach --name %s\n", st.Name, st.Name)
	return nil
}
