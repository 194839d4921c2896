package lab

import (
	"fmt"
	"log"
	"net/netip"

	"github.com/faultbox/faultbox/internal/device"
)

// probeAll proves that traffic flows from the first host to every other
// host over IPv4 and IPv6: a TCP handshake crosses the device both ways, so
// every port is exercised in both directions (device.Probe).
func probeAll(hosts []Host, lg *log.Logger) error {
	from := hosts[0]
	for _, to := range hosts[1:] {
		for _, dst := range []netip.Addr{to.IPv4, to.IPv6} {
			path := fmt.Sprintf("from %s to %s (%s)", from.Name, to.Name, dst)
			if err := device.Probe(lg, path, from.Namespace, to.Namespace, dst); err != nil {
				return err
			}
		}
	}
	return nil
}
