// Package api serves a device's control API: HTTP/1.1 and JSON under /v1/
// on its unix socket, and on TCP with a bearer token when asked, plus
// /metrics for Prometheus. The CLI, the Go client (package client) and
// curl all use it; docs/api.md describes every call.
//
// Refused requests get a 4xx and a JSON body {"error": "..."}; nothing of
// a refused change is applied, and the device forwards packets
// throughout: a change takes the engine lock once, between two batches.
package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/control"
	"github.com/faultbox/faultbox/internal/engine"
)

// Device is what the API controls: a device's controller
// (control.Controller has every method but Status and Shutdown) and the
// device's own facts.
type Device interface {
	Status() (*client.Status, error)
	Profile() (client.Profile, error)
	Apply(control.ApplyRequest) (client.Profile, error)
	Behaviors() []client.Behavior
	Behavior(name string) (client.Behavior, error)
	AddBehavior(control.EditRequest) (client.Behavior, error)
	PatchBehavior(name string, r control.EditRequest) (client.Behavior, error)
	RemoveBehavior(name string, ifVersion uint64) error
	Flows(order string, n int) ([]client.Flow, error)
	Events(from uint64) ([]client.Event, uint64)
	Capture() client.Capture
	StartCapture(path string) (client.Capture, error)
	StopCapture() (client.Capture, error)
	Metrics() engine.Metrics
	// Shutdown stops the device (lab down, detach); it returns at once.
	Shutdown()
}

// MaxBody is the largest request body taken: a profile's limit.
const MaxBody = 1 << 20

// Server serves one device's API on any number of listeners.
type Server struct {
	dev     Device
	log     *log.Logger
	metrics *prometheus.Registry

	mu      sync.Mutex
	servers []*http.Server
	done    chan struct{} // closed by Close: event streams end
	closed  bool
}

// New returns a server of dev's API that logs refused and failed requests
// to logger.
func New(dev Device, logger *log.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(dev))
	return &Server{dev: dev, log: logger, metrics: reg, done: make(chan struct{})}
}

// Serve answers requests on ln until Close. With a token, every request
// must carry it (Authorization: Bearer TOKEN): a TCP listener. Without,
// the listener itself is the guard (a unix socket of mode 0600).
func (s *Server) Serve(ln net.Listener, token string) error {
	srv := &http.Server{
		Handler:           s.Handler(token),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // a body; event streams only write
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          s.log,
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops every listener and ends event streams.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.done)
	for _, srv := range s.servers {
		srv.Close()
	}
}

// Handler returns the API's routes; with a token, behind its check.
func (s *Server) Handler(token string) http.Handler {
	mux := http.NewServeMux()
	route := func(path string, methods map[string]http.HandlerFunc) {
		allow := slices.Sorted(maps.Keys(methods))
		for m, h := range methods {
			mux.HandleFunc(m+" "+path, h)
		}
		// Any other method: a JSON 405 rather than the mux's plain text.
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		})
	}
	route("/v1/status", map[string]http.HandlerFunc{"GET": s.serve(s.status)})
	route("/v1/profile", map[string]http.HandlerFunc{
		"GET": s.serve(s.getProfile, "format"),
		"PUT": s.serve(s.putProfile, "source", "seed", "builtin")})
	route("/v1/behaviors", map[string]http.HandlerFunc{
		"GET":  s.serve(s.listBehaviors),
		"POST": s.serve(s.addBehavior, "index")})
	route("/v1/behaviors/{name}", map[string]http.HandlerFunc{
		"GET":    s.serve(s.getBehavior),
		"PATCH":  s.serve(s.patchBehavior),
		"DELETE": s.serve(s.removeBehavior)})
	route("/v1/flows", map[string]http.HandlerFunc{"GET": s.serve(s.flows, "order", "n")})
	route("/v1/events", map[string]http.HandlerFunc{"GET": s.serve(s.events, "from", "tail", "follow")})
	startCapture := s.startCapture
	if token != "" {
		startCapture = s.remoteCapture
	}
	route("/v1/capture", map[string]http.HandlerFunc{
		"GET":    s.serve(s.getCapture),
		"POST":   s.serve(startCapture),
		"DELETE": s.serve(s.stopCapture)})
	route("/v1/shutdown", map[string]http.HandlerFunc{"POST": s.serve(s.shutdown)})
	route("/metrics", map[string]http.HandlerFunc{"GET": promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{ErrorLog: s.log}).ServeHTTP})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("%s: no such resource (see docs/api.md: /v1/status, /v1/profile, /v1/behaviors, /v1/flows, /v1/events, /v1/capture, /metrics)", r.URL.Path))
	})
	if token == "" {
		return mux
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="faultbox"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token (Authorization: Bearer TOKEN; lab up printed it, and api.token beside the device's state holds it)"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// fail answers a refused or failed request with the status its kind calls for.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch control.KindOf(err) {
	case control.BadRequest:
		code = http.StatusBadRequest
	case control.NotFound:
		code = http.StatusNotFound
	case control.Conflict:
		code = http.StatusConflict
	case control.PreconditionFailed:
		code = http.StatusPreconditionFailed
	case control.Forbidden:
		code = http.StatusForbidden
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		code = http.StatusRequestEntityTooLarge
		err = fmt.Errorf("the body is over %d bytes (1 MiB)", MaxBody)
	}
	s.log.Printf("api: %s %s: %d %v", r.Method, r.URL.Path, code, err)
	writeError(w, code, err)
}

func badRequest(format string, args ...any) error {
	return &control.Error{Kind: control.BadRequest, Err: fmt.Errorf(format, args...)}
}

// query returns the request's query, refusing keys not in known.
func query(r *http.Request, known ...string) (map[string]string, error) {
	q := r.URL.Query()
	out := make(map[string]string, len(q))
	for k, v := range q {
		ok := false
		for _, kn := range known {
			ok = ok || k == kn
		}
		switch {
		case !ok && len(known) == 0:
			return nil, badRequest("%s takes no query parameters; got %q", r.URL.Path, k)
		case !ok:
			return nil, badRequest("unknown query parameter %q (%s takes %s)", k, r.URL.Path, strings.Join(known, ", "))
		case len(v) > 1:
			return nil, badRequest("query parameter %q is given %d times", k, len(v))
		}
		out[k] = v[0]
	}
	return out, nil
}

// uintParam parses query parameter key (absent: def).
func uintParam(q map[string]string, key string, def uint64) (uint64, error) {
	v, ok := q[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badRequest("query parameter %s=%q is not a whole number", key, v)
	}
	return n, nil
}

// ifMatch returns the version in If-Match ("N" or N), 0 when absent.
func ifMatch(r *http.Request) (uint64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(v, "W/"), `"`), 10, 64)
	if err != nil || n == 0 {
		return 0, badRequest("If-Match %q is not a profile version (GET /v1/profile gives it)", v)
	}
	return n, nil
}

// body reads the request body (at most MaxBody) and, when it is declared
// JSON, checks that it is, so that a JSON mistake reads as one, with its
// place.
func body(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		return nil, err
	}
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") && len(data) > 0 {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, badRequest("malformed JSON: %s", jsonPlace(data, err))
		}
	}
	return data, nil
}

// jsonPlace says where in data a JSON error is: line and column.
func jsonPlace(data []byte, err error) string {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return err.Error()
	}
	off := min(int(se.Offset)-1, len(data)) // Offset is past the offending byte
	off = max(off, 0)
	line := 1 + strings.Count(string(data[:off]), "\n")
	col := off - strings.LastIndexByte(string(data[:off]), '\n')
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}

// followEvery is how often a followed event stream looks for new events.
const followEvery = 100 * time.Millisecond
