package main

import (
	"encoding/json"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/faultbox/faultbox/internal/attach"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/shell"
)

// placements wires each kind of device to the package that places its
// ports.
func placements(st *device.State) (device.Placement, error) {
	switch st.KindOf() {
	case device.KindLab:
		return lab.Placement(st)
	case device.KindAttach:
		return attach.Placement(st)
	case device.KindRun:
		return shell.Placement(st)
	}
	return nil, device.InputErrorf("%s: unknown kind of device %q", st.Name, st.Kind)
}

// The device process that lab up (and attach, run) start; not for people.
func newDeviceCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:    "device --name N",
		Short:  "Run a device (started by lab up, attach and run)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return device.Run(name, placements)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the device's name")
	return cmd
}

// writeStatus prints the status of the device called name, as tables or
// JSON.
func writeStatus(cmd *cobra.Command, name string, asJSON bool) error {
	st, err := device.GetStatus(name)
	if err != nil {
		return usageIfInput(err)
	}
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return device.WriteStatus(cmd.OutOrStdout(), st)
}

func init() {
	rootCmd.AddCommand(newDeviceCmd(), newEventsCmd())
}

// newEventsCommand is `events` for any device (top level) and for labs;
// the caller adds the --name flag whose value it returns.
func newEventsCommand(use, example string) (*cobra.Command, *string) {
	var name string
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   use,
		Short: "Show what the behaviors did: the device's event log",
		Long: `Print the events the device recorded (the latest 65536), one a line: when,
what (asa-teardown: flow forgotten, vanish: client gone, log ...) and the packet
it was about. With --follow, keep printing events as they happen until
interrupted. With --json, print each as a JSON object (the control API's
GET /v1/events; docs/api.md).`,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := device.Only(name, "")
			if err != nil {
				return usageIfInput(err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return usageIfInput(device.WriteEvents(ctx, cmd.OutOrStdout(), n, follow, asJSON))
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing events as they happen")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event as a JSON object, one a line")
	return cmd, &name
}

func newEventsCmd() *cobra.Command {
	cmd, name := newEventsCommand("events [--name N] [--follow] [--json]",
		`  sudo faultbox events --name pid-4242 --follow
  sudo faultbox events --json | jq .note`)
	cmd.Flags().StringVar(name, "name", "", "the device (default: the only one)")
	return cmd
}
