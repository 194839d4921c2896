package shell

import (
	"strconv"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
)

// record is a run's placement in its state.json: what the device needs to
// place its ports and what removing the run needs after a SIGKILL.
type record struct {
	Slot    slot     `json:"slot"`
	Command []string `json:"command"`
	// Process is the command's first process: faultbox's Init until the
	// device is ready, then the command itself (exec keeps the process).
	// Zero until it started.
	Process device.Proc `json:"process"`
	// Netns is the command's network namespace. It has no name: it lives
	// as long as a process or the device's port is in it.
	Netns netns.ID `json:"netns"`
	// Host is the namespace faultbox run was started in, the host side;
	// HostPath a path that named it then (empty if none did).
	Host     netns.ID `json:"host_netns"`
	HostPath string   `json:"host_netns_path,omitempty"`
	// Nameservers are the host side's resolvers (from its
	// /etc/resolv.conf) to which the command's queries are forwarded.
	Nameservers []string `json:"nameservers"`
}

// netnsPath is a path that opens the command's namespace while its first
// process lives.
func (r *record) netnsPath() string { return "/proc/" + strconv.Itoa(r.Process.PID) + "/ns/net" }

// decode reads a run's record.
func decode(st *device.State) (*record, error) {
	var r record
	if err := st.DecodeAs(device.KindRun, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
