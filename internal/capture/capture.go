// Package capture writes what the device saw to a pcapng file: one
// interface per port, ingress and egress marked by the packet direction
// flag, and a comment on every packet a behavior dropped, delayed, modified
// or injected, so the file tells its own story in Wireshark or tshark.
package capture

import (
	"bufio"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/faultbox/faultbox/internal/engine"
)

// Writer is an engine.Capture writing pcapng.
type Writer struct {
	mu      sync.Mutex
	f       *os.File
	buf     *bufio.Writer
	ng      *pcapgo.NgWriter
	offset  int64 // wall clock minus engine clock, ns
	snaplen int
	err     error
	n       uint64
}

// Create opens path and writes one interface per port name. Packets longer
// than snaplen (0: no limit) are truncated in the file.
func Create(path string, ports []string, snaplen int) (*Writer, error) {
	if len(ports) == 0 {
		return nil, fmt.Errorf("capture %s: no ports", path)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	w := &Writer{f: f, buf: bufio.NewWriterSize(f, 1<<20), snaplen: snaplen}
	w.offset = time.Now().UnixNano() - engine.Monotonic()
	intf := func(name string) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: name, Description: "faultbox port " + name, LinkType: layers.LinkTypeRaw,
			TimestampResolution: 9, SnapLength: uint32(snaplen)}
	}
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "faultbox", OS: "linux"}}
	ng, err := pcapgo.NewNgWriterInterface(w.buf, intf(ports[0]), opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture %s: %w", path, err)
	}
	for _, p := range ports[1:] {
		if _, err := ng.AddInterface(intf(p)); err != nil {
			f.Close()
			return nil, fmt.Errorf("capture %s: %w", path, err)
		}
	}
	w.ng = ng
	return w, nil
}

var (
	inbound  = pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionInbound}
	outbound = pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionOutbound}
)

// Record writes one packet. Errors are kept and reported by Close.
func (w *Writer) Record(r engine.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	data := r.Data
	if w.snaplen > 0 && len(data) > w.snaplen {
		data = data[:w.snaplen]
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, r.Time+w.offset), CaptureLength: len(data), Length: len(r.Data), InterfaceIndex: r.Port}
	opts := pcapgo.NgPacketOptions{Flags: &inbound}
	if r.Egress {
		opts.Flags = &outbound
	}
	if note := comment(r); note != "" {
		opts.Comments = []string{note}
	}
	w.err = w.ng.WritePacketWithOptions(ci, data, opts)
	w.n++
}

func comment(r engine.Record) string {
	switch {
	case r.Delayed > 0 && r.Note != "":
		return fmt.Sprintf("%s (held %s)", r.Note, time.Duration(r.Delayed))
	case r.Delayed > 0:
		return fmt.Sprintf("delayed %s", time.Duration(r.Delayed))
	}
	return r.Note
}

// Flush writes buffered packets to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if err := w.ng.Flush(); err != nil {
		return err
	}
	return w.buf.Flush()
}

// Packets is the number of packets written so far.
func (w *Writer) Packets() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Close flushes and closes the file.
func (w *Writer) Close() error {
	err := w.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}
