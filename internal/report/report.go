// Package report writes the evidence of one scenario run into a directory:
//
//	report.html    the verdict, the timeline, a ladder diagram of the key
//	               connections drawn from the capture, the socket states
//	verdict.json   every input below except the socket samples and the log
//	sockets.json   the socket-state samples
//	events.log     the device's event log, one line per event
//	*.pcapng       the capture, copied in unless it is already there
//
// The page is one self-contained file: inline CSS and SVG, no script, no
// font or stylesheet from the network, so it opens offline and can be
// attached to a vendor ticket as it is.
//
// The inputs are plain data: a scenario fills a Report as it runs and calls
// Write once at the end, whatever the outcome.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Outcome is a scenario's verdict.
type Outcome string

// Outcomes. Error means the run could not decide (the lab failed, a server
// did not start); Reason says why.
const (
	Reproduced    Outcome = "reproduced"
	NotReproduced Outcome = "not reproduced"
	Error         Outcome = "error"
)

// Report is everything one scenario run wants to show. Offsets
// (time.Duration fields) count from Start.
type Report struct {
	Scenario    string        `json:"scenario"`
	Description string        `json:"description,omitempty"`
	Profile     string        `json:"profile,omitempty"`
	Outcome     Outcome       `json:"outcome"`
	Reason      string        `json:"reason,omitempty"`
	Expected    Outcome       `json:"expected"`
	Seed        uint64        `json:"seed"`
	Kernel      string        `json:"kernel,omitempty"` // KernelVersion()
	Start       time.Time     `json:"start"`            // wall clock at offset 0
	Duration    time.Duration `json:"duration_ns,omitempty"`

	// Sysctls set inside the lab namespaces, and a sentence saying why
	// (timeouts shortened so the run fits in seconds, not minutes).
	Sysctls    map[string]string `json:"sysctls,omitempty"`
	SysctlNote string            `json:"sysctl_note,omitempty"`

	Timeline []Entry  `json:"timeline,omitempty"`
	Results  Table    `json:"results"`         // what the clients saw
	Runs     []Run    `json:"runs,omitempty"`  // A/B runs, each with its verdict
	Notes    []string `json:"notes,omitempty"` // free text shown under the verdict
	// Distributions are histograms of durations (connect times ...),
	// shown after the client results.
	Distributions []Distribution `json:"distributions,omitempty"`

	// Capture is the pcapng file written by internal/capture; Write copies
	// it into the report directory. Ladder selects what the diagram shows.
	Capture string        `json:"capture,omitempty"`
	Ladder  LadderOptions `json:"ladder"`

	// Sockets are socket-state samples (sockets.json); SampleInterval is
	// the sampling period, so a socket missing from the next sample is
	// drawn as gone. 0: the smallest gap between samples.
	Sockets        []SocketSample `json:"-"`
	SampleInterval time.Duration  `json:"sample_interval_ns,omitempty"`

	Events []string `json:"-"` // the device event log (events.log)
}

// Pass reports whether the outcome is the one the scenario expects.
func (r *Report) Pass() bool { return r.Outcome != Error && r.Outcome == r.Expected }

// Entry is one line of the timeline.
type Entry struct {
	At    time.Duration `json:"t_ns"`
	Actor string        `json:"actor"` // client, server, device, scenario ...
	Text  string        `json:"text"`
}

// Table is free-form rows, such as one per client request.
type Table struct {
	Columns []string   `json:"columns,omitempty"`
	Rows    [][]string `json:"rows,omitempty"`
}

// Run is one arm of an A/B comparison: the same scenario with one change.
type Run struct {
	Name     string  `json:"name"`             // "A", "B", "AcceptFilter none"
	Change   string  `json:"change,omitempty"` // what differs from the main run
	Outcome  Outcome `json:"outcome"`
	Expected Outcome `json:"expected,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	Report   string  `json:"report,omitempty"` // relative path of its own report.html
}

// Conn names one TCP/UDP connection by its two ends, in either order.
type Conn struct {
	A netip.AddrPort `json:"a"`
	B netip.AddrPort `json:"b"`
}

// Filter selects packets for the ladder: those of any listed connection or
// with any listed port at either end. An empty filter selects every TCP and
// UDP packet (not the ICMPv6 chatter of the hosts' own stacks).
type Filter struct {
	Ports []uint16 `json:"ports,omitempty"`
	Conns []Conn   `json:"conns,omitempty"`
}

// LadderOptions says what the ladder diagram shows.
type LadderOptions struct {
	Filter
	// MaxPackets caps the arrows drawn (default 200). Over the cap, packets
	// the device acted on and SYN/FIN/RST segments are kept first, then
	// their neighbours; the page says how many were left out.
	MaxPackets int `json:"max_packets,omitempty"`
	// Hosts orders the columns (default: client, lb, server, then the other
	// ports in capture order).
	Hosts []string `json:"hosts,omitempty"`
	// Marks highlight the packets the verdict rests on, each with a note.
	Marks []Mark `json:"marks,omitempty"`
}

// Mark highlights one packet of the ladder: the one sent from Src to Dst
// that the device first saw at At (Packet.When of the capture read back).
type Mark struct {
	Src  netip.AddrPort `json:"src"`
	Dst  netip.AddrPort `json:"dst"`
	At   time.Time      `json:"at"`
	Note string         `json:"note"`
}

// SocketSample is one socket seen at one sampling instant (ss -tanoi).
type SocketSample struct {
	At      time.Duration  `json:"t_ns"`
	Host    string         `json:"host,omitempty"` // lab host the socket lives in
	Local   netip.AddrPort `json:"local"`
	Remote  netip.AddrPort `json:"remote"`
	State   string         `json:"state"`           // ss names: ESTAB, CLOSE-WAIT, FIN-WAIT-2 ...
	Timer   string         `json:"timer,omitempty"` // on, keepalive, timewait, persist
	Retrans int            `json:"retrans"`
	Unacked int            `json:"unacked"`
	RTT     time.Duration  `json:"rtt_ns"`
}

// File names written by Write.
const (
	HTMLFile    = "report.html"
	VerdictFile = "verdict.json"
	SocketsFile = "sockets.json"
	EventsFile  = "events.log"
)

// verdictJSON is verdict.json: the report plus what Write derived.
type verdictJSON struct {
	*Report
	Pass        bool     `json:"pass"`
	CaptureFile string   `json:"capture_file,omitempty"`
	SocketsFile string   `json:"sockets_file"`
	EventsFile  string   `json:"events_file"`
	Warnings    []string `json:"warnings,omitempty"`
}

// Write writes the report files into dir, creating it. Evidence that cannot
// be read (a missing or damaged capture) is reported on the page and in
// verdict.json rather than failing the report; the error is for files that
// could not be written.
func Write(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	v := verdictJSON{Report: r, Pass: r.Pass(), SocketsFile: SocketsFile, EventsFile: EventsFile}
	var lad *ladderView
	if r.Capture != "" {
		name, err := keepCapture(dir, r.Capture)
		if err != nil {
			v.Warnings = append(v.Warnings, err.Error())
		} else {
			v.CaptureFile = name
			lad, err = buildLadder(filepath.Join(dir, name), r)
			if err != nil {
				v.Warnings = append(v.Warnings, err.Error())
			}
		}
	}
	var errs []error
	put := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("report: %w", err))
		}
	}
	sockets := r.Sockets
	if sockets == nil {
		sockets = []SocketSample{}
	}
	if b, err := json.MarshalIndent(sockets, "", " "); err == nil {
		put(SocketsFile, append(b, '\n'))
	} else {
		errs = append(errs, fmt.Errorf("report: sockets: %w", err))
	}
	var log strings.Builder
	for _, l := range r.Events {
		log.WriteString(strings.TrimRight(l, "\n"))
		log.WriteByte('\n')
	}
	put(EventsFile, []byte(log.String()))
	page, err := renderHTML(r, &v, lad)
	if err != nil {
		errs = append(errs, fmt.Errorf("report: html: %w", err))
	} else {
		put(HTMLFile, page)
	}
	if b, err := json.MarshalIndent(&v, "", "  "); err == nil {
		put(VerdictFile, append(b, '\n'))
	} else {
		errs = append(errs, fmt.Errorf("report: verdict: %w", err))
	}
	return errors.Join(errs...)
}

// keepCapture copies the capture into dir unless it is already there and
// returns its name in dir.
func keepCapture(dir, path string) (string, error) {
	name := filepath.Base(path)
	dst := filepath.Join(dir, name)
	si, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("capture: %w", err)
	}
	if di, err := os.Stat(dst); err == nil && os.SameFile(si, di) {
		return name, nil
	}
	in, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("capture: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return "", fmt.Errorf("capture: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", fmt.Errorf("capture: copy %s: %w", path, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("capture: %w", err)
	}
	return name, nil
}

// KernelVersion returns the running kernel's release (uname -r), or "" if
// it cannot be read.
func KernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
