package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/internal/testenv"
	"github.com/faultbox/faultbox/profiles"
)

// buildFaultbox builds the real binary, so exit codes and output are
// checked as a user's shell sees them.
func buildFaultbox(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "the go tool in PATH")
	}
	bin := filepath.Join(t.TempDir(), "faultbox")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	r := testenv.Run(30*time.Second, bin, args...)
	if r.Code < 0 {
		t.Fatalf("%v: %v", args, r.Err)
	}
	return result{stdout: r.Stdout, stderr: r.Stderr, code: r.Code}
}

func TestProfileCommands_OutputAndExitCodes(t *testing.T) {
	bin := buildFaultbox(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	badMatch := filepath.Join(dir, "bad-match.yaml")
	passwd := filepath.Join(dir, "passwd") // not a profile at all
	for name, text := range map[string]string{
		passwd:   "root:x:0:0:root:/root:/bin/bash\n" + strings.Repeat("daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n", 60),
		good:     "name: good\ndescription: drops port 81\nsources: [test]\nbehaviors:\n  - type: drop\n    match: {port: 81}\n",
		bad:      "name: bad\nbehaviors:\n  - type: drop\n    count: many\n",
		badMatch: "name: bad-match\nbehaviors:\n  - type: drop\n    match:\n      direction: sideways\n",
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("list", func(t *testing.T) {
		r := run(t, bin, "profile", "list")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		// The binary embeds whatever builtin/ holds; the list is sorted,
		// aligned, one line each, and has the fixtures other tests use.
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		var names []string
		col := -1
		for _, line := range lines {
			name, rest, ok := strings.Cut(line, " ")
			desc := strings.TrimLeft(rest, " ")
			if !ok || desc == "" || len(line) > 120 {
				t.Errorf("line %q is not NAME DESCRIPTION within 120 columns", line)
				continue
			}
			names = append(names, name)
			if c := len(line) - len(desc); col >= 0 && c != col {
				t.Errorf("line %q not aligned at column %d", line, col)
			} else {
				col = c
			}
		}
		if !slices.IsSorted(names) || !slices.Contains(names, "passthrough") || !slices.Contains(names, "block-port-81") {
			t.Errorf("names %v", names)
		}
	})

	t.Run("show built-in", func(t *testing.T) {
		r := run(t, bin, "profile", "show", "nat-idle")
		p, err := profiles.Load("nat-idle")
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 0 || !strings.HasSuffix(r.stdout, "--- builtin/nat-idle.yaml\n"+string(p.YAML)) {
			t.Errorf("exit %d, stdout:\n%s", r.code, r.stdout)
		}
		if !strings.Contains(r.stdout, "Sources      - "+p.Sources[0]) || !strings.Contains(r.stdout, "Description  A NAT gateway") {
			t.Errorf("no description or sources:\n%s", r.stdout)
		}
	})

	t.Run("show file", func(t *testing.T) {
		r := run(t, bin, "profile", "show", good)
		if r.code != 0 || !strings.Contains(r.stdout, "Behaviors    drop\n") || !strings.Contains(r.stdout, "match: {port: 81}") {
			t.Errorf("exit %d, stdout:\n%s", r.code, r.stdout)
		}
	})

	t.Run("validate", func(t *testing.T) {
		r := run(t, bin, "profile", "validate", good, "block-port-81")
		if r.code != 0 || r.stdout != good+": ok (1 behavior)\nblock-port-81: ok (1 behavior)\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	for _, tc := range []struct {
		name   string
		args   []string
		stderr string // the whole of it, or a prefix ending in "..."
	}{
		{"validate bad value", []string{"profile", "validate", bad},
			"faultbox: " + bad + `:4: behaviors[0] (drop): count: expected an integer, found "many"` + "\n"},
		{"validate bad match", []string{"profile", "validate", badMatch},
			"faultbox: " + badMatch + `:5: behaviors[0] (drop): match.direction: "sideways" is not upstream, downstream or both` + "\n"},
		{"validate several", []string{"profile", "validate", bad, good, badMatch},
			bad + `:4: behaviors[0] (drop): count: expected an integer, found "many"` + "\n" +
				badMatch + `:5: behaviors[0] (drop): match.direction: "sideways" is not upstream, downstream or both` + "\n" +
				"faultbox: 2 of 3 profiles are invalid\n"},
		{"validate missing file", []string{"profile", "validate", filepath.Join(dir, "nope.yaml")},
			"faultbox: " + filepath.Join(dir, "nope.yaml") + ": no such built-in profile or file (built-ins: ..."},
		{"validate directory", []string{"profile", "validate", dir}, "faultbox: " + dir + ": is not a regular file\n"},
		// A file that is not a profile: an excerpt of it, not all of it.
		{"validate not a profile", []string{"profile", "validate", passwd}, "faultbox: " + passwd + ":1: the top level must be a mapping " +
			`with keys name, description, sources, seed, behaviors, proxy; found "root:x:0:0:root:/root:/bin/bash daemon:x"… (2911 characters)` + "\n"},
		{"validate nothing", []string{"profile", "validate"}, "faultbox: requires at least 1 arg(s), only received 0\n"},
		{"show unknown", []string{"profile", "show", "nope"}, "faultbox: nope: no such built-in profile or file (built-ins: ..."},
		{"show two", []string{"profile", "show", "a", "b"}, "faultbox: accepts 1 arg(s), received 2\n"},
		{"mistyped subcommand", []string{"profile", "lst"}, "faultbox: unknown command \"lst\" for \"faultbox profile\"\n"},
		{"unknown behavior", []string{"behaviors", "nope"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, bin, tc.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", r.code, r.stderr)
			}
			if prefix, ok := strings.CutSuffix(tc.stderr, "..."); ok {
				if !strings.HasPrefix(r.stderr, prefix) || strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("stderr\n  %q\nwant one line starting\n  %q", r.stderr, prefix)
				}
			} else if tc.stderr != "" && r.stderr != tc.stderr {
				t.Errorf("stderr\n  %q\nwant\n  %q", r.stderr, tc.stderr)
			}
			if !strings.HasPrefix(r.stderr, "faultbox: ") && !strings.Contains(r.stderr, "\nfaultbox: ") {
				t.Errorf("stderr %q has no faultbox: line", r.stderr)
			}
		})
	}

	t.Run("behaviors", func(t *testing.T) {
		r := run(t, bin, "behaviors")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		for _, want := range []string{"drop ", "log ", "passthrough "} {
			if !strings.Contains(r.stdout, "\n"+want) && !strings.HasPrefix(r.stdout, want) {
				t.Errorf("no %q line in:\n%s", want, r.stdout)
			}
		}
		r = run(t, bin, "behaviors", "log", "passthrough")
		want := "log: record matched packets in the event log\n  every  an integer (packets); default 1\n" +
			"         record one matched packet in every N\n\n" +
			"passthrough: forward every packet unchanged\n  parameters: none (only type and match)\n"
		if r.code != 0 || r.stdout != want {
			t.Errorf("exit %d, stdout\n%s\nwant\n%s", r.code, r.stdout, want)
		}
	})
}

// TestExitCodes_FailureIsOneUsageIsTwo: an error after cobra accepted the
// command line is a failure (1) unless the command marks it as bad input;
// cobra's own flag and command errors are usage errors (2).
func TestExitCodes_FailureIsOneUsageIsTwo(t *testing.T) {
	bin := buildFaultbox(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		// A listen address no interface here has: the bind fails.
		{[]string{"serve", "--listen", "198.18.0.250:80"}, 1},
		{[]string{"serve", "--listen", "198.18.0.250:99999"}, 2},
		{[]string{"serve", "--no-such-flag"}, 2},
		{[]string{"no-such-command"}, 2},
	} {
		wantExit(t, bin, tc.args, tc.code)
	}
	// Bad input the command finds itself (a lab that is not up); lab
	// commands check for root first, and without it fail with 1.
	t.Run("lab status of a lab not up", func(t *testing.T) {
		testenv.RequireNetAdmin(t)
		wantExit(t, bin, []string{"lab", "status", "--name", "fbxnotup"}, 2)
	})
}

// wantExit runs faultbox args and checks its exit status and that it said
// why on stderr.
func wantExit(t *testing.T, bin string, args []string, code int) {
	t.Helper()
	r := run(t, bin, args...)
	if r.code != code || !strings.HasPrefix(r.stderr, "faultbox: ") {
		t.Errorf("faultbox %s: exit %d (stderr %q), want %d", strings.Join(args, " "), r.code, r.stderr, code)
	}
}
