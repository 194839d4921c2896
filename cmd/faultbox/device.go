package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/faultbox/faultbox/internal/attach"
	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/lab"
)

// placements wires each kind of device to the package that places its
// ports.
func placements(st *device.State, save func() error) (device.Placement, error) {
	switch st.KindOf() {
	case device.KindLab:
		return lab.Placement(st, save)
	case device.KindAttach:
		return attach.Placement(st, save)
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
		return labErr(err)
	}
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return device.WriteStatus(cmd.OutOrStdout(), st)
}

func init() {
	rootCmd.AddCommand(newDeviceCmd())
}
