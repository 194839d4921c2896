package lab

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/engine"
)

// Status is `lab status`: the lab's own facts and the engine's snapshot
// (whose fields appear at the top level of the JSON).
type Status struct {
	Lab            string    `json:"lab"`
	PID            int       `json:"pid"`
	Started        time.Time `json:"started"`
	UptimeSeconds  float64   `json:"uptime_seconds"`
	Hosts          []Host    `json:"hosts"`
	Source         string    `json:"profile_source"` // built-in name or file
	MTU            int       `json:"mtu"`
	CPUs           []int     `json:"cpus,omitempty"`
	BusyPoll       string    `json:"busy_poll,omitempty"`
	Capture        string    `json:"capture,omitempty"`
	CapturePackets uint64    `json:"capture_packets,omitempty"`
	Failure        string    `json:"failure,omitempty"` // a port failed for good
	engine.Status
}

// running returns lab's state if its daemon is alive, or an error that
// says whether the lab is not up at all or its daemon died.
func running(lab string) (*State, error) {
	if err := CheckName(lab); err != nil {
		return nil, err
	}
	st, err := ReadState(lab)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, inputErrorf("lab %q is not up (start it with `faultbox lab up --name %s`)", lab, lab)
	}
	if err != nil {
		return nil, err
	}
	if !st.Daemon.Alive() {
		return nil, inputErrorf("lab %q is not running: its device (pid %d) has died; `faultbox lab down --name %s` removes what is left", lab, st.Daemon.PID, lab)
	}
	return st, nil
}

// GetStatus asks lab's daemon for its status.
func GetStatus(lab string) (*Status, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if _, err := running(lab); err != nil {
		return nil, err
	}
	resp, err := call(lab, Request{Op: "status"}, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("lab %q: %w", lab, err)
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("lab %q: the daemon sent no status", lab)
	}
	return resp.Status, nil
}

// QueueDropsWarning says what n packets lost in the device's input queues
// mean for a run, and what helps.
func QueueDropsWarning(n uint64) string {
	return fmt.Sprintf("the device lost %d packets that no behavior dropped: the kernel had no room for them in "+
		"its input queues (QUEUE DROPS) because it fell behind. A device with a CPU of its own keeps up longer "+
		"(lab up --cpus 1 --busy-poll 1ms).", n)
}

// QueueDrops sums the ports' queue drops.
func (st *Status) QueueDrops() uint64 {
	var n uint64
	for _, p := range st.Ports {
		n += p.Stats.QueueDrops
	}
	return n
}

// WriteStatus prints st as tables for people.
func WriteStatus(w io.Writer, st *Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	up := time.Duration(st.UptimeSeconds * float64(time.Second)).Round(time.Second)
	cpus := ""
	if len(st.CPUs) > 0 {
		cpus = ", cpus " + FormatCPUs(st.CPUs)
	}
	if st.BusyPoll != "" && st.BusyPoll != "0s" {
		cpus += ", busy-poll " + st.BusyPoll
	}
	fmt.Fprintf(tw, "lab\t%s (device pid %d, up %s, mtu %d%s)\n", st.Lab, st.PID, up, st.MTU, cpus)
	fmt.Fprintf(tw, "profile\t%s (seed %d, from %s)\n", st.Profile, st.Seed, st.Source)
	if st.Capture != "" {
		fmt.Fprintf(tw, "capture\t%s (%d packets)\n", st.Capture, st.CapturePackets)
	}
	if st.Failure != "" {
		fmt.Fprintf(tw, "FAILURE\t%s\n", st.Failure)
	}
	fmt.Fprintln(tw)

	fmt.Fprintln(tw, "HOST\tNAMESPACE\tIPV4\tIPV6\tPORT\tOFFLOAD\tREAD PKTS\tREAD BYTES\tWRITTEN PKTS\tWRITTEN BYTES\tGSO\tQUEUE DROPS\tDROPS")
	for _, h := range st.Hosts {
		i := slices.IndexFunc(st.Ports, func(p engine.PortStatus) bool { return p.Name == h.Name })
		if i < 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\n", h.Name, h.Namespace, h.IPv4, h.IPv6)
			continue
		}
		p := st.Ports[i]
		s := p.Stats
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", h.Name, h.Namespace, h.IPv4, h.IPv6,
			p.Device, onOff(p.Offloads), s.ReadPackets, s.ReadBytes, s.WritePackets, s.WriteBytes, s.GSOPackets, s.QueueDrops, s.ReadDrops+s.WriteDrops)
	}
	if n := st.QueueDrops(); n > 0 {
		fmt.Fprintf(tw, "\nwarning: %s\n", QueueDropsWarning(n))
	}
	fmt.Fprintln(tw)

	c := st.Counters
	fmt.Fprintf(tw, "packets\tin %d  out %d  dropped %d  delayed %d  injected %d  modified %d  queued %d\n",
		c.In, c.Out, c.Dropped, c.Delayed, c.Injected, c.Modified, st.Queued)
	fmt.Fprintf(tw, "\tno-route %d  unreadable %d  malformed %d  split %d  write-drops %d\n",
		c.NoRoute, c.Unreadable, c.Malformed, c.Split, c.WriteDrops)
	f := st.Flows
	fmt.Fprintf(tw, "flows\tactive %d/%d  created %d  expired %d  evicted %d\n", f.Active, f.Capacity, f.Created, f.Expired, f.Evicted)
	if len(st.FlowState) > 0 {
		var states []string
		for _, k := range slices.Sorted(maps.Keys(st.FlowState)) {
			states = append(states, fmt.Sprintf("%s %d", k, st.FlowState[k]))
		}
		fmt.Fprintf(tw, "\t%s\n", strings.Join(states, ", "))
	}
	fmt.Fprintf(tw, "events\t%d\n", st.Events)
	fmt.Fprintln(tw)

	fmt.Fprintln(tw, "#\tBEHAVIOR\tMATCH\tMATCHED\tDROPPED\tDELAYED\tMODIFIED\tINJECTED\tSTATS")
	for i, b := range st.Behaviors {
		bc := b.Counters
		var extra []string
		for _, k := range behaviors.SortedKeys(b.Extra) {
			extra = append(extra, fmt.Sprintf("%s=%d", k, b.Extra[k]))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", i+1, b.Type, b.Match,
			bc.Matched, bc.Dropped, bc.Delayed, bc.Modified, bc.Injected, strings.Join(extra, " "))
	}
	if len(st.Behaviors) == 0 {
		fmt.Fprintln(tw, "-\t(none: every packet passes)")
	}
	return tw.Flush()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
