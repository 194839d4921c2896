package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/faultbox/faultbox/internal/report"
	"github.com/faultbox/faultbox/internal/scenario"
	_ "github.com/faultbox/faultbox/internal/scenario/all" // every scenario family
)

var scenarioCmd = &cobra.Command{
	Use:   "scenario",
	Short: "Reproduce a field failure with one command, with evidence and a report",
	Long: `A scenario builds a lab, starts the servers and clients it needs, applies a
profile, drives the traffic, collects the evidence (a pcapng of every port,
the server's socket states over time, the device's event log, the clients'
results, the servers' logs) and tears everything down. Its verdict,
"reproduced" or "not reproduced" with the reason, is computed from that
evidence. Needs root.`,
	Example: `  sudo faultbox scenario list
  sudo faultbox scenario run asa-off-by-one
  sudo faultbox scenario run fin-wait-2 --report /tmp/fw2 --seed 7`,
}

func newScenarioListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tw := newTable(cmd.OutOrStdout())
			for _, s := range scenario.All() {
				fmt.Fprintf(tw, "%s\t%s\n", s.Name, s.Summary)
			}
			return tw.Flush()
		},
	}
}

func newScenarioRunCmd() *cobra.Command {
	var o scenario.Options
	var seed uint64
	var asJSON, fault bool
	cmd := &cobra.Command{
		Use:   "run NAME [--seed S] [--report DIR] [--json] [--keep-lab] [--fault=false]",
		Short: "Run one scenario and print its verdict",
		Long: `Run scenario NAME in a lab of its own (named sc + 6 hex digits), then print the
verdict, the reason and a short timeline. The report directory (default: a
new temporary directory, printed first) holds report.html (verdict, timeline,
ladder diagram of the key connections, socket-state chart), verdict.json,
sockets.json, events.log, clients.json, the capture and the servers' logs.
Kernel timers are shortened inside the lab's namespaces only; the report
lists every sysctl and why.

Exit status: 0 when the outcome is what the scenario expects (normally
"reproduced"), 1 when it is not, 2 when the run could not decide (the lab
failed, a server did not start, Ctrl-C). On a terminal, long waits show
what they wait for and the time left on stderr.

--fault=false runs the same scenario with its fault off (the device
passes everything, or the server runs with the fix): a sound scenario then
says "not reproduced" and exits 1.`,
		Example: `  sudo faultbox scenario run asa-off-by-one
  sudo faultbox scenario run lingering-close --report ./lc --seed 42
  sudo faultbox scenario run nat-idle --json | jq .outcome
  sudo faultbox scenario run fin-wait-2 --keep-lab     # then: faultbox lab down --name scXXXXXX
  sudo faultbox scenario run asa-stuck-send --fault=false   # the control: must say "not reproduced"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, ok := scenario.Lookup(args[0]); !ok {
				return usageError(&scenario.UnknownError{Name: args[0]})
			}
			o.Seed = seedFlag(cmd, seed)
			o.FaultOff = !fault
			o.Progress = os.Stderr
			human := cmd.OutOrStdout()
			if asJSON {
				human = cmd.ErrOrStderr()
			}
			o.Out = human
			res, err := scenario.Run(cmd.Context(), args[0], o)
			if err != nil {
				return usageError(err)
			}
			scenario.WriteSummary(human, res)
			if asJSON {
				if err := printVerdict(cmd.OutOrStdout(), res.Dir); err != nil {
					return err
				}
			}
			switch code := res.ExitCode(); code {
			case scenario.ExitAsExpected:
				return nil
			case scenario.ExitUnexpected:
				return &exitError{code: code, err: fmt.Errorf("scenario %s: %s, expected %s", res.Scenario.Name, res.Report.Outcome, res.Report.Expected)}
			default:
				return &exitError{code: code, err: fmt.Errorf("scenario %s: the run could not decide: %s", res.Scenario.Name, firstLine(res.Report.Reason))}
			}
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&seed, "seed", 0, "seed of every random decision (default: random; printed and in the report)")
	f.StringVar(&o.ReportDir, "report", "", "directory for the report and evidence (default: a new temporary directory)")
	f.BoolVar(&asJSON, "json", false, "print verdict.json on stdout (the summary goes to stderr)")
	f.BoolVar(&o.KeepLab, "keep-lab", false, "leave the lab and its servers up for inspection; prints how to remove it")
	f.BoolVar(&fault, "fault", true, "run with the scenario's fault; --fault=false is the control run")
	return cmd
}

// printVerdict copies the report's verdict.json to w.
func printVerdict(w io.Writer, dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, report.VerdictFile))
	if err != nil {
		return err
	}
	if !json.Valid(b) {
		return errors.New("verdict.json is not valid JSON")
	}
	_, err = w.Write(b)
	return err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func init() {
	scenarioCmd.AddCommand(newScenarioListCmd(), newScenarioRunCmd())
	rootCmd.AddCommand(scenarioCmd)
}
