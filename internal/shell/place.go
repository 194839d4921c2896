package shell

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
	"github.com/faultbox/faultbox/tun"
)

// CommandInterface is the name of the device's port in the command's
// namespace, its only way out.
const CommandInterface = "fbx0"

// Port names, as status and captures show them.
const (
	commandPort = "command"
	hostPort    = "host"
)

// everywhere is where the command's default routes point: fbx0.
var everywhere = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// beyond is what the device sends to the host side's port: every
// destination but the command's (its port comes first), IPv6's
// link-local fe80::/10, which no router forwards, and multicast ff00::/8,
// which the device does not route. Without that, the MLD reports each
// side's kernel sends on its port would be routed to the host side, the
// host's own back into it.
var beyond = prefixes("0.0.0.0/0", "::/1", "8000::/2", "c000::/3", "e000::/4", "f000::/5", "f800::/6", "fc00::/7", "fe00::/9", "fec0::/10")

func prefixes(ps ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// placement puts a run's ports in place, from the device process, which
// runs on the host side: fbx0 in the command's namespace with a default
// route through it, and fbxrunS here with routes to the command's
// addresses, the masquerade and the DNS forwarder.
type placement struct {
	name string
	rec  *record
	mtu  int

	dns        *dnsForwarder
	masquerade bool // the nft table is in place
}

// Placement is the device.PlaceFunc of runs.
func Placement(st *device.State) (device.Placement, error) {
	rec, err := decode(st)
	if err != nil {
		return nil, err
	}
	return &placement{name: st.Name, rec: rec, mtu: st.MTU}, nil
}

func (p *placement) Place(lg *log.Logger) ([]device.Port, error) {
	s := p.rec.Slot
	cmdNS, err := p.commandNetns()
	if err != nil {
		return nil, err
	}
	if err := forwardIn(cmdNS); err != nil {
		return nil, err
	}
	var ports []device.Port
	dev, err := tun.Open(tun.Options{Name: CommandInterface, NetNS: cmdNS, MTU: p.mtu, Offload: true})
	if err != nil {
		return nil, fmt.Errorf("the command's port: %w", err)
	}
	ports = append(ports, device.Port{Name: commandPort, Namespace: "run " + p.name + " " + p.rec.Netns.String(), Dev: dev, Prefixes: s.CommandPrefixes()})
	if err := addressCommandSide(cmdNS, s); err != nil {
		return ports, fmt.Errorf("the command's namespace: %w", err)
	}

	host, err := tun.Open(tun.Options{Name: s.HostInterface(), MTU: p.mtu, Offload: true})
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EINVAL) {
		err = fmt.Errorf("%w (an interface named %s exists here already)", err, s.HostInterface())
	}
	if err != nil {
		return ports, fmt.Errorf("the host side's port: %w", err)
	}
	ports = append(ports, device.Port{Name: hostPort, Namespace: p.hostName(), Dev: host, Prefixes: beyond})
	if err := addressHostSide(s); err != nil {
		return ports, fmt.Errorf("the host side: %w", err)
	}
	c, err := nftables.New()
	if err == nil {
		err = addMasquerade(c, p.name, s)
	}
	if err != nil {
		return ports, err
	}
	p.masquerade = true

	upstreams := make([]netip.AddrPort, 0, len(p.rec.Nameservers))
	for _, ns := range p.rec.Nameservers {
		if a, err := netip.ParseAddr(ns); err == nil {
			upstreams = append(upstreams, netip.AddrPortFrom(a, 53))
		}
	}
	on := []netip.AddrPort{netip.AddrPortFrom(s.Gateway4(), 53), netip.AddrPortFrom(s.Gateway6(), 53)}
	if p.dns, err = startDNS(on, upstreams, lg); err != nil {
		// A resolver here that listens on every address answers in our
		// stead; without one, names do not resolve, but the run works.
		lg.Printf("%v: the command's queries go to whatever listens on port 53 here", err)
	} else {
		lg.Printf("dns: forwarding %v to %v", on, upstreams)
	}
	return ports, nil
}

// commandNetns returns a path to the command's namespace, checking that
// the command's first process, and so its namespace, is the one the
// state names.
func (p *placement) commandNetns() (string, error) {
	r := p.rec
	if !r.Process.Alive() {
		return "", fmt.Errorf("the command's process %d is gone", r.Process.PID)
	}
	path := r.netnsPath()
	if id, err := netns.IDOf(path); err != nil || id != r.Netns {
		return "", fmt.Errorf("process %d is not in the command's namespace %s any more", r.Process.PID, r.Netns)
	}
	return path, nil
}

// forwardIn turns forwarding on in the command's namespace, which run
// created and nobody else uses: a run started inside the run (nesting)
// has its host side there.
func forwardIn(cmdNS string) error {
	return netns.Do(cmdNS, func() error {
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(f, []byte("1\n"), 0); err != nil {
				return fmt.Errorf("the command's namespace: %w", err)
			}
		}
		return nil
	})
}

// addressCommandSide brings lo up and gives fbx0 the command's addresses
// and the default routes.
func addressCommandSide(cmdNS string, s slot) error {
	h, err := netns.Handle(cmdNS)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	return address(h, CommandInterface, []netip.Addr{s.Command4(), s.Command6()}, everywhere)
}

// addressHostSide gives the host side's port its addresses and routes to
// the command's, in the device's own namespace.
func addressHostSide(s slot) error {
	h, err := netns.Handle("")
	if err != nil {
		return err
	}
	defer h.Close()
	return address(h, s.HostInterface(), []netip.Addr{s.Gateway4(), s.Gateway6()}, s.CommandPrefixes())
}

// address gives interface name the single addresses addrs and routes
// routes through it, each from the address of its family. IPv6 addresses
// skip duplicate address detection: nobody else is on a TUN link, and the
// address must be usable at once.
func address(h *netlink.Handle, name string, addrs []netip.Addr, routes []netip.Prefix) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, a := range addrs {
		na := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))}
		if a.Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, na); err != nil {
			return fmt.Errorf("%s: address %s: %w", name, a, err)
		}
	}
	for _, r := range routes {
		src := addrs[0]
		if r.Addr().Is6() {
			src = addrs[1]
		}
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r), Src: src.AsSlice(), Scope: netlink.SCOPE_LINK}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("%s: route to %s: %w", name, r, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Check proves both ways through the device with a TCP connect from the
// command's namespace to the host side, over IPv4 and IPv6.
func (p *placement) Check(lg *log.Logger) error {
	cmdNS, err := p.commandNetns()
	if err != nil {
		return err
	}
	s := p.rec.Slot
	for _, dst := range []netip.Addr{s.Gateway4(), s.Gateway6()} {
		path := fmt.Sprintf("from the command to the host side (%s)", dst)
		if err := device.Probe(lg, path, cmdNS, "", dst); err != nil {
			return err
		}
	}
	return nil
}

// Resolver resolves "client", the command, for profiles whose matches
// name hosts; a run has no other hosts.
func (p *placement) Resolver() behaviors.Resolver { return resolver(p.rec.Slot) }

func resolver(s slot) behaviors.Resolver {
	return func(name string) ([]netip.Addr, bool) {
		if name == "client" {
			return []netip.Addr{s.Command4(), s.Command6()}, true
		}
		return nil, false
	}
}

func (p *placement) Describe() string {
	s := p.rec.Slot
	return fmt.Sprintf("command %q (pid %d) at %s and %s, out through %s in %s with masquerade",
		strings.Join(p.rec.Command, " "), p.rec.Process.PID, s.Command4(), s.Command6(), s.HostInterface(), p.hostName())
}

// hostName is how the user knows the host side's namespace.
func (p *placement) hostName() string { return hostName(p.rec.Host, p.rec.HostPath) }

// Remove takes the masquerade and the DNS forwarder away and kills what
// is left in the command's namespace (the command's children), which then
// vanishes; the ports, and with them their addresses and routes, went
// with the device's TUNs.
func (p *placement) Remove(lg *log.Logger) {
	if p.dns != nil {
		p.dns.Close()
	}
	if p.masquerade {
		c, err := nftables.New()
		if err == nil {
			_, err = removeMasquerade(c, p.name)
		}
		if err != nil {
			lg.Printf("%v", err)
		}
	}
	n, err := netns.Kill(p.rec.Netns, killWait)
	if err != nil {
		lg.Printf("the command's namespace: %v", err)
	}
	if n > 0 {
		lg.Printf("killed %d processes left in the command's namespace", n)
	}
}
