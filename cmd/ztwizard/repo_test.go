package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ztwizard/steps/testenv"
)

// TestRepositoryTracksNoBuildOutputs checks that no compiled binary (a
// test binary, the built command) is committed, and that .gitignore keeps
// them out.
func TestRepositoryTracksNoBuildOutputs(t *testing.T) {
	testenv.Need(t, "git")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files in %s: %v", root, err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if strings.HasSuffix(name, ".test") {
			t.Errorf("%s is tracked: a test binary", name)
			continue
		}
		f, err := os.Open(filepath.Join(root, name))
		if err != nil {
			continue // removed in the working tree
		}
		head := make([]byte, 4)
		n, _ := f.Read(head)
		f.Close()
		if bytes.Equal(head[:n], []byte("\x7fELF")) {
			t.Errorf("%s is tracked: a compiled binary", name)
		}
	}
	for _, p := range []string{"steps.test", "steps/host/host.test", "ztwizard", "bin/ztwizard", ".scratch/x"} {
		if err := exec.Command("git", "-C", root, "check-ignore", "-q", "--no-index", p).Run(); err != nil {
			t.Errorf("%s is not ignored by .gitignore", p)
		}
	}
}
