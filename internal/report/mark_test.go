package report

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
)

// A dropped request and the RST the device injects in its place toward
// the server share ends and instant; two marks on them mark both.
func TestWrite_MarksOnPacketsOfTheSameEndsAndInstant(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "capture.pcapng")
	c := newCapWriter(t, path, "client", "server")
	ms := time.Millisecond
	req := seg(clientIP, 40312, serverIP, 80, packet.PSH|packet.ACK, cISN+1, sISN+1, 60)
	c.record("server", 5*ms, true, "injected: idle-timeout: rst to server", 0, seg(clientIP, 40312, serverIP, 80, packet.RST|packet.ACK, cISN+1, sISN+1, 0))
	c.record("client", 5*ms, false, "idle-timeout: flow expired", 0, req)
	c.close()
	cp, err := ReadCapture(path, Filter{})
	if err != nil || len(cp.Packets) != 2 {
		t.Fatalf("%v, %d packets", err, len(cp.Packets))
	}
	r := &Report{Scenario: "idle", Outcome: Reproduced, Expected: Reproduced, Capture: path}
	r.Ladder.Marks = []Mark{cp.Packets[0].Mark("the request, dropped"), cp.Packets[1].Mark("the RST to the server")}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, g := range find(svgByID(t, readHTML(t, dir), "ladder"), elem("g", "pkt")) {
		notes = append(notes, attr(g, "data-mark"))
	}
	if len(notes) != 2 || notes[0] != "the request, dropped" || notes[1] != "the RST to the server" {
		t.Errorf("marks drawn %q", notes)
	}
}
