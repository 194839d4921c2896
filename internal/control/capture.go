package control

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/capture"
)

// captureRun is a capture being written, flushed every second so that a
// reader sees packets without waiting for the stop.
type captureRun struct {
	w    *capture.Writer
	path string
	stop chan struct{}
	done sync.WaitGroup
}

// StartCapture writes every packet of every port to a new pcapng file at
// path, which must be absolute and end in .pcapng: the device writes as
// root, and must not be made to overwrite a file it was not meant to.
func (c *Controller) StartCapture(path string) (client.Capture, error) {
	if !filepath.IsAbs(path) || !strings.HasSuffix(path, ".pcapng") {
		return client.Capture{}, refuse(BadRequest, "capture path %q: want an absolute path ending in .pcapng", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return client.Capture{}, refuse(Conflict, "capture path %s exists: give a new file", path)
	}
	var ports []string
	for _, p := range c.cfg.Engine.Status().Ports {
		ports = append(ports, p.Name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.capture != nil {
		return client.Capture{}, refuse(Conflict, "a capture to %s is running: stop it first", c.capture.path)
	}
	w, err := capture.Create(path, ports, 0)
	if err != nil {
		return client.Capture{}, refuse(BadRequest, "%v", err)
	}
	c.adopt(w, path)
	c.cfg.Log.Printf("capture: writing %s", path)
	return client.Capture{Active: true, Path: path}, nil
}

// AdoptCapture makes w, created by the device for its ports before the
// engine started, the running capture, as if StartCapture had made it.
func (c *Controller) AdoptCapture(w *capture.Writer, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.adopt(w, path)
}

// adopt starts recording to w (c.mu held).
func (c *Controller) adopt(w *capture.Writer, path string) {
	run := &captureRun{w: w, path: path, stop: make(chan struct{})}
	run.done.Add(1)
	go run.flush(c)
	c.capture = run
	c.cfg.Engine.SetCapture(w)
}

func (r *captureRun) flush(c *Controller) {
	defer r.done.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			if err := r.w.Flush(); err != nil {
				c.cfg.Log.Printf("capture %s: %v", r.path, err)
				return
			}
		}
	}
}

// StopCapture stops the capture and closes its file.
func (c *Controller) StopCapture() (client.Capture, error) {
	c.mu.Lock()
	run := c.capture
	c.capture = nil
	c.mu.Unlock()
	if run == nil {
		return client.Capture{}, refuse(Conflict, "no capture is running")
	}
	c.cfg.Engine.SetCapture(nil)
	close(run.stop)
	run.done.Wait()
	err := run.w.Close()
	st := client.Capture{Path: run.path, Packets: run.w.Packets()}
	if err != nil {
		c.cfg.Log.Printf("capture %s: %v", run.path, err)
		return st, errors.New("capture " + run.path + ": " + err.Error())
	}
	c.cfg.Log.Printf("capture: %d packets in %s", st.Packets, run.path)
	return st, nil
}

// Capture returns the capture's state.
func (c *Controller) Capture() client.Capture {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.capture == nil {
		return client.Capture{}
	}
	return client.Capture{Active: true, Path: c.capture.path, Packets: c.capture.w.Packets()}
}
