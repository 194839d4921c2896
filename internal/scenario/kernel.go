package scenario

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// KernelLog is a JSON-lines file a scenario writes itself: kernel counters
// read in a host's namespace (/proc/net/netstat), socket options read back
// from servers, anything the kernel says that the capture does not. It is
// evidence (Evidence.Logs[name]) like a server's log: it is registered as
// the log of a no-op process (`true` in the host's namespace), which the
// timeline shows starting.
type KernelLog struct {
	c    *Context
	host string
	mu   sync.Mutex
	path string
}

// KernelLog starts an empty kernel log called name for host.
func (c *Context) KernelLog(host, name string) (*KernelLog, error) {
	path := filepath.Join(c.Dir, name+".jsonl")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return nil, err
	}
	if _, err := c.StartLogged(host, name, path, "true"); err != nil {
		return nil, err
	}
	return &KernelLog{c: c, host: host, path: path}, nil
}

// Write appends one line {"time":..., "event":event, fields...}.
func (l *KernelLog) Write(event string, fields map[string]any) error {
	m := map[string]any{"time": time.Now().UTC().Format(time.RFC3339Nano), "event": event}
	for k, v := range fields {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	return err
}

// Netstat reads the host's /proc/net/netstat and /proc/net/snmp and logs
// the counters named as event "netstat" with label (e.g. "start", "end");
// Evidence.NetstatDelta reads them back. A bare name is a TcpExt counter
// ("TCPDeferAcceptDrop"); a dotted one names its group ("Tcp.RetransSegs").
func (l *KernelLog) Netstat(label string, counters []string) error {
	r, err := l.c.Exec(l.host, 3*time.Second, "cat", "/proc/net/netstat", "/proc/net/snmp")
	if err != nil {
		return fmt.Errorf("reading /proc/net/netstat and snmp in %s: %w", l.host, err)
	}
	all := parseNetstat(r.Stdout)
	fields := map[string]any{"label": label, "host": l.host}
	for _, k := range counters {
		full := k
		if !strings.Contains(k, ".") {
			full = "TcpExt." + k
		}
		if v, ok := all[full]; ok {
			fields[k] = v
		}
	}
	return l.Write("netstat", fields)
}

// parseNetstat reads /proc/net/netstat or /proc/net/snmp (or both, one
// after the other): pairs of "Group: names" and "Group: values" lines,
// into "Group.Name" → value.
func parseNetstat(s string) map[string]int64 {
	out := map[string]int64{}
	lines := strings.Split(s, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(vals) || len(names) < 2 || names[0] != vals[0] {
			continue
		}
		group := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseInt(vals[j], 10, 64); err == nil {
				out[group+"."+names[j]] = v
			}
		}
	}
	return out
}

// Netstat returns counter name from the netstat snapshot labelled label in
// kernel log log, and whether there was one.
func (e *Evidence) Netstat(log, label, name string) (int64, bool) {
	for _, ev := range e.Logs[log] {
		if ev.Event.Event != "netstat" || ev.Raw["label"] != label {
			continue
		}
		if v, ok := ev.Raw[name].(float64); ok {
			return int64(v), true
		}
	}
	return 0, false
}

// NetstatDelta is counter name's growth from the "start" to the "end"
// snapshot of kernel log log.
func (e *Evidence) NetstatDelta(log, name string) (int64, bool) {
	return e.NetstatGrowth(log, "start", "end", name)
}

// NetstatGrowth is counter name's growth from the snapshot labelled from
// to the one labelled to in kernel log log, and whether both were taken
// (a scenario whose arms run one after another labels each arm's own).
func (e *Evidence) NetstatGrowth(log, from, to, name string) (int64, bool) {
	end, ok1 := e.Netstat(log, to, name)
	start, ok2 := e.Netstat(log, from, name)
	return end - start, ok1 && ok2
}
