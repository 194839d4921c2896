package device

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/client"
)

// QueueDropsWarning says what n packets lost in the device's input queues
// mean for a run, and what helps.
func QueueDropsWarning(n uint64) string {
	return fmt.Sprintf("the device lost %d packets that no behavior dropped: the kernel had no room for them in "+
		"its input queues (QUEUE DROPS) because it fell behind. A device with a CPU of its own keeps up longer "+
		"(lab up --cpus 1 --busy-poll 1ms).", n)
}

// WriteStatus prints st as tables for people.
func WriteStatus(w io.Writer, st *client.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	up := time.Duration(st.UptimeSeconds * float64(time.Second)).Round(time.Second)
	cpus := ""
	if len(st.CPUs) > 0 {
		cpus = ", cpus " + FormatCPUs(st.CPUs)
	}
	if st.BusyPoll != "" && st.BusyPoll != "0s" {
		cpus += ", busy-poll " + st.BusyPoll
	}
	fmt.Fprintf(tw, "%s\t%s (device pid %d, up %s, mtu %d%s)\n", st.Kind, st.Name, st.PID, up, st.MTU, cpus)
	fmt.Fprintf(tw, "in front of\t%s\n", st.Placement)
	fmt.Fprintf(tw, "profile\t%s (seed %d, from %s)\n", st.Profile, st.Seed, st.Source)
	if st.Capture != "" {
		fmt.Fprintf(tw, "capture\t%s (%d packets)\n", st.Capture, st.CapturePackets)
	}
	if st.Failure != "" {
		fmt.Fprintf(tw, "FAILURE\t%s\n", st.Failure)
	}
	fmt.Fprintln(tw)

	fmt.Fprintln(tw, "PORT\tNAMESPACE\tINTERFACE\tROUTES TO\tOFFLOAD\tREAD PKTS\tREAD BYTES\tWRITTEN PKTS\tWRITTEN BYTES\tGSO\tQUEUE DROPS\tDROPS")
	for _, p := range st.Ports {
		s := p.Stats
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Name, st.Namespaces[p.Name], p.Interface, routesTo(p.Addrs),
			onOff(p.Offloads), s.ReadPackets, s.ReadBytes, s.WritePackets, s.WriteBytes, s.GSOPackets, s.QueueDrops, s.ReadDrops+s.WriteDrops)
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
	if len(st.FlowStates) > 0 {
		var states []string
		for _, k := range slices.Sorted(maps.Keys(st.FlowStates)) {
			states = append(states, fmt.Sprintf("%s %d", k, st.FlowStates[k]))
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
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", i+1, behaviorName(b), b.Match,
			bc.Matched, bc.Dropped, bc.Delayed, bc.Modified, bc.Injected, strings.Join(extra, " "))
	}
	if len(st.Behaviors) == 0 {
		fmt.Fprintln(tw, "-\t(none: every packet passes)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeWaits(w, st.Behaviors)
}

// behaviorName is the behavior's type, and its name when that says more.
func behaviorName(b client.Behavior) string {
	if b.Name == b.Type || b.Name == "" {
		return b.Type
	}
	return b.Name + " (" + b.Type + ")"
}

// writeWaits says, for each behavior that saw traffic but never what it
// waits for, what that is and what came instead: a profile that never
// fires must not pass for a fault that did not matter.
func writeWaits(w io.Writer, bs []client.Behavior) error {
	first := true
	for i, b := range bs {
		if b.Waits == nil || b.Waits.Seen > 0 || b.Counters.Matched == 0 {
			continue
		}
		if first {
			fmt.Fprintln(w)
			first = false
		}
		line := fmt.Sprintf("%d %s seen in %d matched packets", b.Waits.Seen, b.Waits.For, b.Counters.Matched)
		if b.Waits.Note != "" {
			line += ": " + b.Waits.Note
		}
		if _, err := fmt.Fprintf(w, "waiting: #%d %s: %s\n", i+1, behaviorName(b), line); err != nil {
			return err
		}
	}
	return nil
}

// routesTo writes a port's prefixes, single addresses without their length.
func routesTo(prefixes []string) string {
	out := make([]string, len(prefixes))
	for i, s := range prefixes {
		if p, err := netip.ParsePrefix(s); err == nil && p.IsSingleIP() {
			s = p.Addr().String()
		}
		out[i] = s
	}
	return strings.Join(out, " ")
}
