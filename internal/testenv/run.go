package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Result is how a command run by Run ended and what it printed.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status; -1 if it did not run or was killed
	Err            error
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d (%v)\nstdout: %s\nstderr: %s", r.Code, r.Err,
		strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr))
}

// Run runs name with args, killed after timeout, and returns its result.
func Run(timeout time.Duration, name string, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// A child that outlives the command and holds its pipes must not hang us.
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Code: -1, Err: err}
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return r
}
