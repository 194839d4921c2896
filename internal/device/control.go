package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// The control socket's transport: JSON, one request and one response per
// connection on the unix socket control.sock (0600 in a 0700 directory).
// A device is asked a few times per command, never per packet. The
// requests map one to one onto the Device's methods (Status, Events,
// Apply, Shutdown); the client side is in client.go.

// request is a command to the device.
type request struct {
	Op      string  `json:"op"`                // "status", "events", "apply", "shutdown"
	From    uint64  `json:"from,omitempty"`    // events: first sequence number
	Profile string  `json:"profile,omitempty"` // apply: built-in name, or file name for errors
	YAML    string  `json:"yaml,omitempty"`    // apply: the profile text (required for files)
	Seed    *uint64 `json:"seed,omitempty"`    // apply: the run's seed, if given
}

// response is the device's answer; Error is set when the request failed,
// Input when the request itself was at fault.
type response struct {
	Error   string        `json:"error,omitempty"`
	Input   bool          `json:"input,omitempty"`
	Status  *Status       `json:"status,omitempty"`
	Events  []EventRecord `json:"events,omitempty"`
	Next    uint64        `json:"next,omitempty"`
	Profile string        `json:"profile,omitempty"` // apply: the chain now active
	Seed    uint64        `json:"seed,omitempty"`
}

// listen opens the control socket.
func (d *Device) listen() error {
	path := socketPath(d.state.Name)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	d.ln = ln
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// serveControl answers the control socket until it is closed.
func (d *Device) serveControl() {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		go d.handle(c)
	}
}

func (d *Device) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req request
	var resp *response
	// A profile is at most 1 MiB; JSON escaping can double it.
	if err := json.NewDecoder(io.LimitReader(c, 4<<20)).Decode(&req); err != nil {
		resp = &response{Error: "bad request: " + err.Error(), Input: true}
	} else {
		resp = d.do(req)
	}
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		d.log.Printf("control: %s: %v", req.Op, err)
	}
	if req.Op == "shutdown" && resp.Error == "" {
		d.Shutdown()
	}
}

func (d *Device) do(req request) *response {
	switch req.Op {
	case "status":
		return &response{Status: d.Status()}
	case "events":
		evs, next := d.Events(req.From)
		return &response{Events: evs, Next: next}
	case "apply":
		name, seed, err := d.Apply(ApplyRequest{Source: req.Profile, YAML: req.YAML, Seed: req.Seed})
		if err != nil {
			return &response{Error: err.Error(), Input: IsInputError(err)}
		}
		return &response{Profile: name, Seed: seed}
	case "shutdown":
		return &response{}
	}
	return &response{Error: fmt.Sprintf("unknown request %q", req.Op), Input: true}
}

// call sends req to the device called name and returns its response.
func call(name string, req request, timeout time.Duration) (*response, error) {
	c, err := net.DialTimeout("unix", socketPath(name), timeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	var resp response
	if err := json.NewDecoder(io.LimitReader(c, 64<<20)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if resp.Error != "" {
		err := errors.New(resp.Error)
		if resp.Input {
			err = &InputError{err}
		}
		return &resp, err
	}
	return &resp, nil
}
