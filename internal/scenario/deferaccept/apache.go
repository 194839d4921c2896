package deferaccept

import (
	"fmt"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/scenario"
)

// dx-defer-accept: the Juniper DX's idle pool against Apache httpd 2.4's
// default TCP_DEFER_ACCEPT (docs/field-failures.md#juniper-dx-defer-accept).
//
// On current kernels a deferred connection is not dropped. The DX's bare
// handshake ACK is swallowed (TcpExtTCPDeferAcceptDrop) and the kernel
// stays silent until one SYN-ACK retransmit at the end of the defer
// period; it takes the DX's ACK to it as the end of the handshake and
// hands the connection to Apache, which closes it with a FIN after its
// Timeout (a 408 in its log). A request the DX sends after that FIN gets
// no response: the DX's client sees an empty reply. A request sent within
// the defer period is accepted at once with its data, except one sent
// after the DX's own TCP keep-alive probe: the request socket's answer to
// the probe carries a newer timestamp than its SYN-ACK, and the kernel
// refuses every data segment echoing it (TcpExtTSEcrRejected) until the
// SYN-ACK retransmit, so the request stalls until then.
//
// With `AcceptFilter http none` the ACK completes the handshake, Apache
// accepts at once and closes the idle connection after the same Timeout:
// the DX, which does not notice, fails sooner. So turning defer-accept off
// does not fix the DX; a DX that checks a pooled connection before reuse
// (arm C) does not fail at all. The old timeline (several SYN-ACK
// retransmits, then a silent drop) needs the ACK after the single
// retransmit to be lost; gprs-defer-accept shows it, since with Apache's
// defer period it would take too long here.
//
// The requests go out on pooled connections 1-5 at ages that put one in
// each window: before Apache's Timeout, inside the defer period before
// and after the DX's keep-alive probe (the stall), after the deferred
// accept but before Apache's close, and after it.

// Apache's timers in the run. Debian ships Timeout 300 and KeepAliveTimeout
// 5; Timeout is what closes a connection that never sent a request.
const (
	apacheTimeout   = 5
	apacheKeepAlive = 2
)

var apacheRun = &poolRun{
	Server: "Apache",
	Arms: poolArms(
		"Apache's Linux default, AcceptFilter http data (TCP_DEFER_ACCEPT 30 s); the DX uses whatever it pooled",
		"AcceptFilter http none, the fix of the 2006 report; same DX",
		"AcceptFilter http data, but the DX checks a pooled connection before reuse (check_before_reuse: true)",
	),
	Ages:     []time.Duration{2 * time.Second, 8 * time.Second, 20 * time.Second, 34 * time.Second, 39 * time.Second},
	Deadline: 20 * time.Second,
	Sample:   200 * time.Millisecond, // Apache's timers are seconds; keeps the report small
	Start:    startApache,
	Notes: []string{
		"This kernel vs the 2006 report: the server no longer retransmits the SYN-ACK 5 times and drops the half-open connection; " +
			"it retransmits once at the end of the defer period (31 s for Apache's 30), accepts, and Apache's Timeout closes the idle " +
			"connection with a FIN. The DX's blank page remains because it reuses a connection the server has closed.",
		"AcceptFilter http none, the 2006 fix, does not help this DX on this kernel: Apache then closes an idle pooled connection " +
			"after its Timeout instead of after 31 s + Timeout. What helps is a load balancer that notices a closed pooled connection " +
			"(arm C) or keeps its pool's idle time below the server's Timeout.",
		fmt.Sprintf("Apache ran with Timeout %d and KeepAliveTimeout %d (Debian ships 300 and 5) so the run takes ~45 s; its 30 s "+
			"defer is hard-coded. With Debian's Timeout 300 the same failure starts after 331 s of idle with defer-accept, after "+
			"300 s without.", apacheTimeout, apacheKeepAlive),
	},
}

func init() {
	apacheRun.register(&scenario.Scenario{
		Name:    "dx-defer-accept",
		Summary: "Juniper DX idle pool vs Apache's default TCP_DEFER_ACCEPT: blank pages, with AcceptFilter none and a checking DX as A/B/C (~45 s)",
		Description: "A Juniper DX load balancer keeps 6 connections per backend open before it has any request for them " +
			"(Launchpad bug 134274, 2006): Apache's default AcceptFilter http data (TCP_DEFER_ACCEPT) swallowed their bare ACKs, the " +
			"kernel of the time retransmitted the SYN-ACK 5 times over ~190 s and dropped the half-open connection, and the " +
			"DX's next request on it got a RST: a blank page, under light traffic only. Current kernels (5.14 in katou-h's Qiita article; this " +
			"run) do it differently: one SYN-ACK retransmit at the end of the 31 s defer period, then the connection is accepted " +
			"and Apache's own Timeout closes it with a FIN, which the DX does not notice, so a later request still gets an empty " +
			"reply. Three arms run side by side, one Apache and one `faultbox proxy --profile juniper-dx` each: A with Apache's " +
			"default, B with AcceptFilter http none, C with the default and a DX that checks its pooled connections before reuse. " +
			"Each DX gets requests at idle 2, 8, 20, 34 and 39 s. Apache's Timeout is 5 s and KeepAliveTimeout 2 s (Debian: 300 and " +
			"5) so the run ends in ~45 s; the 30 s defer is hard-coded in httpd. On this kernel A fails only after 31.6 + 5 s, B " +
			"already after 5 s (defer-accept off is no fix here), C never; a request sent to a deferred connection after the " +
			"DX's TCP keep-alive probe stalls until the SYN-ACK retransmit (TcpExtTSEcrRejected).",
		Budget: 65 * time.Second,
	})
}

// startApache starts Apache (event MPM) for arm a in the server host,
// its configuration in the report directory.
func startApache(c *scenario.Context, a poolArm, deferOn bool, docroot string) (*scenario.Proc, string, error) {
	filter, desc := "# AcceptFilter not set: Apache's Linux default, AcceptFilter http data (TCP_DEFER_ACCEPT 30)",
		"Apache, AcceptFilter http data (default)"
	if !deferOn {
		filter, desc = "AcceptFilter http none", "Apache, AcceptFilter http none"
	}
	name := "apache-" + strings.ToLower(a.Name)
	p, err := c.StartApache(scenario.Apache{
		Name: name, Host: "server", Ports: []int{int(a.Port)}, Docroot: docroot,
		Comment: fmt.Sprintf("%s: arm %s of dx-defer-accept", name, a.Name),
		Directives: []string{
			"# Debian ships Timeout 300 and KeepAliveTimeout 5: shortened for the run.",
			fmt.Sprintf("Timeout %d", apacheTimeout), "KeepAlive On", fmt.Sprintf("KeepAliveTimeout %d", apacheKeepAlive), filter,
		},
	})
	if err != nil {
		return nil, "", err
	}
	return p, fmt.Sprintf("%s, Timeout %d, KeepAliveTimeout %d", desc, apacheTimeout, apacheKeepAlive), nil
}
