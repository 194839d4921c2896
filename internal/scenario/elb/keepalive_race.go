package elb

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
)

// elb-keepalive-race (docs/field-failures.md#elb-keepalive-race). A
// Classic ELB reuses a pooled keep-alive connection just as the backend's
// idle timeout closes it: the request meets a closed connection and the
// LB answers 504 with almost no backend time. Seven arms run at once, one
// port each, six against faultbox serve and one against Apache, both with
// a 1 s keep-alive timeout, so the run shows the failure rate against the
// server's idle timeout and the LB's reuse timing, the race widened on
// purpose by holding the server's FIN, the fix (the LB's idle timeout
// below the server's), and what each kind of server does with the late
// request (docs/field-failures.md#third-party-stacks): faultbox serve
// closes fully, as Go net/http does, and its kernel answers with a RST;
// Apache's lingering close ACKs and discards it, and the LB reads EOF when
// the FIN arrives.

const (
	serverIdle = time.Second // serve --keepalive-timeout, Apache's KeepAliveTimeout
	// The server's FIN to the LB is held finDelay on three arms. A hold of
	// 20 ms is enough on an idle machine; on a loaded one a process stalls
	// for longer at times, moving the server's close or the LB's send out
	// of so narrow a window. So the window is wide and the aim its middle:
	// either side may be half of it late. Requests the evidence shows
	// mistimed by a longer stall are counted apart (raceStats.mistimed).
	finDelay = 300 * time.Millisecond // fin-delay on server→lb FINs (arms 8603, 8604, 8607)
	aimIn    = finDelay / 2           // aimed into the middle of the widened window
	aimPast  = 2 * finDelay           // aimed past it
	lbBelow  = 700 * time.Millisecond // the fix: 300 ms below the server's, more than a stall
	traffic  = 9 * time.Second        // how long clients start requests
)

// serverKind is how a backend ends a keep-alive connection at its idle
// timeout, which decides what a request that crosses its FIN gets
// (docs/field-failures.md#third-party-stacks).
type serverKind int

const (
	// fullClose: close(), as Go net/http and faultbox serve do. The kernel
	// answers a request arriving after it with a RST: ECONNRESET at the LB.
	fullClose serverKind = iota
	// lingeringClose: Apache 2.4's lingering close, shutdown(SHUT_WR) and
	// then read and discard until the peer closes or 2 s pass. The late
	// request is ACKed and discarded, no RST: the LB reads EOF when the
	// server's FIN arrives.
	lingeringClose
)

func (k serverKind) String() string {
	if k == lingeringClose {
		return "Apache 2.4 (lingering close)"
	}
	return "faultbox serve (full close)"
}

type raceArm struct {
	name   string
	port   int
	aim    time.Duration // 0: not aimed
	check  bool          // check_before_reuse: the LB notices a FIN that has arrived
	lbIdle time.Duration
	delay  bool // the device holds the server's FIN
	server serverKind
	expect report.Outcome
	change string
}

// apachePort is the Apache arm's: the FIN-held arm (8603) in front of
// Apache instead of faultbox serve.
const apachePort = 8607

var raceArms = []raceArm{
	{"aimed, blind LB", 8601, aimIn, false, time.Minute, false, fullClose, report.Reproduced,
		fmt.Sprintf("the built-in elb: pooled connections reused without a look; each reuse sent at the server's idle timeout + %v", aimIn)},
	{"aimed, checking LB", 8602, aimIn, true, time.Minute, false, fullClose, report.NotReproduced,
		fmt.Sprintf("the LB drops a pooled connection whose FIN has arrived (check_before_reuse), checked when the request goes out at +%v", aimIn)},
	{fmt.Sprintf("aimed, checking LB, FIN held %v", finDelay), 8603, aimIn, true, time.Minute, true, fullClose, report.Reproduced,
		fmt.Sprintf("as above, and the device holds the server's FIN to the LB %v (fin-delay): the race window grows to T..T+%v", finDelay, finDelay)},
	{"aimed past the window", 8604, aimPast, true, time.Minute, true, fullClose, report.NotReproduced,
		fmt.Sprintf("FIN held %v, reuse at +%v: the FIN has arrived, the LB notices", finDelay, aimPast)},
	{"unaimed, low rate", 8605, 0, false, time.Minute, false, fullClose, "", // its rate is reported, not expected
		"the built-in elb (MRU, 60 s idle timeout) and two clients with 0.5-1.5 s between requests"},
	{"LB idle timeout below the server's", 8606, 0, false, lbBelow, false, fullClose, report.NotReproduced,
		fmt.Sprintf("the same traffic with the LB's idle timeout %v, below the server's %v: the LB always closes first", lbBelow, serverIdle)},
	{fmt.Sprintf("Apache, aimed, checking LB, FIN held %v", finDelay), apachePort, aimIn, true, time.Minute, true, lingeringClose, report.Reproduced,
		fmt.Sprintf("the FIN-held arm in front of Apache 2.4 (event MPM, KeepAliveTimeout %v) instead of faultbox serve: a lingering close, not a full one", serverIdle)},
}

var raceProfile = fmt.Sprintf(`name: elb-keepalive-race
description: >-
  The keepalive-race profile narrowed to the LB's backend connections of
  three arms and widened: the server's FIN toward the lb host is held %[1]v
  on ports 8603, 8604 (faultbox serve) and %[2]d (Apache); RSTs, ACKs and
  everything else pass at once and overtake it.
sources:
  - "'Akka-http random connections close', Lightbend discussion forum, 2019, https://discuss.lightbend.com/t/akka-http-random-connections-close/3252"
  - "delaying the server's FIN by D widens the failing window to about T..T+D: docs/field-failures.md#elb-keepalive-race"
  - "a server that closes fully answers the late request with a RST, Apache's lingering close does not: docs/field-failures.md#third-party-stacks"
behaviors:
  - type: fin-delay
    match: {from: server, to: lb, tcp_flags: [fin], port: 8603}
    delay: %[1]v
  - type: fin-delay
    match: {from: server, to: lb, tcp_flags: [fin], port: 8604}
    delay: %[1]v
  - type: fin-delay
    match: {from: server, to: lb, tcp_flags: [fin], port: %[2]d}
    delay: %[1]v
`, finDelay, apachePort)

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "elb-keepalive-race",
		Summary: "Classic ELB reuses a keep-alive connection as the backend's idle timeout closes it: 504; RST from a full close, EOF from Apache",
		Description: "An Amazon Classic ELB in front of akka-http returned 504 with almost zero backend time about once per " +
			"800 K requests ('Akka-http random connections close', Lightbend forum, 2019): the backend's idle timeout closed a " +
			"pooled keep-alive connection just as the LB sent the next request on it, and the LB did not retry. What the " +
			"request meets depends on how the server closes. One that closes fully (Go net/http, faultbox serve) answers it " +
			"with a RST: the LB gets ECONNRESET. Apache 2.4 closes with a lingering close: it reads and discards the request " +
			"and sends no RST, and the LB reads EOF when the server's FIN arrives. Either way the LB fails the request (this " +
			"one, like the ELB, with 504; nginx and HAProxy with 502). Here the backends are faultbox serve and Apache 2.4 " +
			"(event MPM), both with a 1 s keep-alive timeout, and the LB is faultbox proxy (elb) in the lb host. Seven arms run " +
			"side by side, one port each: requests aimed just after the idle timeout with an LB that reuses blindly and one " +
			"that notices a FIN that has arrived; the same with the server's FIN held on the wire, which makes the failure " +
			"certain, in front of faultbox serve and in front of Apache; aimed past that window; unaimed traffic at a low " +
			"rate; and the fix, the LB's idle timeout below the server's. The capture shows each kind's answer: the RST, or " +
			"Apache's ACK of the request and its FIN arriving after it.",
		Hosts:       []string{"client", "lb", "server"},
		ProfileYAML: raceProfile,
		Budget:      25 * time.Second,
		Drive:       driveRace,
		Judge:       judgeRace,
	})
}

func raceProcName(a raceArm) string { return fmt.Sprintf("lb-%d", a.port) }

func driveRace(c *scenario.Context) error {
	// Apache's answer to GET / is 1000 bytes, as faultbox serve's.
	docroot, err := scenario.Docroot([]byte(strings.Repeat("faultbox\n", 125)[:1000]))
	if err != nil {
		return err
	}
	defer os.RemoveAll(docroot)
	if err := startRaceServers(c, docroot); err != nil {
		return err
	}
	c.Step("scenario", "clients start: 4 per aimed arm back to back, 2 per unaimed arm with 0.5-1.5 s gaps, for %v", traffic)
	if err := runRaceClients(c); err != nil {
		return err
	}
	return c.Wait("a last socket sample", 50*time.Millisecond)
}

// startRaceServers starts the servers (faultbox serve, Apache), one LB per
// arm in front of its port, and the socket samplers of both.
func startRaceServers(c *scenario.Context, docroot string) error {
	var ports, apachePorts []int
	flags := []string{"--keepalive-timeout", serverIdle.String()}
	for _, a := range raceArms {
		ports = append(ports, a.port)
		if a.server == lingeringClose {
			apachePorts = append(apachePorts, a.port)
			continue
		}
		flags = append(flags, "--listen", scenario.Addr("server", a.port))
	}
	if _, err := c.ServeWith(nice, "server", "serve", flags...); err != nil {
		return err
	}
	if err := startRaceApache(c, apachePorts, docroot); err != nil {
		return err
	}
	for _, a := range raceArms {
		settings := fmt.Sprintf("idle_timeout: %v, order: mru, check_before_reuse: %v", a.lbIdle, a.check)
		if a.aim != 0 {
			settings += fmt.Sprintf(", aim_at_idle_timeout: {backend_idle: %v, offset: %v}", serverIdle, a.aim)
		}
		if err := startProxy(c, raceProcName(a), a.port, a.name+": "+a.change, settings, nice...); err != nil {
			return err
		}
	}
	return lbsUp(c, ports)
}

// startRaceApache starts Apache on ports with the same keep-alive timeout
// as faultbox serve, its documents in docroot, and waits until it listens.
func startRaceApache(c *scenario.Context, ports []int, docroot string) error {
	p, err := c.StartApache(scenario.Apache{
		Name: "apache", Host: "server", Ports: ports, Docroot: docroot, Prefix: nice,
		Comment: "elb-keepalive-race: Apache 2.4, event MPM, behind the LB of the lingering-close arm",
		// Debian ships KeepAliveTimeout 5: the same 1 s as faultbox serve's.
		Directives: []string{"KeepAlive On", fmt.Sprintf("KeepAliveTimeout %d", int(serverIdle.Seconds())), "MaxKeepAliveRequests 0"},
	})
	if err != nil {
		return err
	}
	return c.WaitListening("server", "Apache", p, ports...)
}

// runRaceClients runs every arm's clients for the traffic time and waits
// until they are done.
func runRaceClients(c *scenario.Context) error {
	until := time.Now().Add(traffic)
	// Both unaimed arms get the same seeded gaps: only the LB differs.
	gaps := drawGaps(rand.New(rand.NewPCG(c.Seed, 0x656c62)), 2)
	var wg sync.WaitGroup
	for _, a := range raceArms {
		loops := 4
		if a.aim == 0 {
			loops = len(gaps)
		}
		for i := range loops {
			var g []time.Duration
			if a.aim == 0 {
				g = gaps[i]
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Staggered, so that a stall of the machine hits one
				// aimed request of an arm, not all its clients at once.
				if !sleep(c, time.Duration(i)*250*time.Millisecond) {
					return
				}
				clientLoop(c, a.name, fmt.Sprintf("client :%d/%d", a.port, i+1), a.port, until, g)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	finished := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	// A request started at the end waits out its hold (at most 1.6 s) and
	// at worst its 5 s deadline.
	limit := traffic + 7*time.Second
	if _, err := c.WaitFor("the clients", limit, finished); err != nil {
		return err
	}
	if !finished() {
		return fmt.Errorf("the clients did not finish within %v", limit)
	}
	return nil
}

// sleep waits d unless the run ends first (false).
func sleep(c *scenario.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.Context().Done():
		return false
	}
}

// drawGaps draws loops sequences of idle gaps, uniform in 0.5-1.5 s,
// enough for traffic.
func drawGaps(r *rand.Rand, loops int) [][]time.Duration {
	out := make([][]time.Duration, loops)
	for i := range out {
		for sum := time.Duration(0); sum < traffic; {
			g := 500*time.Millisecond + time.Duration(r.Int64N(int64(time.Second)))
			out[i] = append(out[i], g)
			sum += g
		}
	}
	return out
}

// clientLoop sends GETs through the LB on one keep-alive connection,
// one after another (waiting gaps[i] before request i+1 when given), until
// until; it redials after a failed one. Each request is a ClientResult.
func clientLoop(c *scenario.Context, arm, name string, port int, until time.Time, gaps []time.Duration) {
	var conn *net.TCPConn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for i := 0; i < 64 && time.Now().Before(until); i++ {
		detail := ""
		if i > 0 && gaps != nil {
			g := gaps[(i-1)%len(gaps)]
			if !sleep(c, g) {
				return
			}
			detail = fmt.Sprintf("sent after %v idle", g.Round(time.Millisecond))
		}
		r := scenario.ClientResult{Name: fmt.Sprintf("%s #%d", name, i+1), Arm: arm, Detail: detail}
		if conn == nil {
			var err error
			if conn, err = c.Dial("client", scenario.Addr("lb", port), 2*time.Second); err != nil {
				r.Start, r.End = time.Now(), time.Now()
				r.SetErr(err)
				c.Record(r)
				return
			}
			br = bufio.NewReader(conn)
		}
		r.Local, r.Remote = scenario.Ends(conn)
		r.Start = time.Now()
		conn.SetDeadline(r.Start.Add(5 * time.Second))
		status, n, err := scenario.Get(conn, br, "/", false, -1)
		r.End, r.Status, r.Bytes = time.Now(), status, n
		r.SetErr(err)
		c.Record(r)
		if err != nil {
			conn.Close()
			conn = nil
		}
	}
}
