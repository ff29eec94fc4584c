// Command wholeproc times whole processes side by side, as an admin or a
// script feels them: each command is started from outside, start-up
// included, and the commands run in turn (A B C A B C ...) so that a drift
// in the machine's speed touches them alike. It prints, for each, the median
// wall time and the median CPU time (user + system of the process and the
// children it waited for, from wait4) with the spread, and the ratio of each
// command's median to the first one's, and the difference of the wall
// medians.
//
//	go run ./bench/wholeproc -n 20 'empty=./empty' 'help=ztwizard --help'
//
// A command is LABEL=COMMAND. COMMAND runs as words split on spaces, or
// through /bin/sh -c when it holds a shell character. -before LABEL=COMMAND
// runs COMMAND, untimed, before every run of the command LABEL (a fresh
// namespace for a first apply, say). A command that fails stops the
// benchmark with its output.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

type spec struct {
	label, cmd, before string
	wall, cpu          []time.Duration
}

type beforeFlags map[string]string

func (b beforeFlags) String() string { return "" }
func (b beforeFlags) Set(v string) error {
	label, cmd, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want LABEL=COMMAND, not %q", v)
	}
	b[label] = cmd
	return nil
}

func main() {
	n := flag.Int("n", 15, "timed runs of each command")
	warmup := flag.Int("warmup", 1, "untimed runs of each command first")
	before := beforeFlags{}
	flag.Var(before, "before", "LABEL=COMMAND run untimed before each run of LABEL (repeatable)")
	flag.Parse()
	var specs []*spec
	for _, a := range flag.Args() {
		label, cmd, ok := strings.Cut(a, "=")
		if !ok || label == "" || cmd == "" {
			fail("argument %q: want LABEL=COMMAND", a)
		}
		specs = append(specs, &spec{label: label, cmd: cmd, before: before[label]})
	}
	if len(specs) == 0 {
		fail("no command given")
	}
	for l := range before {
		if !slices.ContainsFunc(specs, func(s *spec) bool { return s.label == l }) {
			fail("-before %s: no command has that label", l)
		}
	}
	for i := 0; i < *warmup+*n; i++ {
		for _, s := range specs {
			if s.before != "" {
				if _, _, err := run(s.before); err != nil {
					fail("before %s: %v", s.label, err)
				}
			}
			wall, cpu, err := run(s.cmd)
			if err != nil {
				fail("%s: %v", s.label, err)
			}
			if i >= *warmup {
				s.wall = append(s.wall, wall)
				s.cpu = append(s.cpu, cpu)
			}
		}
	}
	fmt.Printf("%d runs each, interleaved; medians (min-max)\n", *n)
	fmt.Printf("%-14s %26s %26s %9s %9s %10s\n", "command", "wall", "cpu", "wall/1st", "cpu/1st", "wall-1st")
	base := specs[0]
	for _, s := range specs {
		fmt.Printf("%-14s %26s %26s %9s %9s %10s\n", s.label, spread(s.wall), spread(s.cpu),
			ratio(median(s.wall), median(base.wall)), ratio(median(s.cpu), median(base.cpu)),
			ms(median(s.wall)-median(base.wall)))
	}
	for _, s := range specs {
		fmt.Printf("  %s: %s\n", s.label, s.cmd)
	}
}

// run starts cmd and waits for it, returning its wall and CPU time.
func run(cmd string) (wall, cpu time.Duration, err error) {
	var c *exec.Cmd
	if strings.ContainsAny(cmd, "|&;<>()$`\\\"'*?[]#~=%{}") {
		c = exec.Command("/bin/sh", "-c", cmd)
	} else {
		f := strings.Fields(cmd)
		c = exec.Command(f[0], f[1:]...)
	}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	start := time.Now()
	err = c.Run()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%w\n%s", err, out.Bytes())
	}
	ru := c.ProcessState.SysUsage().(*syscall.Rusage)
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return wall, cpu, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(d []time.Duration) string {
	return fmt.Sprintf("%s (%s-%s)", ms(median(d)), ms(slices.Min(d)), ms(slices.Max(d)))
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "wholeproc: "+format+"\n", a...)
	os.Exit(2)
}
