package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/lab"
)

var labCmd = &cobra.Command{
	Use:   "lab",
	Short: "Run hosts in network namespaces wired through the device",
	Long: `A lab is one network namespace per host (client, server, lb, ...), each with a
TUN port as its only interface, all wired through one faultbox device that
applies a profile. Inside every host the lab's host names resolve; client,
server and lb are always 198.18.0.1-3 and 2001:db8::1-3. Needs root.`,
	Example: `  sudo faultbox lab up --profile block-port-81
  sudo faultbox lab exec client -- curl http://server/
  sudo faultbox lab down`,
}

// labName is the --name flag every lab command takes.
func labName(cmd *cobra.Command, name *string) {
	cmd.Flags().StringVar(name, "name", lab.DefaultName, "lab name: 1-16 of a-z, 0-9 and '-'")
}

// usageIfInput makes bad input (device.IsInputError) a usage error, exit
// status 2, for every device command: lab, attach, run, status, apply ...
func usageIfInput(err error) error {
	if err != nil && device.IsInputError(err) {
		return usageError(err)
	}
	return err
}

// deviceFlags adds the flags every device command takes alike (lab up,
// attach, run): --profile (default profile, "" for none), --seed, --capture
// (captureWhat says what it holds), --api and --api-allow-remote.
func deviceFlags(cmd *cobra.Command, o *device.Options, seed *uint64, profile, captureWhat string) {
	profileHelp := "built-in profile name or profile file"
	if profile == "" {
		profileHelp += " (required)"
	}
	cmd.Flags().StringVar(&o.Profile, "profile", profile, profileHelp)
	cmd.Flags().Uint64Var(seed, "seed", 0, "seed of every random decision (default: the profile's, else random)")
	cmd.Flags().StringVar(&o.Capture, "capture", "", "write "+captureWhat+" to this pcapng file")
	cmd.Flags().StringVar(&o.API, "api", "", "also serve the control API on this TCP address, e.g. 127.0.0.1:7070, with a bearer token printed here once (default: the unix socket only)")
	cmd.Flags().BoolVar(&o.APIAllowRemote, "api-allow-remote", false, "let --api listen on an address other than loopback (e.g. for a Prometheus elsewhere)")
}

// seedFlag returns the --seed value if it was given.
func seedFlag(cmd *cobra.Command, seed uint64) *uint64 {
	if cmd.Flags().Changed("seed") {
		return &seed
	}
	return nil
}

func newLabUpCmd() *cobra.Command {
	var o lab.Options
	var hosts, cpus, busyPoll string
	var seed uint64
	cmd := &cobra.Command{
		Use:   "up [--name N] [--hosts client,server[,lb]] [--profile NAME|FILE] [--seed S] [--capture F.pcapng] [--mtu 1500] [--busy-poll 20us] [--cpus LIST [--busy-poll 1ms|always]]",
		Short: "Create a lab and start its device",
		Long: `Create one namespace per host, start the device in the background and return
once traffic flows between the hosts over IPv4 and IPv6. Hosts client, server
and lb get 198.18.0.1-3 and 2001:db8::1-3; other hosts 198.18.0.10, .11, ...
and 2001:db8::a, ::b, ... in the order given. The seed is --seed, else the
profile's, else random; it is printed and shown by lab status.`,
		Example: `  sudo faultbox lab up
  sudo faultbox lab up --name web --hosts client,lb,server --profile cisco-asa --seed 42
  sudo faultbox lab up --profile ./my-profile.yaml --capture /tmp/lab.pcapng
  sudo faultbox lab up --busy-poll 20us           # answers within 20us cost no wake-up
  sudo faultbox lab up --cpus 1 --busy-poll 1ms   # the device polls on CPU 1
  sudo faultbox lab up --cpus 1 --busy-poll always   # ... and never sleeps: low latency at any rate
  sudo faultbox lab up --api 127.0.0.1:7070       # the control API on TCP too (docs/api.md)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Hosts = lab.ParseHosts(hosts)
			o.Seed = seedFlag(cmd, seed)
			var err error
			if o.CPUs, err = device.ParseCPUs(cpus); err != nil {
				return usageIfInput(err)
			}
			if o.BusyPoll, err = device.ParseBusyPoll(busyPoll); err != nil {
				return usageIfInput(err)
			}
			o.Progress = os.Stderr
			o.Notes = cmd.ErrOrStderr()
			st, err := lab.Up(o)
			if err != nil {
				return usageIfInput(err)
			}
			return lab.WriteSummary(cmd.OutOrStdout(), st)
		},
	}
	labName(cmd, &o.Name)
	cmd.Flags().StringVar(&hosts, "hosts", strings.Join(lab.DefaultHosts, ","), "hosts, comma-separated: 2-16 names, each 1-10 of a-z and 0-9 starting with a letter")
	cmd.Flags().IntVar(&o.MTU, "mtu", 1500, "MTU of every host's interface")
	cmd.Flags().StringVar(&cpus, "cpus", "", "run the device on these CPUs only, e.g. 1 or 2-3 (default: any); a CPU of its own spares it migrations")
	cmd.Flags().StringVar(&busyPoll, "busy-poll", "0", fmt.Sprintf("keep polling this long after the last packet before sleeping, for lower latency: up to %v on shared CPUs (e.g. 20us), up to 1s with --cpus (e.g. 1ms; keeps that CPU busy), or %s with --cpus (never sleeps: the lowest latency at any packet rate, for a whole CPU)", device.SharedBusyPoll, device.BusyPollAlways))
	deviceFlags(cmd, &o.Options, &seed, "passthrough", "every packet of every port")
	return cmd
}

func newLabExecCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "exec [--name N] HOST -- CMD [ARGS...]",
		Short: "Run a command inside a lab host",
		Long: `Run CMD inside HOST's namespace (ip netns exec), where the lab's host names
resolve. Its exit status is faultbox's.`,
		Example: `  sudo faultbox lab exec client -- curl -sS http://server:8080/
  sudo faultbox lab exec --name web server -- python3 -m http.server 80
  sudo faultbox lab exec client -- ping -6 -c3 server`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, argv := args[0], args[1:]
			if argv[0] == "--" { // flags stop at HOST, so a "--" after it arrives here
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return usageError(errors.New("no command to run (faultbox lab exec HOST -- CMD [ARGS...])"))
			}
			code, err := lab.Exec(name, host, argv, os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return usageIfInput(err)
			}
			if code != 0 {
				return &exitError{code: code, err: fmt.Errorf("lab exec: %s exited with status %d", argv[0], code)}
			}
			return nil
		},
	}
	labName(cmd, &name)
	// Everything after HOST belongs to the command, dashes included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabApplyCmd() *cobra.Command {
	cmd, name := newApplyCommand("apply [--name N] NAME|FILE [--seed S]", "Switch a running lab to another profile, keeping connections",
		`  sudo faultbox lab apply block-port-81
  sudo faultbox lab apply --name web ./flaky.yaml --seed 7`)
	labName(cmd, name)
	return cmd
}

func newLabStatusCmd() *cobra.Command {
	var name string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--name N] [--json]",
		Short: "Show a lab's hosts, profile, seed and counters",
		Long: `Show the lab's hosts and addresses, its profile and seed, and the device's
counters: packets per port (offload on/off), flows by state, and what each
behavior of the profile matched, dropped, delayed, modified and injected.`,
		Example: `  sudo faultbox lab status
  sudo faultbox lab status --name web --json | jq .counters`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeStatus(cmd, name, asJSON)
		},
	}
	labName(cmd, &name)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func newLabDownCmd() *cobra.Command {
	var name string
	var all bool
	cmd := &cobra.Command{
		Use:   "down [--name N | --all]",
		Short: "Remove a lab, also after its device was killed",
		Long: `Stop the device, kill the processes left in the lab's hosts, and remove the
namespaces, their /etc/netns files and /run/faultbox/NAME. Safe to repeat.
--all removes every lab and every namespace named fbx-*.`,
		Example: `  sudo faultbox lab down
  sudo faultbox lab down --name web
  sudo faultbox lab down --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all && cmd.Flags().Changed("name") {
				return usageError(errors.New("lab down: give --name or --all, not both"))
			}
			var removed []string
			var err error
			what := "lab " + name
			if all {
				what = "all labs"
				removed, err = lab.DownAll()
			} else {
				removed, err = lab.Down(name)
			}
			return writeRemoved(cmd, what, removed, err)
		},
	}
	labName(cmd, &name)
	cmd.Flags().BoolVar(&all, "all", false, "remove every lab and every leftover fbx-* namespace")
	return cmd
}

func newLabEventsCmd() *cobra.Command {
	cmd, name := newEventsCommand("events [--name N] [--follow] [--json]",
		`  sudo faultbox lab events
  sudo faultbox lab events --name web --follow
  sudo faultbox lab events --json | jq -r 'select(.note == "log") | .src_port'`)
	labName(cmd, name)
	return cmd
}

func init() {
	labCmd.AddCommand(newLabUpCmd(), newLabExecCmd(), newLabApplyCmd(), newLabStatusCmd(), newLabEventsCmd(), newLabDownCmd())
	rootCmd.AddCommand(labCmd)
}
