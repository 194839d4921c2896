package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/faultbox/faultbox/internal/control"
	"github.com/faultbox/faultbox/profiles"
)

// call is one request as a route sees it: its query, already checked
// against the parameters the route takes.
type call struct {
	w http.ResponseWriter
	r *http.Request
	q map[string]string
}

// answer is a route's reply: a status and a value to send as JSON (none
// for a nil value), or an error for s.fail.
type answer func(c *call) (int, any, error)

// serve adapts a route taking the query parameters params to an HTTP
// handler.
func (s *Server) serve(f answer, params ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := query(r, params...)
		code, v := 0, any(nil)
		if err == nil {
			code, v, err = f(&call{w: w, r: r, q: q})
		}
		switch {
		case err != nil:
			s.fail(w, r, err)
		case v != nil:
			writeJSON(w, code, v)
		case code != 0:
			w.WriteHeader(code)
		}
	}
}

func ok(v any, err error) (int, any, error) { return http.StatusOK, v, err }

func (s *Server) status(*call) (int, any, error) { return ok(s.dev.Status()) }

// getProfile answers with the profile, as JSON or (?format=yaml) its text;
// its version is also the ETag.
func (s *Server) getProfile(c *call) (int, any, error) {
	p, err := s.dev.Profile()
	if err != nil {
		return 0, nil, err
	}
	c.w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(p.Version, 10)))
	switch c.q["format"] {
	case "", "json":
		return ok(p, nil)
	case "yaml":
		c.w.Header().Set("Content-Type", "application/yaml")
		c.w.Write([]byte(p.YAML))
		return 0, nil, nil
	}
	return 0, nil, badRequest("format %q is not json or yaml", c.q["format"])
}

// putProfile applies the profile in the body (YAML or JSON), or the
// built-in named by ?builtin=.
func (s *Server) putProfile(c *call) (int, any, error) {
	req, err := applyRequest(c)
	if err != nil {
		return 0, nil, err
	}
	return ok(s.dev.Apply(*req))
}

func applyRequest(c *call) (*control.ApplyRequest, error) {
	req := &control.ApplyRequest{Source: c.q["source"]}
	var err error
	if req.IfVersion, err = ifMatch(c.r); err != nil {
		return nil, err
	}
	if v, ok := c.q["seed"]; ok {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, badRequest("seed %q is not a whole number from 0 to %d", v, uint64(math.MaxUint64))
		}
		req.Seed = &seed
	}
	data, err := body(c.w, c.r)
	if err != nil {
		return nil, err
	}
	if name, ok := c.q["builtin"]; ok {
		// Built-ins only: the device opens no file a request names.
		if len(data) > 0 {
			return nil, badRequest("give either ?builtin= or a profile in the body, not both")
		}
		if !slices.Contains(profiles.Builtin(), name) {
			return nil, badRequest("%q is not a built-in profile (built-ins: %v)", name, profiles.Builtin())
		}
		if req.Profile, err = profiles.Load(name); err != nil {
			return nil, err
		}
		if req.Source == "" {
			req.Source = name
		}
		return req, nil
	}
	if len(data) == 0 {
		return nil, badRequest("no profile: send one in the body (YAML or JSON), or name a built-in with ?builtin=NAME")
	}
	if req.Source == "" {
		req.Source = "request"
	}
	if req.Profile, err = profiles.Parse(req.Source, data); err != nil {
		return nil, err
	}
	return req, nil
}

func (s *Server) listBehaviors(*call) (int, any, error) { return ok(s.dev.Behaviors(), nil) }

func (s *Server) getBehavior(c *call) (int, any, error) {
	return ok(s.dev.Behavior(c.r.PathValue("name")))
}

// editRequest reads a behavior or a patch from the body.
func editRequest(c *call) (control.EditRequest, error) {
	req := control.EditRequest{File: "request", Index: -1}
	var err error
	if req.IfVersion, err = ifMatch(c.r); err != nil {
		return req, err
	}
	if v, ok := c.q["index"]; ok {
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			return req, badRequest("index %q: want 0 (first) or more", v)
		}
		req.Index = i
	}
	if req.Body, err = body(c.w, c.r); err != nil {
		return req, err
	}
	if len(req.Body) == 0 {
		return req, badRequest("no behavior in the body (JSON or YAML, e.g. {\"type\": \"delay\", \"delay\": \"50ms\"})")
	}
	return req, nil
}

func (s *Server) addBehavior(c *call) (int, any, error) {
	req, err := editRequest(c)
	if err != nil {
		return 0, nil, err
	}
	b, err := s.dev.AddBehavior(req)
	if err != nil {
		return 0, nil, err
	}
	c.w.Header().Set("Location", "/v1/behaviors/"+url.PathEscape(b.Name))
	return http.StatusCreated, b, nil
}

func (s *Server) patchBehavior(c *call) (int, any, error) {
	req, err := editRequest(c)
	if err != nil {
		return 0, nil, err
	}
	return ok(s.dev.PatchBehavior(c.r.PathValue("name"), req))
}

func (s *Server) removeBehavior(c *call) (int, any, error) {
	v, err := ifMatch(c.r)
	if err == nil {
		err = s.dev.RemoveBehavior(c.r.PathValue("name"), v)
	}
	return http.StatusNoContent, nil, err
}

func (s *Server) flows(c *call) (int, any, error) {
	n, err := uintParam(c.q, "n", 0)
	if err != nil {
		return 0, nil, err
	}
	if n > control.MaxFlows {
		return 0, nil, badRequest("n %d: want 1 to %d", n, control.MaxFlows)
	}
	return ok(s.dev.Flows(c.q["order"], int(n)))
}

// events writes the event log as one JSON object a line, from ?from= (a
// sequence number) or the last ?tail= events; with ?follow=1 it goes on
// writing events as they come until the client goes away.
func (s *Server) events(c *call) (int, any, error) {
	from, err := uintParam(c.q, "from", 0)
	if err != nil {
		return 0, nil, err
	}
	follow := false
	switch c.q["follow"] {
	case "", "0", "false":
	case "1", "true":
		follow = true
	default:
		return 0, nil, badRequest("follow=%q: want 1 or 0", c.q["follow"])
	}
	if _, ok := c.q["tail"]; ok {
		if _, ok := c.q["from"]; ok {
			return 0, nil, badRequest("give from or tail, not both")
		}
		tail, err := uintParam(c.q, "tail", 0)
		if err != nil {
			return 0, nil, err
		}
		_, next := s.dev.Events(math.MaxUint64)
		from = next - min(next, tail)
	}
	w := c.w
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	var tick *time.Ticker
	for {
		evs, next := s.dev.Events(from)
		for i := range evs {
			if err := enc.Encode(&evs[i]); err != nil {
				return 0, nil, nil // the client went away
			}
		}
		from = next
		if !follow {
			return 0, nil, nil
		}
		if flusher != nil {
			flusher.Flush()
		}
		if tick == nil {
			tick = time.NewTicker(followEvery)
			defer tick.Stop()
		}
		select {
		case <-c.r.Context().Done():
			return 0, nil, nil
		case <-s.done:
			return 0, nil, nil
		case <-tick.C:
		}
	}
}

func (s *Server) getCapture(*call) (int, any, error) { return ok(s.dev.Capture(), nil) }

// remoteCapture refuses a capture started over TCP: a request from the
// network must not make the device write files as root.
func (s *Server) remoteCapture(*call) (int, any, error) {
	return 0, nil, &control.Error{Kind: control.Forbidden, Err: errors.New("captures to a file start only over the device's unix socket, not over TCP: a request from the network must not make the device write files")}
}

// startCapture starts a capture to a file the body names.
func (s *Server) startCapture(c *call) (int, any, error) {
	data, err := body(c.w, c.r)
	if err != nil {
		return 0, nil, err
	}
	var req struct {
		Path string `json:"path"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Path == "" {
		if err == nil {
			err = errors.New("path is missing")
		}
		return 0, nil, badRequest(`want {"path": "/abs/file.pcapng"}: %v`, err)
	}
	cp, err := s.dev.StartCapture(req.Path)
	return http.StatusCreated, cp, err
}

func (s *Server) stopCapture(*call) (int, any, error) { return ok(s.dev.StopCapture()) }

func (s *Server) shutdown(c *call) (int, any, error) {
	writeJSON(c.w, http.StatusAccepted, map[string]string{"status": "shutting down"})
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
	s.dev.Shutdown()
	return 0, nil, nil
}
