package host

import (
	"bytes"
	"context"
	"os/exec"
)

// runner runs the programs ztwizard checks and reloads with: nginx, sshd,
// nft, systemctl.
type runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// execRunner runs programs for real.
type execRunner struct{}

// Run runs name with args and returns its combined output.
func (execRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd.CombinedOutput()
}
