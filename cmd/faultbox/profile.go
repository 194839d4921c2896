package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/faultbox/faultbox/behaviors"
	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/profiles"
	"github.com/spf13/cobra"
)

var profileCmd = &cobra.Command{
	Use:   "profile",
	Short: "List, show and validate profiles",
	Long: `A profile is a YAML document naming the behaviors a run applies, in the
order packets meet them, with their matches and parameters. Built-in profiles
are embedded in faultbox; anywhere a profile is taken, a file path works too.`,
	Example: `  faultbox profile list
  faultbox profile show gprs
  faultbox profile validate ./my-profile.yaml`,
	// NoArgs makes a mistyped subcommand an error (exit 2), not help.
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
}

var profileListCmd = &cobra.Command{
	Use:   "list",
	Short: "List the built-in profiles",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		tw := newTable(cmd.OutOrStdout())
		for _, name := range profiles.Builtin() {
			p, err := profiles.Load(name)
			if err != nil {
				return err // a broken built-in is a bug, not bad input
			}
			fmt.Fprintf(tw, "%s\t%s\n", name, firstSentence(p.Description))
		}
		return tw.Flush()
	},
}

var profileShowCmd = &cobra.Command{
	Use:   "show NAME|FILE",
	Short: "Show a profile: what it emulates, its sources and its YAML",
	Example: `  faultbox profile show passthrough
  faultbox profile show ./lossy-wifi.yaml`,
	Args:              cobra.ExactArgs(1),
	ValidArgsFunction: completeProfiles,
	RunE: func(cmd *cobra.Command, args []string) error {
		p, err := profiles.Load(args[0])
		if err != nil {
			return usageError(err)
		}
		showProfile(cmd.OutOrStdout(), p)
		return nil
	},
}

var profileValidateCmd = &cobra.Command{
	Use:   "validate FILE...",
	Short: "Check profiles for unknown keys, bad units and out-of-range values",
	Long: `validate parses each profile and builds its chain as a run would, and prints
"FILE: ok (N behaviors)". The first error in a file is printed as
FILE:LINE: FIELD: what is wrong, and the exit status is 2.`,
	Example: `  faultbox profile validate ./my-profile.yaml
  faultbox profile validate profiles/*.yaml`,
	Args:              cobra.MinimumNArgs(1),
	ValidArgsFunction: completeProfiles,
	RunE: func(cmd *cobra.Command, args []string) error {
		var failed []error
		for _, arg := range args {
			p, err := profiles.Load(arg)
			if err == nil {
				_, err = p.Chain(0, nil)
			}
			if err == nil && p.Proxy != nil {
				_, err = proxy.FromProfile(p)
			}
			if err != nil {
				failed = append(failed, err)
				continue
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s)\n", arg, plural(len(p.Behaviors), "behavior"))
		}
		switch len(failed) {
		case 0:
			return nil
		case 1:
			return usageError(failed[0])
		}
		for _, err := range failed {
			fmt.Fprintln(cmd.ErrOrStderr(), err)
		}
		return usageError(fmt.Errorf("%d of %d profiles are invalid", len(failed), len(args)))
	},
}

var behaviorsCmd = &cobra.Command{
	Use:   "behaviors [NAME...]",
	Short: "List the behaviors profiles can use, or one behavior's parameters",
	Long: `Without a name, list every behavior a profile can use. With names, print
what each behavior does and each of its parameters: what it takes (values,
unit), its default and what it means. "match" describes the match every
behavior takes. docs/behaviors.md has the same for all of them.`,
	Example: `  faultbox behaviors
  faultbox behaviors asa-teardown
  faultbox behaviors drop delay match`,
	ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return append(behaviors.Names(), profiles.MatchName), cobra.ShellCompDirectiveNoFileComp
	},
	RunE: func(cmd *cobra.Command, args []string) error {
		out := cmd.OutOrStdout()
		if len(args) == 0 {
			tw := newTable(out)
			for _, name := range behaviors.Names() {
				fmt.Fprintf(tw, "%s\t%s\n", name, behaviors.Summary(name))
			}
			return tw.Flush()
		}
		for i, name := range args {
			if i > 0 {
				fmt.Fprintln(out)
			}
			if err := profiles.Describe(out, name); err != nil {
				return usageError(err)
			}
		}
		return nil
	},
}

func init() {
	profileCmd.AddCommand(profileListCmd, profileShowCmd, profileValidateCmd)
	rootCmd.AddCommand(profileCmd, behaviorsCmd)
}

// completeProfiles offers the built-in names, and files as well.
func completeProfiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return profiles.Builtin(), cobra.ShellCompDirectiveDefault
}

func showProfile(w io.Writer, p *profiles.Profile) {
	tw := newTable(w)
	fmt.Fprintf(tw, "Profile\t%s\n", p.Name)
	fmt.Fprintf(tw, "File\t%s\n", p.File)
	if p.Description != "" {
		for i, line := range profiles.Wrap(p.Description, 66) {
			label := ""
			if i == 0 {
				label = "Description"
			}
			fmt.Fprintf(tw, "%s\t%s\n", label, line)
		}
	}
	for i, s := range p.Sources {
		label := ""
		if i == 0 {
			label = "Sources"
		}
		fmt.Fprintf(tw, "%s\t- %s\n", label, s)
	}
	if p.Seed != nil {
		fmt.Fprintf(tw, "Seed\t%d\n", *p.Seed)
	}
	types := make([]string, len(p.Behaviors))
	for i, s := range p.Behaviors {
		types[i] = s.Type
	}
	fmt.Fprintf(tw, "Behaviors\t%s\n", strings.Join(types, ", "))
	tw.Flush()
	fmt.Fprintf(w, "\n--- %s\n", p.File)
	w.Write(p.YAML)
	if len(p.YAML) > 0 && p.YAML[len(p.YAML)-1] != '\n' {
		fmt.Fprintln(w)
	}
}

// firstSentence shortens a description for a one-line listing: its first
// sentence, cut at a word near 90 columns.
func firstSentence(s string) string {
	const max = 90
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i+1]
	}
	if len(s) <= max {
		return s
	}
	cut := strings.LastIndexByte(s[:max], ' ')
	if cut <= 0 {
		cut = max
	}
	return strings.TrimRight(s[:cut], ",;:") + " ..."
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
