package closing

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// lingering-close (docs/field-failures.md#lingering-close). A server
// answers a large POST with an error before reading the body and closes at
// once; its kernel answers the rest of the body with a RST, and the
// client, still sending, fails without ever reading the answer. A
// lingering close (half-close, drain, close) delivers it. The client is
// Python's http.client, which sends the whole body before it reads the
// response.

const (
	abruptPort = 8401
	lingerPort = 8402
	postBody   = 16 << 20
	armAbrupt  = "abrupt close"
	armLinger  = "lingering close"
)

// pythonClient is the client: one POST with a body of argv[3] bytes through
// http.client, printing what happened as JSON. After a failure it looks
// whether the answer had reached its kernel anyway.
const pythonClient = `import http.client, json, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {"status": 0, "error": "", "unread": 0, "local": "", "remote": "", "body": ""}
c = http.client.HTTPConnection(host, port, timeout=5)
out["start"] = time.time()
try:
    c.connect()
    out["local"] = "%s:%d" % c.sock.getsockname()[:2]
    out["remote"] = "%s:%d" % c.sock.getpeername()[:2]
    c.request("POST", "/upload", body=b"x" * size, headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    out["status"] = r.status
    out["body"] = r.read().decode("utf-8", "replace")
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
    try:
        c.sock.setblocking(False)
        out["unread"] = len(c.sock.recv(1 << 20))
    except Exception as e2:
        out["unread_error"] = "%s: %s" % (type(e2).__name__, e2)
out["end"] = time.time()
print(json.dumps(out))
`

func init() {
	scenario.Register(&scenario.Scenario{
		Name:    "lingering-close",
		Summary: "an early 401 to a large POST is lost to the server's RST without lingering close, delivered with it",
		Description: "A server answers a POST it will not accept (401) before reading the 16 MiB body, then closes. With unread " +
			"input its kernel answers the rest of the body with a RST; the client, still sending, fails on the send and never " +
			"reads the answer: a failure with no reason (Apache's lingering close, in its 'Connections in the FIN_WAIT_2 state and Apache'). Python's http.client is the " +
			"client: it sends the whole body before reading. Port 8401 closes at once (serve --early-response); port 8402 " +
			"half-closes and drains first (serve --early-response --linger), which delivers the 401. With the fault off " +
			"both ports linger.",
		Budget: 15 * time.Second,
		Drive:  driveLingeringClose,
		Judge:  judgeLingeringClose,
	})
}

func driveLingeringClose(c *scenario.Context) error {
	if _, err := exec.LookPath("python3"); err != nil {
		return errors.New("lingering-close needs python3 (its client is http.client)")
	}
	abrupt := []string{"--listen", scenario.Addr("server", abruptPort), "--early-response"}
	if !c.Fault() {
		abrupt = append(abrupt, "--linger", "--linger-time", "2s")
	}
	if _, err := c.Serve("server", "serve-abrupt", abrupt...); err != nil {
		return err
	}
	if _, err := c.Serve("server", "serve-linger", "--listen", scenario.Addr("server", lingerPort), "--early-response", "--linger", "--linger-time", "2s"); err != nil {
		return err
	}
	if err := c.Sample("server", sockdiag.Filter{}, 0); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, arm := range []struct {
		name string
		port int
	}{{armAbrupt, abruptPort}, {armLinger, lingerPort}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = postClient(c, arm.name, arm.port)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.Wait("a last socket sample", 100*time.Millisecond)
}

// postClient runs the Python client against port and records its result.
func postClient(c *scenario.Context, arm string, port int) error {
	name := fmt.Sprintf("http.client :%d", port)
	c.Step(name, "POST /upload with a %d MiB body, sent in full before reading", postBody>>20)
	res, err := c.Exec("client", 10*time.Second, "python3", "-c", pythonClient, scenario.AddrPort("server", port).Addr().String(), strconv.Itoa(port), strconv.Itoa(postBody))
	if err != nil {
		return err
	}
	var out struct {
		Status      int     `json:"status"`
		Error       string  `json:"error"`
		Unread      int64   `json:"unread"`
		UnreadError string  `json:"unread_error"`
		Local       string  `json:"local"`
		Remote      string  `json:"remote"`
		Body        string  `json:"body"`
		Start       float64 `json:"start"`
		End         float64 `json:"end"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.Stdout)), &out); err != nil {
		return fmt.Errorf("%s: exit %d, output %q: %v (stderr: %s)", name, res.Code, res.Stdout, err, strings.TrimSpace(res.Stderr))
	}
	r := scenario.ClientResult{Name: name, Arm: arm, Start: unixTime(out.Start), End: unixTime(out.End), Status: out.Status, Bytes: int64(len(out.Body))}
	r.Local, _ = netip.ParseAddrPort(out.Local)
	r.Remote, _ = netip.ParseAddrPort(out.Remote)
	if out.Error != "" {
		r.Err = out.Error
		switch {
		case strings.HasPrefix(out.Error, "BrokenPipeError"):
			r.Kind = scenario.KindPipe
		case strings.HasPrefix(out.Error, "ConnectionResetError"):
			r.Kind = scenario.KindReset
		case strings.Contains(out.Error, "timed out"):
			r.Kind = scenario.KindTimeout
		default:
			r.Kind = scenario.KindOther
		}
		switch {
		case out.Unread > 0:
			r.Detail = fmt.Sprintf("after the failure, %d bytes of the answer sat unread in the client's kernel", out.Unread)
		case out.UnreadError != "":
			r.Detail = "after the failure, reading gave " + out.UnreadError
		}
	} else {
		r.Detail = "answer: " + strings.TrimSpace(out.Body)
	}
	c.Record(r)
	return nil
}

func unixTime(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

type lingerArm struct {
	r         scenario.ClientResult
	rst       *report.Packet     // the server's first RST on the connection
	responded *scenario.LogEvent // serve wrote the 401
	closed    *scenario.LogEvent // serve's close
	linger    *scenario.LogEvent // serve's lingering drain
	delivered bool
	lost      bool
	text      string
}

func judgeLingeringClose(e *scenario.Evidence) scenario.Verdict {
	var v scenario.Verdict
	arms := map[string]*lingerArm{}
	for _, x := range []struct{ arm, serve string }{{armAbrupt, "serve-abrupt"}, {armLinger, "serve-linger"}} {
		r, bad := e.ArmClient(x.arm, x.arm+": the client")
		if bad != nil {
			return *bad
		}
		a := &lingerArm{r: r}
		arms[x.arm] = a
		for _, p := range e.Packets(a.r.Local, a.r.Remote) {
			if report.SameEnd(p.Src, a.r.Remote) && !p.Injected && p.Flags&packet.RST != 0 {
				a.rst = &p
				break
			}
		}
		for _, ev := range e.ConnLog(x.serve, a.r.Local) {
			switch {
			case ev.Event.Event == "response" && a.responded == nil:
				a.responded = &ev
			case ev.Event.Event == "linger":
				a.linger = &ev
			case ev.Event.Event == "close":
				a.closed = &ev
			}
		}
		a.delivered = a.r.Status == 401
		a.lost = a.r.Status == 0 && a.r.Err != "" && a.responded != nil && a.rst != nil
		a.text = describeLinger(a)
		label := "[" + x.arm + "]"
		if a.responded != nil {
			v.Timeline = append(v.Timeline, e.Entry(a.responded.At, "server", "%s serve answers %d before reading the body", label, a.responded.Status))
		}
		if a.linger != nil {
			v.Timeline = append(v.Timeline, e.Entry(a.linger.At, "server", "%s lingering close drained %s of the body (%s)", label, scenario.ByteSize(uint32(min(a.linger.Bytes, math.MaxUint32))), a.linger.Reason))
		}
		if a.closed != nil {
			v.Timeline = append(v.Timeline, e.Entry(a.closed.At, "server", "%s serve closes (%s)", label, a.closed.Reason))
		}
		if a.rst != nil {
			v.Timeline = append(v.Timeline, e.Entry(a.rst.When(), "server", "%s the server's kernel answers the body still arriving with a RST", label))
		}
		v.Timeline = append(v.Timeline, e.Entry(a.r.End, "client", "%s http.client: %s", label, a.r.Describe()))
		v.Ladder = append(v.Ladder, report.Conn{A: a.r.Local, B: a.r.Remote})
	}
	ab, li := arms[armAbrupt], arms[armLinger]
	v.Runs = []report.Run{
		{Name: armAbrupt, Change: fmt.Sprintf("port %d: serve --early-response (close at once)", abruptPort), Outcome: scenario.OutcomeIf(ab.lost), Reason: ab.text},
		{Name: armLinger, Change: fmt.Sprintf("port %d: serve --early-response --linger (half-close, drain, close)", lingerPort), Outcome: scenario.OutcomeIf(li.lost), Reason: li.text},
	}
	if ab.lost && li.delivered {
		v.Outcome = report.Reproduced
		v.Reason = fmt.Sprintf("the 401 was lost without lingering close and delivered with it — %s: %s; %s: %s", armAbrupt, ab.text, armLinger, li.text)
	} else {
		v.Outcome = report.NotReproduced
		v.Reason = fmt.Sprintf("no lost response with the abrupt close alone — %s: %s; %s: %s", armAbrupt, ab.text, armLinger, li.text)
	}
	return v
}

func describeLinger(a *lingerArm) string {
	var b strings.Builder
	switch {
	case a.delivered:
		fmt.Fprintf(&b, "the client got the %d", a.r.Status)
		if a.linger != nil {
			fmt.Fprintf(&b, " (the server drained %s of the body first)", scenario.ByteSize(uint32(min(a.linger.Bytes, math.MaxUint32))))
		}
	case a.r.Status == 0 && a.r.Err != "":
		fmt.Fprintf(&b, "the client never saw the answer: %s", a.r.Err)
		if a.r.Detail != "" {
			fmt.Fprintf(&b, " (%s)", a.r.Detail)
		}
	default:
		fmt.Fprintf(&b, "the client got status %d", a.r.Status)
	}
	if a.responded != nil {
		b.WriteString("; serve had written its 401")
	}
	if a.rst != nil {
		b.WriteString("; the server's kernel reset the connection")
	} else {
		b.WriteString("; no RST from the server")
	}
	return b.String()
}
