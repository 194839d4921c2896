// Package client drives a running faultbox device (a lab, an attach or a
// run) from Go through its control API: apply a profile, add, patch and
// remove single behaviors while traffic flows, read the status and the
// flow table, follow the event log, and start or stop a capture.
//
//	c, err := client.Dial("default") // the lab called default
//	...
//	_, err = c.AddBehavior(ctx, client.Spec{Type: "delay", Name: "slow",
//		Params: client.Params{"delay": "50ms"}})
//	...
//	err = c.RemoveBehavior(ctx, "slow")
//
// The API itself, with an example of every call, is in docs/api.md. The
// labtest package beside this one starts a lab for one Go test.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RunDir holds each device's runtime directory, where its control socket
// is: RunDir/NAME/control.sock.
var RunDir = "/run/faultbox"

// SocketPath is where the device called name listens.
func SocketPath(name string) string { return filepath.Join(RunDir, name, "control.sock") }

// Client talks to one device. It is safe for concurrent use.
type Client struct {
	hc    *http.Client
	base  string // http://faultbox or http://HOST:PORT
	token string
}

// Dial returns a client of the device called nameOrSocket (a lab's or an
// attach's name), or listening on the unix socket at that path when it
// holds a '/'. It checks that the socket is there; the device answers on
// the first call. Close the client when done with it.
func Dial(nameOrSocket string) (*Client, error) {
	path := nameOrSocket
	if !strings.Contains(nameOrSocket, "/") {
		path = SocketPath(nameOrSocket)
	}
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("faultbox device %s is not running (no socket %s)", nameOrSocket, path)
		}
		return nil, fmt.Errorf("faultbox device %s: %w", nameOrSocket, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("faultbox device %s: %s is not a socket", nameOrSocket, path)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 4,
	}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://faultbox"}, nil
}

// DialTCP returns a client of a device serving the API on TCP (lab up
// --api ADDR), authenticated with token (printed by lab up, and kept in the
// file api.token beside the device's state).
func DialTCP(addr, token string) *Client {
	return &Client{hc: &http.Client{Transport: &http.Transport{MaxIdleConns: 4}}, base: "http://" + addr, token: token}
}

// Close closes the connections the client keeps open between requests.
// A program that makes a client per request must close each, or the
// device holds a connection for each until its idle timeout.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Error is the device's answer to a request it refused: the HTTP status
// (400 bad input, 401 no or wrong token, 404 no such behavior, 409 a
// conflicting change, 412 the profile changed since If-Match's version,
// 413 a body over 1 MiB) and its message.
type Error struct {
	StatusCode int
	Message    string
}

func (e *Error) Error() string { return e.Message }

// IsNotFound reports whether err is the device's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	resp, err := c.send(ctx, method, path, body, contentType, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("faultbox API %s %s: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns a successful response; a refusal is an
// *Error.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, contentType string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("faultbox API: %w", err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
	}
	return nil, &Error{StatusCode: resp.StatusCode, Message: e.Error}
}

func jsonBody(v any) (io.Reader, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(data), nil
}

// Status returns the device's status and counters.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/v1/status", nil, "", &st)
}

// Profile returns the running profile.
func (c *Client) Profile(ctx context.Context) (*Profile, error) {
	var p Profile
	return &p, c.do(ctx, http.MethodGet, "/v1/profile", nil, "", &p)
}

// ApplyOptions go with a profile to apply.
type ApplyOptions struct {
	// Source names the profile in errors and in status (a file name);
	// default "request".
	Source string
	// Seed, when set, is the run's seed; else the profile's, else the
	// device's current one.
	Seed *uint64
	// IfVersion, when not 0, applies only if the profile's version is still
	// this one (else an *Error with status 412).
	IfVersion uint64
}

// Apply replaces the running profile with the one in doc (YAML or JSON).
// A profile with errors changes nothing; its *Error says
// "FILE:LINE: FIELD: what is wrong". Connections and delayed packets are
// kept.
func (c *Client) Apply(ctx context.Context, doc []byte, o ApplyOptions) (*Profile, error) {
	return c.putProfile(ctx, url.Values{}, doc, o)
}

// ApplyBuiltin replaces the running profile with the built-in called name.
func (c *Client) ApplyBuiltin(ctx context.Context, name string, o ApplyOptions) (*Profile, error) {
	return c.putProfile(ctx, url.Values{"builtin": {name}}, nil, o)
}

func (c *Client) putProfile(ctx context.Context, q url.Values, doc []byte, o ApplyOptions) (*Profile, error) {
	if o.Source != "" {
		q.Set("source", o.Source)
	}
	if o.Seed != nil {
		q.Set("seed", strconv.FormatUint(*o.Seed, 10))
	}
	var h http.Header
	if o.IfVersion != 0 {
		h = http.Header{"If-Match": {strconv.Quote(strconv.FormatUint(o.IfVersion, 10))}}
	}
	resp, err := c.send(ctx, http.MethodPut, "/v1/profile?"+q.Encode(), bytes.NewReader(doc), "application/yaml", h)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var p Profile
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return nil, fmt.Errorf("faultbox API PUT /v1/profile: %w", err)
	}
	return &p, nil
}

// Behaviors returns the running chain's behaviors with their counters.
func (c *Client) Behaviors(ctx context.Context) ([]Behavior, error) {
	var bs []Behavior
	return bs, c.do(ctx, http.MethodGet, "/v1/behaviors", nil, "", &bs)
}

// Behavior returns one behavior of the running chain.
func (c *Client) Behavior(ctx context.Context, name string) (*Behavior, error) {
	var b Behavior
	return &b, c.do(ctx, http.MethodGet, "/v1/behaviors/"+url.PathEscape(name), nil, "", &b)
}

// AddBehavior adds a behavior at the end of the running chain; it meets
// packets from the next one on. Every other behavior, and every
// connection's state, is kept.
func (c *Client) AddBehavior(ctx context.Context, s Spec) (*Behavior, error) {
	return c.InsertBehavior(ctx, s, -1)
}

// InsertBehavior adds a behavior before position index of the chain (0:
// first); -1 appends.
func (c *Client) InsertBehavior(ctx context.Context, s Spec, index int) (*Behavior, error) {
	body, err := jsonBody(s)
	if err != nil {
		return nil, err
	}
	path := "/v1/behaviors"
	if index >= 0 {
		path += "?index=" + strconv.Itoa(index)
	}
	var b Behavior
	return &b, c.do(ctx, http.MethodPost, path, body, "application/json", &b)
}

// PatchBehavior changes some parameters of a running behavior (or its
// whole match, under "match"), keeping its counters and its state in every
// connection.
func (c *Client) PatchBehavior(ctx context.Context, name string, p Params) (*Behavior, error) {
	body, err := jsonBody(p)
	if err != nil {
		return nil, err
	}
	var b Behavior
	return &b, c.do(ctx, http.MethodPatch, "/v1/behaviors/"+url.PathEscape(name), body, "application/json", &b)
}

// RemoveBehavior takes a behavior out of the running chain. Packets it
// delayed already leave on time.
func (c *Client) RemoveBehavior(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/behaviors/"+url.PathEscape(name), nil, "", nil)
}

// FlowOrder says which flows Flows returns first.
type FlowOrder string

const (
	Busiest FlowOrder = "busiest" // most payload bytes
	Oldest  FlowOrder = "oldest"
	Recent  FlowOrder = "recent" // seen last
)

// Flows returns at most n tracked flows (0: the device's default, 20) in
// order.
func (c *Client) Flows(ctx context.Context, order FlowOrder, n int) ([]Flow, error) {
	q := url.Values{}
	if order != "" {
		q.Set("order", string(order))
	}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	var fs []Flow
	return fs, c.do(ctx, http.MethodGet, "/v1/flows?"+q.Encode(), nil, "", &fs)
}

// Events returns the events recorded from sequence number from on (the
// device keeps the latest 65536).
func (c *Client) Events(ctx context.Context, from uint64) ([]Event, error) {
	var evs []Event
	err := c.events(ctx, from, false, func(e Event) error {
		evs = append(evs, e)
		return nil
	})
	return evs, err
}

// FollowEvents calls fn for every event from sequence number from on, as
// they happen, until ctx is done (it then returns ctx's error) or fn
// returns an error (which it returns).
func (c *Client) FollowEvents(ctx context.Context, from uint64, fn func(Event) error) error {
	return c.events(ctx, from, true, fn)
}

func (c *Client) events(ctx context.Context, from uint64, follow bool, fn func(Event) error) error {
	q := url.Values{"from": {strconv.FormatUint(from, 10)}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("faultbox API events: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("faultbox API events: %w", err)
	}
	if follow {
		return errors.New("faultbox API events: the device closed the stream")
	}
	return nil
}

// Capture returns the state of the device's capture.
func (c *Client) Capture(ctx context.Context) (*Capture, error) {
	var cp Capture
	return &cp, c.do(ctx, http.MethodGet, "/v1/capture", nil, "", &cp)
}

// StartCapture has the device write every packet of every port to the
// pcapng file at path (absolute, new; on the device's machine). Only over
// the unix socket: over TCP the device writes no files.
func (c *Client) StartCapture(ctx context.Context, path string) (*Capture, error) {
	body, err := jsonBody(map[string]string{"path": path})
	if err != nil {
		return nil, err
	}
	var cp Capture
	return &cp, c.do(ctx, http.MethodPost, "/v1/capture", body, "application/json", &cp)
}

// StopCapture stops the capture and closes its file.
func (c *Client) StopCapture(ctx context.Context) (*Capture, error) {
	var cp Capture
	return &cp, c.do(ctx, http.MethodDelete, "/v1/capture", nil, "", &cp)
}

// Shutdown stops the device, which removes what it set up (a lab's hosts,
// an attach's routes).
func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/shutdown", nil, "", nil)
}
