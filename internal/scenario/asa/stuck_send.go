package asa

import (
	"fmt"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// asa-stuck-send (docs/field-failures.md#cisco-asa-off-by-one-rst): the
// cost. A server is writing a large response when its client disappears
// behind a Cisco ASA that swallowed the client's FIN (the teardown that
// hangs every stack). How long until someone gives up: the kernel
// (tcp_retries2), the application (SO_SNDTIMEO, as Varnish's 600 s
// send_timeout), or the kernel told by TCP_USER_TIMEOUT? Three servers,
// one per port, differ in that only.

type stuckArm struct {
	name   string
	port   int
	serve  string   // process name
	flags  []string // serve flags of the arm
	change string
}

var stuckArms = []stuckArm{
	{"no send timeout", 8101, "serve-plain", nil, "the kernel's retransmission limit only (tcp_retries2=5)"},
	{"SO_SNDTIMEO 2s", 8102, "serve-sndtimeo", []string{"--sndtimeo", "2s"}, "the application gives up a send that moves nothing for 2 s (Varnish: 600 s), then close()s"},
	{"TCP_USER_TIMEOUT 3s", 8103, "serve-usertimeout", []string{"--user-timeout", "3s"}, "the kernel drops the connection when data stays unacknowledged 3 s"},
}

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "asa-stuck-send",
		Summary: "server writing to a client gone behind a Cisco ASA: how long until the kernel or the application gives up",
		Description: "A client behind a Cisco ASA cancels a large download; the ASA swallows its FIN, sends the server an " +
			"off-by-one RST that the server ignores, and drops everything after (profile cisco-asa-lost-fin). The server keeps " +
			"retransmitting into the void. In 2015 Varnish sockets sat there for its 600 s send timeout. Three servers run side by " +
			"side: no send timeout (the kernel's tcp_retries2 decides), SO_SNDTIMEO (the application gives up, the kernel socket " +
			"lives on, orphaned) and TCP_USER_TIMEOUT (the kernel gives up early). Durations are measured from the server socket " +
			"samples and the server's log.",
		Profile: "cisco-asa-lost-fin",
		Sysctls: []scenario.Sysctl{
			{Host: "server", Key: "net.ipv4.tcp_retries2", Value: "5",
				Why: "a connection retransmitting to nobody is dropped after about 12.6 s (200 ms × (2^6−1)) instead of about 15 minutes (default 15)"},
			{Host: "server", Key: "net.ipv4.tcp_orphan_retries", Value: "5",
				Why: "a socket its application closed (orphaned) retransmits as long as one it still holds, instead of the default 8 (about 100 s)"},
		},
		Budget: 22 * time.Second,
		Drive:  driveStuckSend,
		Judge:  judgeStuckSend,
	})
}

func driveStuckSend(c *scenario.Context) error {
	for _, a := range stuckArms {
		flags := append([]string{"--listen", scenario.Addr("server", a.port), "--keepalive-timeout", "0"}, a.flags...)
		if _, err := c.Serve("server", a.serve, flags...); err != nil {
			return err
		}
	}
	names := make([]string, len(stuckArms))
	ports := make([]int, len(stuckArms))
	for i, a := range stuckArms {
		names[i], ports[i] = a.name, a.port
	}
	if err := cancelDownloads(c, names, ports); err != nil {
		return err
	}
	return waitServerSocketsGone(c, ports, 18*time.Second,
		"the server's sockets to give up (tcp_retries2=5: about 13 s)")
}

func judgeStuckSend(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	var parts []string
	var plain *download
	for i, a := range stuckArms {
		r, bad := e.ArmClient(a.name, fmt.Sprintf("arm %q: its client", a.name))
		if bad != nil {
			return *bad
		}
		t := readDownload(e, r, a.serve)
		if i == 0 {
			plain = &t
		}
		label := fmt.Sprintf("[:%d]", a.port)
		v.Timeline = append(v.Timeline, t.timeline(e, label)...)
		v.Ladder = append(v.Ladder, t.ladderConn())
		what := describeGiveUp(&t)
		v.Runs = append(v.Runs, report.Run{Name: a.name, Change: a.change, Outcome: scenario.OutcomeIf(t.stuck), Reason: what})
		parts = append(parts, a.name+": "+what)
	}
	if plain.stuck {
		v.Outcome = report.Reproduced
		v.Reason = "the server kept a connection to a vanished client, retransmitting — " + strings.Join(parts, "; ")
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = "the server learnt at once that the client was gone — " + strings.Join(parts, "; ")
	}
	return v
}

// describeGiveUp says who gave up when, measured from the client's
// disappearance (the device's RST, else the client's FIN).
func describeGiveUp(t *download) string {
	var b strings.Builder
	if t.rst == nil {
		b.WriteString("no teardown by the device (the client's FIN reached the server); ")
	}
	if t.logErr != nil {
		fmt.Fprintf(&b, "the application gave up after %s (%s)", scenario.Secs(t.logErrAfter), t.logText())
	} else {
		b.WriteString("the application never gave up")
	}
	switch {
	case t.unsampled:
		fmt.Fprintf(&b, "; its socket was gone by the first sample after the client was (%s)", scenario.Millis(t.lived))
	case !t.life.Seen:
		b.WriteString("; its socket was never sampled")
	case t.stillThere:
		fmt.Fprintf(&b, "; its socket was still %s %s after the client was gone (sampling ended)", t.life.LastState(), scenario.Secs(t.lived))
	default:
		fmt.Fprintf(&b, "; the kernel removed its socket after %s", scenario.Secs(t.lived))
		if t.logErr != nil {
			if after := orphanStates(t); after != "" {
				fmt.Fprintf(&b, ", %s after the application let go (orphaned in %s)", scenario.Secs(t.lived-t.logErrAfter), after)
			}
		}
	}
	if t.stuck {
		fmt.Fprintf(&b, "; 1 s after the client was gone it was %s with %s unacknowledged%s", t.stuckState, scenario.ByteSize(t.stuckUnacked), t.timerText())
	}
	return b.String()
}

// orphanStates lists the states the socket was seen in after the
// application closed it, if it lived on noticeably (> 100 ms).
func orphanStates(t *download) string {
	if t.logErr == nil || t.life.Gone.IsZero() || t.life.Gone.Sub(t.logErr.At) < 100*time.Millisecond {
		return ""
	}
	var names []string
	for _, sp := range t.life.Spans {
		if sp.To.After(t.logErr.At) {
			n := sp.State.String()
			if len(names) == 0 || names[len(names)-1] != n {
				names = append(names, n)
			}
		}
	}
	return strings.Join(names, ", ")
}
