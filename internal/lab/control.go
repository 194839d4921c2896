package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/faultbox/faultbox/internal/engine"
)

// The control socket speaks JSON, one request and one response per
// connection: the daemon is asked a few times per command, never per packet.

// Request is a command to the daemon.
type Request struct {
	Op      string  `json:"op"`                // "status", "events", "apply", "shutdown"
	From    uint64  `json:"from,omitempty"`    // events: first sequence number
	Profile string  `json:"profile,omitempty"` // apply: built-in name, or file name for errors
	YAML    string  `json:"yaml,omitempty"`    // apply: the profile text (required for files)
	Seed    *uint64 `json:"seed,omitempty"`    // apply: the run's seed, if given
}

// Response is the daemon's answer; Error is set when the request failed.
type Response struct {
	Error   string        `json:"error,omitempty"`
	Status  *Status       `json:"status,omitempty"`
	Events  []EventRecord `json:"events,omitempty"`
	Next    uint64        `json:"next,omitempty"`
	Profile string        `json:"profile,omitempty"` // apply: the chain now active
	Seed    uint64        `json:"seed,omitempty"`
}

// EventRecord is an engine event with its one-line rendering (the engine's
// clock is the daemon's, so it is rendered there).
type EventRecord struct {
	engine.Event
	Text string `json:"text"`
}

// ErrNotRunning means the lab's daemon does not answer.
var ErrNotRunning = errors.New("lab is not running")

// call sends req to lab's daemon and returns its response.
func call(lab string, req Request, timeout time.Duration) (*Response, error) {
	c, err := net.DialTimeout("unix", socketPath(lab), timeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(c, 64<<20)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if resp.Error != "" {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}

// Events returns the events lab's device recorded from sequence number
// from on, and the number to ask for next time.
func Events(lab string, from uint64) ([]EventRecord, uint64, error) {
	if _, err := running(lab); err != nil {
		return nil, 0, err
	}
	resp, err := call(lab, Request{Op: "events", From: from}, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	return resp.Events, resp.Next, nil
}
