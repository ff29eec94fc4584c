// Command firstframe times the wizard's first frame as a person at a
// terminal sees it: each binary is started with `wizard --example` on an
// 80x24 pseudo-terminal (TERM=xterm-256color, nothing answering its
// queries) until the Welcome page is on it, the binaries in turn (A B A B
// ...) so that a drift in the machine's speed touches them alike. It prints
// each binary's median, lower quartile, minimum and maximum, and the CPU
// time (user + system, from wait4) the process had used by then.
//
//	go run ./bench/firstframe -n 21 after=/tmp/ztw before=/tmp/ztw-old
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/creack/pty"
)

// marker is on the Welcome page's first frame.
const marker = "Next: Certificate authority"

type binary struct {
	label, path string
	wall, cpu   []time.Duration
}

func main() {
	n := flag.Int("n", 21, "runs of each binary")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: firstframe [-n N] LABEL=BINARY...")
		os.Exit(2)
	}
	var bins []*binary
	for _, a := range flag.Args() {
		label, path, ok := strings.Cut(a, "=")
		if !ok {
			label, path = filepath.Base(a), a
		}
		bins = append(bins, &binary{label: label, path: path})
	}
	dir, err := os.MkdirTemp("", "ztwizard-firstframe-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	for i := range *n {
		for _, b := range bins {
			wall, cpu, err := once(b.path, filepath.Join(dir, fmt.Sprintf("%s-%d", b.label, i)))
			if err != nil {
				fail(fmt.Errorf("%s: %w", b.label, err))
			}
			b.wall, b.cpu = append(b.wall, wall), append(b.cpu, cpu)
		}
	}
	fmt.Printf("%-10s %9s %9s %9s %9s %9s\n", "binary", "median", "p25", "min", "max", "CPU")
	for _, b := range bins {
		slices.Sort(b.wall)
		slices.Sort(b.cpu)
		fmt.Printf("%-10s %9s %9s %9s %9s %9s\n", b.label, ms(b.wall[len(b.wall)/2]), ms(b.wall[len(b.wall)/4]),
			ms(b.wall[0]), ms(b.wall[len(b.wall)-1]), ms(b.cpu[len(b.cpu)/2]))
	}
}

// once starts the wizard on a fresh pseudo-terminal and returns the time
// until its first frame and the CPU time it had used by then.
func once(path, state string) (time.Duration, time.Duration, error) {
	cmd := exec.Command(path, "wizard", "--example", "--state", state, "-c", state+".yaml")
	cmd.Env = append(os.Environ(), "TERM=xterm-256color", "ZTWIZARD_STATE=")
	start := time.Now()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var seen []byte
	buf := make([]byte, 64<<10)
	for !strings.Contains(ansi.Strip(string(seen)), marker) {
		f.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := f.Read(buf)
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return 0, 0, fmt.Errorf("no first frame: %w\n%q", err, seen)
		}
		seen = append(seen, buf[:n]...)
	}
	wall := time.Since(start)
	// Stopped, not killed, so the CPU time is what the first frame took.
	cmd.Process.Signal(syscall.SIGSTOP)
	var ru syscall.Rusage
	var ws syscall.WaitStatus
	syscall.Wait4(cmd.Process.Pid, &ws, syscall.WUNTRACED, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	cmd.Process.Kill()
	cmd.Wait()
	return wall, cpu, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "firstframe:", err)
	os.Exit(1)
}
