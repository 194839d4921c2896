package e2e

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/testenv"
)

// TestCapture_ReadableByTsharkOneInterfacePerPort: a lab with --capture
// writes a pcapng file that tshark reads, with one interface per port (two
// hosts: two), packets on both, and a comment on the packets the
// block-port-81 profile dropped.
func TestCapture_ReadableByTsharkOneInterfacePerPort(t *testing.T) {
	cap := filepath.Join(t.TempDir(), "lab.pcapng")
	l := startLab(t, "--profile", "block-port-81", "--capture", cap)
	dir := t.TempDir()
	randomFile(t, dir, "small", 32<<10)
	l.httpServer(dir, 80)
	l.mustExec(30*time.Second, "client", "curl", "-sS", "--fail", "--max-time", "10", "-o", "/dev/null", "http://server/small")
	if r := l.exec(30*time.Second, "client", "curl", "-sS", "--max-time", "2", "-o", "/dev/null", "http://server:81/"); r.Code == 0 {
		t.Errorf("port 81 answered under block-port-81")
	}
	// The file is complete once the device has stopped.
	if r := fb(60*time.Second, "lab", "down", "--name", l.name); r.Code != 0 {
		t.Fatalf("lab down: %s", r)
	}

	data, err := os.ReadFile(cap)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	if n, err := interfaceBlocks(data); err != nil || n != 2 {
		t.Errorf("capture has %d interface description blocks (%v), want 2 (one per port)", n, err)
	}

	r := testenv.Run(60*time.Second, "tshark", "-r", cap, "-T", "fields", "-e", "frame.interface_id", "-e", "frame.comment")
	if r.Code != 0 {
		t.Fatalf("tshark -r %s: %s", cap, r)
	}
	ids := map[string]int{}
	var comments []string
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.SplitN(line, "\t", 2)
		ids[f[0]]++
		if len(f) == 2 && f[1] != "" {
			comments = append(comments, f[1])
		}
	}
	got := make([]string, 0, len(ids))
	for id := range ids {
		got = append(got, id)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"0", "1"}) {
		t.Errorf("packets on interfaces %v, want both 0 and 1 (%v)", got, ids)
	}
	if !slices.ContainsFunc(comments, func(c string) bool { return strings.Contains(strings.ToLower(c), "drop") }) {
		t.Errorf("no packet comment mentions a drop; comments: %.5q", comments)
	}
	t.Logf("capture: %d bytes, packets per interface %v, %d comments", len(data), ids, len(comments))
}

// interfaceBlocks counts the Interface Description Blocks of a pcapng file
// (little- or big-endian, as its section header says).
func interfaceBlocks(data []byte) (int, error) {
	const shb, idb = 0x0A0D0D0A, 1
	var order binary.ByteOrder = binary.LittleEndian
	n := 0
	for off := 0; off+12 <= len(data); {
		if binary.LittleEndian.Uint32(data[off:]) == shb {
			switch binary.LittleEndian.Uint32(data[off+8:]) {
			case 0x1A2B3C4D:
				order = binary.LittleEndian
			case 0x4D3C2B1A:
				order = binary.BigEndian
			default:
				return n, errBadPcapng
			}
		}
		typ, size := order.Uint32(data[off:]), int(order.Uint32(data[off+4:]))
		if size < 12 || off+size > len(data) {
			return n, errBadPcapng
		}
		if typ == idb {
			n++
		}
		off += size
	}
	return n, nil
}

var errBadPcapng = errors.New("not a well-formed pcapng file")
