package serve

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Event names, one per step a scenario's timeline may need.
const (
	EvListen   = "listen"   // a listener is open (addr, defer, defer_effective)
	EvAccept   = "accept"   // a connection was accepted (peer, wait, rtt)
	EvRead     = "read"     // one read() returned bytes
	EvRequest  = "request"  // a request head was parsed (method, path)
	EvWrite    = "write"    // one write() moved bytes
	EvResponse = "response" // a response was written in full (status, bytes)
	EvTimeout  = "timeout"  // a timer ran out (reason: idle, read, linger)
	EvClose    = "close"    // close() on the connection (reason)
	EvError    = "error"    // a syscall failed (err)
	EvLinger   = "linger"   // lingering close finished draining (bytes, reason)
	EvShutdown = "shutdown" // shutdown(SHUT_WR) on a connection, or the server stopping
)

// Event is one JSON line of the log. Zero fields are left out.
type Event struct {
	Time  string  `json:"time"`  // RFC 3339 with nanoseconds
	T     float64 `json:"t"`     // seconds since the server started
	Event string  `json:"event"` // one of the Ev* names
	Conn  uint64  `json:"conn,omitempty"`
	Peer  string  `json:"peer,omitempty"`
	Addr  string  `json:"addr,omitempty"` // listen: the bound address
	// Bytes: read/write: bytes moved by that call; request: body bytes
	// read; response: body bytes written; linger: bytes drained.
	Bytes  int64  `json:"bytes,omitempty"`
	Status int    `json:"status,omitempty"`
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Reason string `json:"reason,omitempty"`
	Err    string `json:"err,omitempty"`
	// Accept: Wait is how long the connection sat complete in the kernel
	// before accept() (TCP_INFO last_data_recv: the child socket's creation
	// or its latest data); RTT is the kernel's smoothed RTT then, which after
	// a deferred accept spans the whole defer wait. Seconds; nil if unknown.
	Wait *float64 `json:"wait,omitempty"`
	RTT  *float64 `json:"rtt,omitempty"`
	// Listen: the TCP_DEFER_ACCEPT seconds asked for and read back.
	Defer          *int `json:"defer,omitempty"`
	DeferEffective *int `json:"defer_effective,omitempty"`
}

// Logger writes events as JSON lines, one write per line, so a line is
// never torn and is on disk when the event returns.
type Logger struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

// NewLogger logs to w with t counted from start.
func NewLogger(w io.Writer, start time.Time) *Logger {
	return &Logger{w: w, start: start}
}

// Log stamps e with the current time and writes it.
func (l *Logger) Log(e Event) {
	now := time.Now()
	e.Time = now.Format(time.RFC3339Nano)
	e.T = now.Sub(l.start).Seconds()
	b, err := json.Marshal(e)
	if err != nil {
		return // Event has only plain fields; Marshal cannot fail
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(b) // a log that cannot be written must not stop the server
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
