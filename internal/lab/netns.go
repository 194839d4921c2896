package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/netns"
)

func netnsExists(ns string) bool {
	_, err := os.Stat(netns.Path(ns))
	return err == nil
}

// createHost makes host's namespace with lo up and its /etc/hosts.
func createHost(h Host, hostsFile []byte) error {
	if err := netns.Create(h.Namespace); err != nil {
		return err
	}
	nl, err := netns.Handle(h.Namespace)
	if err != nil {
		return err
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("%s: lo up: %w", h.Namespace, err)
	}
	dir := filepath.Dir(hostsFilePath(h.Namespace))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(hostsFilePath(h.Namespace), hostsFile, 0o644)
}

// addressHost gives the host's port its addresses and the lab's routes.
// IPv6 skips duplicate address detection: the address is usable at once
// and nobody else can hold it on a point-to-point link.
func addressHost(h Host) error {
	nl, err := netns.Handle(h.Namespace)
	if err != nil {
		return err
	}
	defer nl.Close()
	link, err := nl.LinkByName(HostInterface)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Namespace, err)
	}
	for _, a := range []struct {
		addr  netip.Addr
		flags int
	}{{h.IPv4, 0}, {h.IPv6, unix.IFA_F_NODAD}} {
		ipnet := &net.IPNet{IP: a.addr.AsSlice(), Mask: net.CIDRMask(a.addr.BitLen(), a.addr.BitLen())}
		if err := nl.AddrAdd(link, &netlink.Addr{IPNet: ipnet, Flags: a.flags}); err != nil {
			return fmt.Errorf("%s: address %s on %s: %w", h.Namespace, a.addr, HostInterface, err)
		}
	}
	for _, r := range []struct {
		dst netip.Prefix
		src netip.Addr
	}{{Net4, h.IPv4}, {Net6, h.IPv6}} {
		dst := &net.IPNet{IP: r.dst.Addr().AsSlice(), Mask: net.CIDRMask(r.dst.Bits(), r.dst.Addr().BitLen())}
		if err := nl.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Src: r.src.AsSlice()}); err != nil {
			return fmt.Errorf("%s: route %s on %s: %w", h.Namespace, r.dst, HostInterface, err)
		}
	}
	return nil
}

// killNetnsProcs SIGKILLs every process in namespace ns except this one,
// for at most about a second (netns.Kill). It returns how many it killed.
func killNetnsProcs(ns string) (int, error) {
	id, err := netns.IDOf(ns)
	if err != nil {
		if !netnsExists(ns) {
			return 0, nil
		}
		return 0, err
	}
	return netns.Kill(id, time.Second)
}

// removeNetns kills the namespace's processes and deletes it and its /etc
// files. It returns what it removed, for `lab down` to print.
func removeNetns(ns string) ([]string, error) {
	var removed []string
	var errs []error
	if netnsExists(ns) {
		n, err := killNetnsProcs(ns)
		if err != nil {
			errs = append(errs, err)
		}
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err)
		} else if n > 0 {
			removed = append(removed, fmt.Sprintf("namespace %s (killed %d processes)", ns, n))
		} else {
			removed = append(removed, "namespace "+ns)
		}
	}
	etc := filepath.Join(NetnsEtc, ns)
	if _, err := os.Stat(etc); err == nil {
		if err := os.RemoveAll(etc); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, etc)
		}
	}
	return removed, errors.Join(errs...)
}

// quietIPv6 stops the kernel's own IPv6 chatter (router solicitations) on
// interfaces created later in ns, so the device's counters show only the
// traffic of the programs in the lab.
func quietIPv6(ns string) error {
	return netns.Do(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/default/router_solicitations", []byte("0\n"), 0)
	})
}
