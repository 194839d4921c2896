package tcpext

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/packet"
	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	"github.com/faultbox/faultbox/internal/scenario/scenariotest"
	"github.com/faultbox/faultbox/internal/sockdiag"
)

// wsView is one arm's evidence to build: whether the device mangled its
// SYN-ACK, the upload's acknowledged bytes and time, and the windows each
// end saw during it.
type wsView struct {
	mangled           bool
	clientScale       bool // the client negotiated scaling
	uploaded          int64
	took              time.Duration
	believed, offered uint32
}

func wsEvidence(t *testing.T, views map[string]wsView) *scenario.Evidence {
	s := scenariotest.New(5 * time.Second)
	for i, a := range wsArms {
		w := views[a.name]
		local := netip.AddrPortFrom(scenariotest.Client, uint16(40000+2*i))
		remote := netip.AddrPortFrom(scenariotest.Server, uint16(a.port))
		s.Packet(0, local, remote, packet.SYN, 1, 0, 0, nil)
		s.Packet(time.Millisecond, remote, local, packet.SYN|packet.ACK, 1, 2, 0, func(p *report.Packet) {
			if w.mangled {
				p.Modified, p.Note = true, "wscale-mangle: window scale rewritten"
			}
		})
		up := scenario.ClientResult{Name: "upload", Arm: a.name, Local: local, Remote: remote, Start: s.At(0), End: s.At(w.took), Bytes: w.uploaded}
		if w.uploaded < wsSize {
			up.Err, up.Kind = "upload: i/o timeout", scenario.KindTimeout
		}
		dlLocal := netip.AddrPortFrom(scenariotest.Client, uint16(40001+2*i))
		dl := scenario.ClientResult{Name: "download", Arm: a.name, Local: dlLocal, Remote: remote, Start: s.At(w.took), End: s.At(w.took + 30*time.Millisecond), Status: 200, Bytes: wsSize}
		s.Evidence.Clients = append(s.Evidence.Clients, up, dl)
		opts := sockdiag.OptSACK | sockdiag.OptWScale
		clientOpts := opts
		if !w.clientScale {
			clientOpts = sockdiag.OptSACK
		}
		for _, snap := range []struct {
			label   string
			options int
			fields  map[string]any
		}{
			{"handshake client", clientOpts, map[string]any{"rcv_wscale": 10}},
			{"handshake server", opts, map[string]any{"rcv_wscale": 10, "snd_wscale": 10}},
			{"upload client", clientOpts, map[string]any{"snd_wnd": w.believed, "rwnd_limited_us": 1500000}},
			{"upload server", opts, map[string]any{"rcv_wnd": w.offered}},
			{"download server", opts, map[string]any{"snd_wnd": 64 << 20}},
		} {
			snap.fields["label"], snap.fields["options"] = a.name+" "+snap.label, snap.options
			s.Kernel(t, wsLog, time.Second, "socket", snap.fields)
		}
	}
	return s.Evidence
}

var wsClean = wsView{clientScale: true, uploaded: wsSize, took: 80 * time.Millisecond, believed: 1 << 20, offered: 1 << 20}

func TestWSJudge_RewrittenScaleStallsTheUpload(t *testing.T) {
	stalled := wsView{mangled: true, clientScale: true, uploaded: 900, took: 3 * time.Second, believed: 64, offered: 64 << 10}
	stripped := stalled
	stripped.clientScale = false
	v := judgeWS(wsEvidence(t, map[string]wsView{armWSClean: wsClean, armWSRewrite: stalled, armWSStrip: stripped}))
	if v.Outcome != report.Reproduced || !strings.Contains(v.Reason, "the client read it as 64 bytes") || !strings.Contains(v.Reason, "turned scaling off") {
		t.Fatalf("%s: %s", v.Outcome, v.Reason)
	}
	if v.Runs[0].Outcome != report.NotReproduced || v.Runs[1].Outcome != report.Reproduced || v.Runs[2].Outcome != report.Reproduced {
		t.Errorf("runs %+v", v.Runs)
	}
	if len(v.Ladder) != 2 || len(v.Marks) != 2 {
		t.Errorf("ladder %v, marks %v: the two mangled uploads and their SYN-ACKs", v.Ladder, v.Marks)
	}
}

func TestWSJudge_FaultOffIsNotReproduced(t *testing.T) {
	v := judgeWS(wsEvidence(t, map[string]wsView{armWSClean: wsClean, armWSRewrite: wsClean, armWSStrip: wsClean}))
	if v.Outcome != report.NotReproduced {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}

// TestWSJudge_ASlowUploadWithoutMangling: a stalled upload the device did
// not cause (the SYN-ACK untouched) is not the failure.
func TestWSJudge_ASlowUploadWithoutMangling(t *testing.T) {
	slow := wsView{clientScale: true, uploaded: 900, took: 3 * time.Second, believed: 64, offered: 64 << 10}
	if v := judgeWS(wsEvidence(t, map[string]wsView{armWSClean: wsClean, armWSRewrite: slow, armWSStrip: slow})); v.Outcome != report.NotReproduced {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}

func TestWSJudge_AMissingUploadIsAnError(t *testing.T) {
	e := wsEvidence(t, map[string]wsView{armWSClean: wsClean, armWSRewrite: wsClean, armWSStrip: wsClean})
	e.Clients = e.Clients[1:] // the clean path's upload
	if v := judgeWS(e); v.Outcome != report.Error || !strings.Contains(v.Reason, "upload") {
		t.Errorf("%s: %s", v.Outcome, v.Reason)
	}
}
