package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time by `make build` and `make image`
// (-ldflags "-X main.version=..."), from `git describe`. A plain `go
// build` leaves it empty and the version comes from the build's VCS
// stamp instead.
var version string

// Version is this binary's version: the linked one, else "devel" with the
// commit Go stamped into the build, else "devel".
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev + dirty
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print faultbox's version",
		Long:    "Print faultbox's version (the one a container image is tagged with), the Go version and the platform it was built for.",
		Example: "  faultbox version\n  faultbox --version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "faultbox %s (%s, %s/%s)\n", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func init() {
	rootCmd.Version = Version()
	rootCmd.SetVersionTemplate("faultbox {{.Version}}\n")
	rootCmd.AddCommand(newVersionCmd())
}
