// Command faultbox is a fault-injecting inline network device: real clients
// and servers talk through it, and it makes middlebox failures happen on
// demand. This package only parses flags and wires packages together.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// exitError carries an exit status: 1 for "not reproduced"/failure, 2 for
// usage or input errors.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as bad input (exit status 2).
func usageError(err error) error { return &exitError{code: 2, err: err} }

var rootCmd = &cobra.Command{
	Use:   "faultbox",
	Short: "A fault-injecting network middlebox simulator",
	Long: `faultbox is an inline L3 device with TUN ports. Real, unmodified clients and
servers talk through it; it tracks every TCP flow and applies the behaviors of
a profile (delay, loss, off-by-one RSTs, vanishing clients, ...) so that field
failures between real TCP stacks happen on demand, deterministically.`,
	SilenceUsage:  true,
	SilenceErrors: true,
	// Runs once cobra has parsed the flags and checked the arguments: an
	// error before it is a usage error (exit 2), after it a failure (1)
	// unless the command marked it otherwise.
	PersistentPreRun: func(*cobra.Command, []string) { commandRan = true },
}

var commandRan bool

func main() {
	raisePermittedCaps()
	useLinesListFlags(rootCmd)
	err := rootCmd.Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "faultbox:", err)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case !commandRan: // cobra's own flag, argument and command-name errors
		os.Exit(2)
	default:
		os.Exit(1)
	}
}

// useLinesListFlags keeps cobra from adding "[flags]" to the usage lines:
// each command's Use lists its own flags.
func useLinesListFlags(cmd *cobra.Command) {
	cmd.DisableFlagsInUseLine = true
	for _, c := range cmd.Commands() {
		useLinesListFlags(c)
	}
}

// newTable starts the aligned columns every listing prints.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }
