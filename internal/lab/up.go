package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/faultbox/faultbox/internal/device"
)

// Options say what lab Up creates: the hosts and their MTU, and what
// every device takes (Name: DefaultName, Profile: passthrough). Zero
// values take the defaults.
type Options struct {
	device.Options
	Hosts []string // DefaultHosts
	MTU   int      // 1500
}

// Up creates a lab and returns when traffic flows through its device. On
// any failure it removes what it created, and the error includes the end
// of the device's log.
func Up(o Options) (*device.State, error) {
	o.setDefaults()
	st, hosts, err := o.plan()
	if err != nil {
		return nil, err
	}
	if err := device.Launch(&o.Options, st, &site{hosts: hosts, notes: o.Notes}); err != nil {
		return nil, err
	}
	return st, nil
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if len(o.Hosts) == 0 {
		o.Hosts = DefaultHosts
	}
	if o.Profile == "" {
		o.Profile = "passthrough"
	}
	if o.MTU == 0 {
		o.MTU = 1500
	}
}

// plan checks everything Up was asked for and the machine it runs on, and
// returns the lab's first state and its hosts. It creates nothing.
func (o *Options) plan() (*device.State, []Host, error) {
	hosts, err := Plan(o.Name, o.Hosts)
	if err != nil {
		return nil, nil, err
	}
	if o.MTU < MinMTU || o.MTU > MaxMTU {
		return nil, nil, device.InputErrorf("mtu %d: want %d to %d (every host has an IPv6 address)", o.MTU, MinMTU, MaxMTU)
	}
	if err := o.Check(); err != nil {
		return nil, nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, nil, err
	}
	if err := checkTools(); err != nil {
		return nil, nil, err
	}
	p, err := o.LoadProfile(Resolver(hosts))
	if err != nil {
		return nil, nil, err
	}
	st, err := o.NewState(device.KindLab, record{Hosts: hosts}, o.MTU, p)
	if err != nil {
		return nil, nil, err
	}
	return st, hosts, nil
}

// site is where a lab's device goes: the hosts' namespaces, which lab up
// creates before the device starts.
type site struct {
	hosts []Host
	notes io.Writer
}

func (s *site) Claim(st *device.State) error {
	return device.Claim(st, func() ([]string, error) { return removeDead(st.Name) }, s.notes)
}

// Prepare creates the hosts' namespaces.
func (s *site) Prepare(st *device.State, interrupt <-chan os.Signal, progress func(string)) error {
	progress("creating namespaces")
	hostsFile := HostsFile(st.Name, s.hosts)
	for _, h := range s.hosts {
		select {
		case sig := <-interrupt:
			return fmt.Errorf("interrupted (%v) while starting", sig)
		default:
		}
		if err := createHost(h, hostsFile); err != nil {
			return err
		}
	}
	return nil
}

func (s *site) Remove(name string) ([]string, error) { return Down(name) }

// removeDead removes what a dead lab of that name left, if anything.
func removeDead(lab string) ([]string, error) {
	if _, err := os.Stat(device.Dir(lab)); err != nil {
		if nss, _ := labNamespaces(lab); len(nss) == 0 {
			return nil, nil
		}
	}
	return Down(lab)
}

// CheckPrivileges returns a clear error unless this process may create
// namespaces and TUN devices.
func CheckPrivileges() error {
	if device.HasCaps(device.CapNetAdmin, device.CapSysAdmin) {
		return nil
	}
	return errors.New("faultbox lab needs root: it creates network namespaces and TUN devices (CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo")
}

// checkTools returns a clear error unless the lab can be made here.
func checkTools() error {
	if err := device.CheckTUN(); err != nil {
		return err
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("faultbox lab needs the ip command (iproute2)")
	}
	return nil
}

// WriteSummary prints what Up made: hosts, addresses, profile, seed,
// capture.
func WriteSummary(w io.Writer, st *device.State) error {
	hosts, err := Hosts(st)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "lab %s is up (device pid %d)\n", st.Name, st.Device.PID)
	for _, h := range hosts {
		fmt.Fprintf(w, "  %-10s %-15s %-15s %s\n", h.Name, h.IPv4, h.IPv6, h.Namespace)
	}
	fmt.Fprintf(w, "profile %s, seed %d\n", st.Profile, st.Seed)
	if st.Capture != "" {
		fmt.Fprintf(w, "capture %s\n", st.Capture)
	}
	if err := device.WriteAPISummary(w, st); err != nil {
		return err
	}
	fmt.Fprintf(w, "run a command in a host:  faultbox lab exec --name %s %s -- CMD ...\n", st.Name, hosts[0].Name)
	return nil
}
