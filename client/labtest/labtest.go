// Package labtest starts a faultbox lab for one Go test and removes it when
// the test ends, so that a test drives faults through its own lab:
//
//	func TestSlowServer(t *testing.T) {
//		l := labtest.Start(t, labtest.Options{Profile: "passthrough"})
//		ctx := context.Background()
//		l.AddBehavior(ctx, client.Spec{Type: "delay", Params: client.Params{"delay": "200ms"}})
//		out, err := l.Exec(ctx, "client", "curl", "-s", "http://server:8080/")
//		...
//	}
//
// A lab needs root (it creates network namespaces) and the faultbox binary:
// Options.Binary, else $FAULTBOX, else faultbox on PATH.
package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
)

// Options say what lab Start brings up; zero values take faultbox's
// defaults.
type Options struct {
	Profile string   // built-in name or profile file; default passthrough
	Hosts   []string // default client, server
	Seed    *uint64  // default the profile's, else random
	Binary  string   // the faultbox binary; default $FAULTBOX, else faultbox on PATH
	Args    []string // more `faultbox lab up` flags, e.g. --capture FILE
	// Timeout bounds lab up and lab down (default 2 min each).
	Timeout time.Duration
}

// Lab is a lab started for one test: a client of its device, its name and
// a way to run commands in its hosts.
type Lab struct {
	*client.Client
	Name    string
	bin     string
	timeout time.Duration
}

// Start brings up a lab with a name of its own and removes it in
// t.Cleanup; it fails the test if the lab does not come up.
func Start(t testing.TB, o Options) *Lab {
	t.Helper()
	if o.Binary == "" {
		o.Binary = os.Getenv("FAULTBOX")
	}
	if o.Binary == "" {
		o.Binary = "faultbox"
	}
	bin, err := exec.LookPath(o.Binary)
	if err != nil {
		t.Fatalf("labtest: the faultbox binary: %v (set Options.Binary or $FAULTBOX)", err)
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	l := &Lab{Name: name(), bin: bin, timeout: o.Timeout}
	args := []string{"lab", "up", "--name", l.Name}
	if o.Profile != "" {
		args = append(args, "--profile", o.Profile)
	}
	if len(o.Hosts) > 0 {
		args = append(args, "--hosts", strings.Join(o.Hosts, ","))
	}
	if o.Seed != nil {
		args = append(args, "--seed", strconv.FormatUint(*o.Seed, 10))
	}
	args = append(args, o.Args...)
	// Registered first: a lab up that failed half-way is removed too.
	t.Cleanup(func() {
		if out, err := l.faultbox("lab", "down", "--name", l.Name); err != nil {
			t.Errorf("labtest: lab down --name %s: %v\n%s", l.Name, err, out)
		}
	})
	if out, err := l.faultbox(args...); err != nil {
		t.Fatalf("labtest: faultbox %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if l.Client, err = client.Dial(l.Name); err != nil {
		t.Fatalf("labtest: %v", err)
	}
	t.Cleanup(l.Client.Close) // before lab down: cleanups run last first
	return l
}

// faultbox runs the binary with a deadline and returns what it printed.
func (l *Lab) faultbox(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, l.bin, args...).CombinedOutput()
	return string(out), err
}

// Command returns the command that runs argv in host (faultbox lab exec),
// for a test to start, wait for or wire up as it likes; ctx kills it.
func (l *Lab) Command(ctx context.Context, host string, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, l.bin, append([]string{"lab", "exec", "--name", l.Name, host, "--"}, argv...)...)
}

// Exec runs argv in host and returns its standard output; a command that
// fails returns its exit status and standard error in the error.
func (l *Lab) Exec(ctx context.Context, host string, argv ...string) (string, error) {
	cmd := l.Command(ctx, host, argv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %v: %s", strings.Join(argv, " "), host, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// name is a lab name of its own: lt and 8 hex digits.
func name() string {
	var b [4]byte
	rand.Read(b[:])
	return "lt" + hex.EncodeToString(b[:])
}
