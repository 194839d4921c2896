package main

import (
	"io"
	"strings"
	"testing"
)

// TestApply_TakesTheProfileAsArgumentOrFlagOnce: apply takes the profile
// as its argument or as --profile (as lab up, attach and run take it),
// never both and never none; with one, it goes on to look for the device.
func TestApply_TakesTheProfileAsArgumentOrFlagOnce(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "fbx-none", "gprs"}, `"fbx-none" is not up`},
		{[]string{"--name", "fbx-none", "--profile", "gprs"}, `"fbx-none" is not up`},
		{[]string{"--name", "fbx-none", "gprs", "--profile", "edge"}, "one profile at a time: got gprs and edge"},
		{[]string{"--name", "fbx-none", "gprs", "edge"}, "one profile at a time: got gprs and edge"},
		{[]string{"--name", "fbx-none"}, "no profile: give NAME|FILE"},
	} {
		cmd := newApplyCmd()
		cmd.SetArgs(c.args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("apply %s: %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
