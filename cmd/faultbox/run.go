package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/faultbox/faultbox/internal/shell"
)

func newRunCmd() *cobra.Command {
	var o shell.Options
	var seed uint64
	cmd := &cobra.Command{
		Use:   "run --profile NAME|FILE [--name N] [--seed S] [--capture F.pcapng] [--api ADDR] -- CMD [ARGS...]",
		Short: "Run a command whose network goes through the device",
		Long: `Run CMD in a network namespace of its own whose only way out is the device, to
the network of the namespace faultbox runs in (the host side): the profile
applies to everything CMD sends and receives, over IPv4 and IPv6, like a
phone on GPRS or a client behind a firewall, against real servers anywhere.

CMD gets 198.19.x.2 and 2001:db8:fb:x::2; the host side is 198.19.x.1 and
2001:db8:fb:x::1 (it answers CMD's DNS queries, passing them to this host's
resolvers). On the host side, an nft table inet faultbox-run-NAME masquerades
CMD's addresses; nothing else of the host changes. For CMD to reach other
hosts, forwarding must be on here (net.ipv4.ip_forward=1,
net.ipv6.conf.all.forwarding=1): faultbox says so when it is off, and does
not change it. localhost in CMD is CMD's own namespace, not the host's.

faultbox run ends when CMD does and returns its exit status (128 + the
signal if a signal killed it). SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to
faultbox go to CMD first. Everything the run created is removed when it
ends; after a SIGKILL of faultbox, the next faultbox run (or detach --all)
removes it. faultbox's own errors exit with 1 (2 for bad input) before CMD
starts. CMD runs as the user faultbox runs as: root under sudo.

While it runs, the run is a device like a lab or an attach: faultbox status
--name NAME shows its counters and faultbox apply --name NAME switches its
profile (NAME is run-N, as faultbox run says, unless --name gives one). Its
control API is on /run/faultbox/NAME/control.sock and, with --api, on TCP
too (on the host side, not in CMD's namespace), with a bearer token printed
once on stderr (docs/api.md).`,
		Example: `  sudo faultbox run --profile gprs -- curl -o /dev/null https://example.com/
  sudo faultbox run --profile lossy-wifi --seed 7 --capture /tmp/wifi.pcapng -- ./my-client
  sudo faultbox run --name phone --profile 3g -- bash     # a shell on 3G
  sudo faultbox status --name phone                        # from another terminal
  sudo faultbox apply --name phone gprs                    # now on GPRS, connections kept
  sudo faultbox run --profile 3g --api 127.0.0.1:7070 -- ./my-client   # driven over TCP from this host
  sudo faultbox run --profile gprs -- sudo -u "$USER" firefox`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Command = args
			o.Seed = seedFlag(cmd, seed)
			o.Notes = cmd.ErrOrStderr()
			status, err := shell.Run(o)
			switch {
			case err != nil && status == 0:
				return usageIfInput(err)
			case err != nil:
				fmt.Fprintln(os.Stderr, "faultbox:", err)
			}
			if status != 0 {
				return &exitError{code: status, err: fmt.Errorf("run: %s: %s", args[0], describeStatus(status))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "run name: 1-16 of a-z, 0-9 and '-' (default run-N)")
	deviceFlags(cmd, &o.Options, &seed, "", "every packet of both ports")
	// Everything after the first argument belongs to CMD, dashes included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// describeStatus says how a command ended, from its shell status.
func describeStatus(status int) string {
	if sig := unix.SignalName(syscall.Signal(status - 128)); status > 128 && sig != "" {
		return fmt.Sprintf("status %d (128 + %s)", status, sig)
	}
	return fmt.Sprintf("exit status %d", status)
}

// The command's first process (not for people): see shell.Init.
func newRunInitCmd() *cobra.Command {
	var resolv string
	cmd := &cobra.Command{
		Use:    "run-init --resolv FILE -- CMD [ARGS...]",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return shell.Init(resolv, args)
		},
	}
	cmd.Flags().StringVar(&resolv, "resolv", "", "the command's /etc/resolv.conf")
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func init() {
	rootCmd.AddCommand(newRunCmd(), newRunInitCmd())
}
