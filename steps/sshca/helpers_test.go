package sshca

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const sshKeygen = "/usr/bin/ssh-keygen"

// testNow is the fixed clock for every test.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// keygen runs ssh-keygen in dir with TZ=UTC and returns stdout, stderr and
// the exit code. A missing ssh-keygen fails the test.
func keygen(t testing.TB, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if _, err := os.Stat(sshKeygen); err != nil {
		t.Fatalf("ssh-keygen is required: %v", err)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(sshKeygen, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC")
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("ssh-keygen %q: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

// mustKeygen is keygen that fails the test on a non-zero exit.
func mustKeygen(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, errOut, code := keygen(t, dir, args...)
	if code != 0 {
		t.Fatalf("ssh-keygen %q: exit %d: %s%s", args, code, out, errOut)
	}
	return out
}

// newKey returns a fresh Ed25519 key and its SSH public key.
func newKey(t testing.TB) (ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return key, pub
}

// countingSigner is a real Ed25519 CA key that counts signatures made.
type countingSigner struct {
	ed25519.PrivateKey
	n *atomic.Int32
}

func (c countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.PrivateKey.Sign(r, digest, opts)
}
