package proxy

import (
	"encoding/json"
	"io"
	"math"
	"sync"
	"time"
)

// Entry is one line of the access log: one client request and what became
// of it. Durations are in milliseconds.
type Entry struct {
	Time        string  `json:"time"` // when the request head arrived, RFC 3339
	Client      string  `json:"client"`
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Backend     string  `json:"backend"`
	BackendConn uint64  `json:"backend_conn"` // 0: no backend connection was used
	ConnAge     float64 `json:"conn_age"`     // ms since the backend connection was opened
	ConnIdle    float64 `json:"conn_idle"`    // ms it sat idle before this request was sent
	ReuseCount  int     `json:"reuse_count"`  // requests it carried before this one
	Outcome     string  `json:"outcome"`      // ok | empty_reply | 502 | 504 | reset | 400 (the client's request was not HTTP)
	Status      int     `json:"status"`       // sent to the client; 0 for none
	BackendTime float64 `json:"backend_time"` // ms from sending the request to the end of the response head (or the failure)
	Aimed       bool    `json:"aimed,omitempty"`
	Held        float64 `json:"held,omitempty"` // ms the request was held to hit the aim point
	Retries     int     `json:"retries,omitempty"`
	Early       bool    `json:"early_response,omitempty"` // the response came before the request body was sent
	Error       string  `json:"error,omitempty"`
}

// Outcomes.
const (
	OutcomeOK         = "ok"
	OutcomeEmptyReply = "empty_reply"
	Outcome502        = "502"
	Outcome504        = "504"
	OutcomeReset      = "reset"
	Outcome400        = "400"
)

// PoolEvent is a log line about a pooled connection itself, told apart
// from request lines by its "event" key: "open" (a connection opened into
// the pool; juniper-dx sends nothing on it), "open_failed", "close".
type PoolEvent struct {
	Time        string `json:"time"`
	Event       string `json:"event"`
	Backend     string `json:"backend"`
	BackendConn uint64 `json:"backend_conn,omitempty"`
	Local       string `json:"local,omitempty"` // the pooled connection's own address, to find it in a capture
	Reason      string `json:"reason,omitempty"`
}

// logger writes JSON lines; nil writes nothing.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) write(v any) {
	if l == nil || l.w == nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		return // the types above always marshal
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(b)
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3 // microsecond resolution
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
