package lab

import (
	"fmt"
	"log"
	"strings"
	"sync"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/tun"
)

// record is a lab's placement in its state.json.
type record struct {
	Hosts []Host `json:"hosts"`
}

// Hosts returns the hosts a lab's state records.
func Hosts(st *device.State) ([]Host, error) {
	var r record
	if err := st.DecodeAs(device.KindLab, &r); err != nil {
		return nil, err
	}
	return r.Hosts, nil
}

// placement puts a lab's ports into its hosts' namespaces: each host's
// only interface is its TUN port, with the host's addresses and the lab's
// routes.
type placement struct {
	name  string
	hosts []Host
	mtu   int
}

// Placement is the device.PlaceFunc of labs.
func Placement(st *device.State) (device.Placement, error) {
	hosts, err := Hosts(st)
	if err != nil {
		return nil, err
	}
	return &placement{name: st.Name, hosts: hosts, mtu: st.MTU}, nil
}

func (p *placement) Place(lg *log.Logger) ([]device.Port, error) {
	var ports []device.Port
	for _, h := range p.hosts {
		if err := quietIPv6(h.Namespace); err != nil {
			lg.Printf("%s: %v (carrying on: the kernel's router solicitations will show as no-route)", h.Namespace, err)
		}
		dev, err := tun.Open(tun.Options{Name: HostInterface, NetNS: h.Namespace, MTU: p.mtu, Offload: true})
		if err != nil {
			return ports, fmt.Errorf("host %s: %w", h.Name, err)
		}
		ports = append(ports, device.Port{Name: h.Name, Namespace: h.Namespace, Dev: dev, Prefixes: h.Prefixes()})
		if err := addressHost(h); err != nil {
			return ports, fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	return ports, nil
}

func (p *placement) Check(lg *log.Logger) error { return probeAll(p.hosts, lg) }

func (p *placement) Resolver() behaviors.Resolver { return Resolver(p.hosts) }

func (p *placement) Describe() string {
	names := make([]string, len(p.hosts))
	for i, h := range p.hosts {
		names[i] = h.Name
	}
	return "lab hosts " + strings.Join(names, ", ")
}

// Remove removes the whole lab: processes in its namespaces, the
// namespaces and their /etc files. Namespaces are removed in parallel:
// each may have processes to kill.
func (p *placement) Remove(lg *log.Logger) {
	var wg sync.WaitGroup
	for _, h := range p.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			removed, err := removeNetns(h.Namespace)
			if err != nil {
				lg.Printf("%s: %v", h.Namespace, err)
			}
			if len(removed) > 0 {
				lg.Printf("removed %s", strings.Join(removed, ", "))
			}
		}()
	}
	wg.Wait()
}
