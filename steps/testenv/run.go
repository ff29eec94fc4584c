//go:build linux

package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CmdTimeout is the time limit MustRun puts on a program, and the one to
// give RunTimeout and RunCmd when nothing calls for another.
const CmdTimeout = 60 * time.Second

// RunCmd runs cmd, which must not have been started and whose Stdout and
// Stderr must be unset, and returns its standard output and standard
// error. cmd is killed if it outlives timeout or ctx; the error then wraps
// the context's error (context.DeadlineExceeded for the timeout). A
// program that ran and failed gives an error that wraps its
// *exec.ExitError. Every error names the command and holds its output.
func RunCmd(ctx context.Context, timeout time.Duration, cmd *exec.Cmd) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cmd.WaitDelay == 0 {
		// Output a child of cmd holds open is not waited for forever.
		cmd.WaitDelay = timeout
	}
	line := strings.Join(cmd.Args, " ")
	if err := cmd.Start(); err != nil {
		return "", "", fmt.Errorf("%s: %w", line, err)
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	err = cmd.Wait()
	stop()
	stdout, stderr = out.String(), errb.String()
	if err == nil {
		return stdout, stderr, nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %s: %w (%v)", timeout, ctx.Err(), err)
	}
	err = fmt.Errorf("%s: %w", line, err)
	if output := strings.TrimSpace(stderr + stdout); output != "" {
		err = fmt.Errorf("%w\n%s", err, output)
	}
	return stdout, stderr, err
}

// RunTimeout runs name with args through RunCmd and returns its standard
// output; its standard error is only in the error.
func RunTimeout(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	stdout, _, err := RunCmd(ctx, timeout, exec.Command(name, args...))
	return stdout, err
}

// MustRun runs name with args, at most CmdTimeout, and returns its
// standard output; it fails t if the program fails. It may be called from
// a cleanup: it does not use t's context.
func MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunTimeout(context.Background(), CmdTimeout, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ExitCode tells how a program run by RunCmd ended, given RunCmd's error:
// 0 for no error, the program's exit status if it ran and exited, or err
// itself if it did not run to an exit of its own (it did not start, or a
// signal or its time limit killed it).
func ExitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok && ee.Exited() {
		return ee.ExitCode(), nil
	}
	return 0, err
}
