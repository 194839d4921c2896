package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/faultbox/faultbox/internal/attach"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/shell"
)

func newAttachCmd() *cobra.Command {
	var o attach.Options
	var seed uint64
	var foreground bool
	cmd := &cobra.Command{
		Use:   "attach --pid PID | --netns PATH|NAME|self --to PREFIX[,PREFIX...] [--port N[,N...]] --profile NAME|FILE [--name N] [--seed S] [--capture F.pcapng] [--api ADDR [--api-token-file F]] [--foreground]",
		Short: "Put the device in front of services that already run",
		Long: `Put the device inline between the processes of an existing network namespace
(a container's, a pod's, the host's) and the destination prefixes --to, both
directions, IPv4 and IPv6, with the profile's faults. Only traffic to those
prefixes (and, with --port, to or from those ports) enters the device;
connections that are open keep going, now through it.

The device adds two interfaces (fbx-app, fbx-world), a few routing rules and
two routing tables to the namespace and sets a few sysctls there (see the
README); detach puts every one back, also after the device was killed. If
the device dies, its interfaces go with it and traffic takes its usual way
again, without faults. Needs CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter a
namespace other than its own (--netns self needs neither that nor setns).

The device runs in a process of its own, and attach returns once it is in
place. With --foreground it runs in attach's process instead, logging to
stderr, until SIGTERM or SIGINT (or detach), and then puts the namespace
back: the way to run it as a container's main process, since a container
ends with its main process.

In the profile, from/to take CIDR prefixes, or "local" for the namespace's
own addresses.`,
		Example: `  sudo faultbox attach --pid $(docker inspect -f '{{.State.Pid}}' web) --to 172.17.0.3 --profile gprs
  sudo faultbox attach --netns /var/run/netns/blue --to 10.0.0.0/8,fd00::/8 --port 5432 --profile cisco-asa-lost-fin
  faultbox attach --netns self --to 10.96.0.0/12 --profile ./flaky.yaml     # a sidecar with NET_ADMIN
  faultbox attach --netns self --to 10.96.0.0/12 --profile /etc/faultbox/profile.yaml --foreground   # as its main process
  sudo faultbox status --name pid-4242
  sudo faultbox detach --name pid-4242`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Seed = seedFlag(cmd, seed)
			o.Notes = cmd.ErrOrStderr()
			if foreground {
				return attachForeground(o)
			}
			st, err := attach.Attach(o)
			if err != nil {
				return usageIfInput(err)
			}
			return attach.WriteSummary(cmd.OutOrStdout(), st)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.PID, "pid", 0, "attach to the network namespace of this process (e.g. a container's)")
	f.StringVar(&o.Netns, "netns", "", "attach to this namespace: a name in /run/netns, a path, or self")
	f.StringSliceVar(&o.To, "to", nil, "destination prefixes or addresses to put the device in front of, comma-separated")
	f.StringSliceVar(&o.Ports, "port", nil, "only traffic to or from these ports (TCP and UDP), comma-separated")
	f.StringVar(&o.Name, "name", "", "name of this attach: 1-16 of a-z, 0-9 and '-' (default: pid-PID, the namespace's name, or self)")
	deviceFlags(cmd, &o.Options, &seed, "passthrough", "every packet through the device")
	f.StringVar(&o.APITokenFile, "api-token-file", "", "read --api's bearer token from this file (e.g. a mounted Kubernetes Secret) instead of making a random one")
	f.BoolVar(&foreground, "foreground", false, "run the device in this process, logging to stderr, until SIGTERM or SIGINT, then detach (a container's main process)")
	return cmd
}

// attachForeground runs the device in this process rather than starting
// it: attach --foreground, a container's main process.
func attachForeground(o attach.Options) error {
	st, err := attach.Prepare(&o)
	if err != nil {
		return usageIfInput(err)
	}
	// This process is the device: status and detach find it by the state.
	if st.Device, err = device.ProcOf(os.Getpid()); err == nil {
		err = device.WriteState(st)
	}
	if err == nil {
		err = device.Run(st.Name, placements)
	}
	if err != nil {
		if _, derr := attach.Detach(st.Name); derr != nil {
			err = fmt.Errorf("%w (undoing the attach: %v)", err, derr)
		}
		return usageIfInput(err)
	}
	return nil
}

func newDetachCmd() *cobra.Command {
	var name string
	var all, wait bool
	cmd := &cobra.Command{
		Use:   "detach [--name N | --all [--wait]]",
		Short: "Take an attached device out, restoring the namespace",
		Long: `Stop the device and put back every rule, route, table and sysctl attach
changed in the namespace, exactly as they were. After the device was killed
(SIGKILL, a crash) detach does the same from the state it recorded. Without
--name, detaches the only attach there is. --all detaches every attach, and
removes what faultbox runs killed by SIGKILL left (a run that is still going
ends with its command); it leaves labs alone. Safe to repeat.

--all --wait then waits for SIGTERM or SIGINT and detaches every attach again:
the main process of a container through which attaches are made (a
DaemonSet's pod, with kubectl exec ... faultbox attach --pid), so that
they end with it.`,
		Example: `  sudo faultbox detach --name pid-4242
  sudo faultbox detach --all
  faultbox detach --all --wait      # a DaemonSet pod's main process`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all && name != "" {
				return usageError(errors.New("detach: give --name or --all, not both"))
			}
			if wait {
				if !all {
					return usageError(errors.New("detach: --wait goes with --all"))
				}
				return detachAllAndWait(cmd)
			}
			var removed []string
			var err error
			what := "attach " + name
			switch {
			case all:
				what = "all attaches and dead runs"
				removed, err = attach.DetachAll()
				runs, rerr := shell.RemoveDead()
				removed, err = append(removed, runs...), errors.Join(err, rerr)
			default:
				if name, err = device.Only(name, device.KindAttach); err == nil {
					what = "attach " + name
					removed, err = attach.Detach(name)
				}
			}
			return writeRemoved(cmd, what, removed, err)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the attach to remove (default: the only one)")
	cmd.Flags().BoolVar(&all, "all", false, "remove every attach, also those whose device died, and what killed runs left")
	cmd.Flags().BoolVar(&wait, "wait", false, "with --all: then wait for SIGTERM or SIGINT and remove every attach again")
	return cmd
}

// detachAllAndWait removes what earlier attaches left, waits for SIGTERM or
// SIGINT, then removes every attach made meanwhile.
func detachAllAndWait(cmd *cobra.Command) error {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	removed, err := attach.DetachAll()
	if err := writeRemoved(cmd, "all attaches", removed, err); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), "waiting for SIGTERM or SIGINT, then every attach made meanwhile is removed")
	sig := <-sigc
	fmt.Fprintf(cmd.OutOrStdout(), "%v: removing every attach\n", sig)
	removed, err = attach.DetachAll()
	return writeRemoved(cmd, "all attaches", removed, err)
}

// writeRemoved prints what lab down or detach removed (or that there was
// nothing) and returns err for the exit status.
func writeRemoved(cmd *cobra.Command, what string, removed []string, err error) error {
	out := cmd.OutOrStdout()
	if len(removed) == 0 && err == nil {
		fmt.Fprintf(out, "%s: nothing to remove\n", what)
	}
	for _, r := range removed {
		fmt.Fprintf(out, "removed %s\n", r)
	}
	return usageIfInput(err)
}

func newStatusCmd() *cobra.Command {
	var name string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--name N] [--json]",
		Short: "Show a device's placement, profile, seed and counters (lab, attach or run)",
		Long: `Show what the device sits in front of, its ports, profile and seed, and its
counters: packets per port, flows by state, and what each behavior matched,
dropped, delayed, modified and injected. Works for labs, attaches and runs
alike; without --name, the only device there is.`,
		Example: `  sudo faultbox status --name pid-4242
  sudo faultbox status --json | jq .behaviors`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := device.Only(name, "")
			if err != nil {
				return usageIfInput(err)
			}
			return writeStatus(cmd, name, asJSON)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the device (default: the only one)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

// newApplyCommand is `apply` for any device (top level) and for labs; the
// caller adds the --name flag whose value it returns.
func newApplyCommand(use, short, example string) (*cobra.Command, *string) {
	var name, profileFlag string
	var seed uint64
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: `Load and check the profile, then switch the device to it. Open connections and
packets already delayed are kept. A profile with errors changes nothing (exit
status 2). The seed is --seed, else the profile's, else the device's current one.
The profile is the argument, or --profile as lab up, attach and run take it.`,
		Example: example,
		Args: func(cmd *cobra.Command, args []string) error {
			given := args
			if profileFlag != "" {
				given = append(given, profileFlag)
			}
			switch {
			case len(given) > 1:
				return fmt.Errorf("one profile at a time: got %s", strings.Join(given, " and "))
			case len(given) == 0:
				return fmt.Errorf("no profile: give NAME|FILE (or --profile NAME|FILE)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			profile := profileFlag
			if len(args) == 1 {
				profile = args[0]
			}
			profile, s, err := device.Apply(name, profile, seedFlag(cmd, seed))
			if err != nil {
				return usageIfInput(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: profile %s applied (seed %d)\n", name, profile, s)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&seed, "seed", 0, "seed of every random decision (default: the profile's, else the device's)")
	cmd.Flags().StringVar(&profileFlag, "profile", "", "the profile, instead of the argument")
	return cmd, &name
}

func newApplyCmd() *cobra.Command {
	cmd, name := newApplyCommand("apply --name N NAME|FILE [--seed S]", "Switch a running device (lab, attach or run) to another profile",
		`  sudo faultbox apply --name pid-4242 cisco-asa-lost-fin
  sudo faultbox apply --name pid-4242 ./flaky.yaml --seed 7`)
	cmd.Flags().StringVar(name, "name", "", "the device")
	cmd.MarkFlagRequired("name")
	return cmd
}

func init() {
	rootCmd.AddCommand(newAttachCmd(), newDetachCmd(), newStatusCmd(), newApplyCmd())
}
