package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"ztwizard/steps/testenv"
)

// Where systemd is not PID 1 (the namespace labs), the labs run the
// timers ztwizard wrote as systemd would: each timer's service on the
// timer's schedule (OnBootSec, then OnUnitActiveSec after each start, each
// delayed by up to RandomizedDelaySec), its conditions checked, its
// encrypted credentials decrypted by systemd-creds into the folder %d
// names, its ExecStartPre, ExecStart and ExecStartPost lines run verbatim
// inside the machine with systemd's default PATH. Nothing of a command line
// is rewritten: what the units say is what runs.

// unitFile is a parsed systemd unit: section -> key -> values in order.
type unitFile map[string]map[string][]string

// parseUnit reads a unit file's text. It refuses what the labs cannot run
// faithfully: line continuations and quoting.
func parseUnit(text string) (unitFile, error) {
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			return nil, fmt.Errorf("line %d: a continued line", i+1)
		}
		if line[0] == '[' && line[len(line)-1] == ']' {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: %q is not KEY=VALUE in a section", i+1, line)
		}
		u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	return u, nil
}

// get is the last value of key in section, "" when there is none.
func (u unitFile) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// spanUnits are systemd's time span units (systemd.time(7)).
var spanUnits = map[string]time.Duration{
	"us": time.Microsecond, "usec": time.Microsecond,
	"ms": time.Millisecond, "msec": time.Millisecond,
	"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
}

// parseSpan reads a systemd time span: "90", "5min", "1min 30s", "2h30m".
// A bare number is seconds.
func parseSpan(s string) (time.Duration, error) {
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, fmt.Errorf("empty time span")
	}
	var total time.Duration
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
		if i == 0 {
			return 0, fmt.Errorf("time span %q: no number before %q", s, rest)
		}
		num := rest
		if i > 0 {
			num = rest[:i]
		}
		rest = strings.TrimLeft(rest[len(num):], " ")
		j := strings.IndexFunc(rest, func(r rune) bool { return unicode.IsDigit(r) || r == ' ' })
		unit := rest
		if j >= 0 {
			unit = rest[:j]
		}
		rest = strings.TrimLeft(rest[len(unit):], " ")
		n, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("time span %q: %v", s, err)
		}
		mult := time.Second
		if unit != "" {
			var ok bool
			if mult, ok = spanUnits[unit]; !ok {
				return 0, fmt.Errorf("time span %q: unknown unit %q", s, unit)
			}
		}
		total += time.Duration(n * float64(mult))
	}
	return total, nil
}

func TestParseSpan(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90", 90 * time.Second, false},
		{"5min", 5 * time.Minute, false},
		{"6s", 6 * time.Second, false},
		{"1min 30s", 90 * time.Second, false},
		{"2h30m", 150 * time.Minute, false},
		{"1.5s", 1500 * time.Millisecond, false},
		{"", 0, true},
		{"5 fortnights", 0, true},
		{"min", 0, true},
	} {
		got, err := parseSpan(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseSpan(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestParseUnitAndCommand(t *testing.T) {
	u, err := parseUnit("# c\n[Unit]\nConditionPathExists=/a\nConditionPathExists=!/b\n[Service]\nExecStart=/x run %d/cred --n %n 100%%\nSuccessExitStatus=1\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := u["Unit"]["ConditionPathExists"]; !slices.Equal(got, []string{"/a", "!/b"}) {
		t.Errorf("conditions %q", got)
	}
	argv, err := execArgv(u.get("Service", "ExecStart"), "x.service")
	if err != nil || !slices.Equal(argv, []string{"/x", "run", "/run/credentials/x.service/cred", "--n", "x.service", "100%"}) {
		t.Errorf("argv %q %v", argv, err)
	}
	for _, bad := range []string{"/x '%d'", "/x %H", "/x \"a b\""} {
		if _, err := execArgv(bad, "x.service"); err == nil {
			t.Errorf("execArgv(%q): no error", bad)
		}
	}
	if _, err := parseUnit("[Service]\nExecStart=/x \\\n  y\n"); err == nil {
		t.Error("a continued line parsed")
	}
}

// execArgv splits an Exec line (its prefix already removed) into argv,
// expanding the specifiers the labs know: %d (the credentials folder), %n
// (the unit), %%.
func execArgv(line, unit string) ([]string, error) {
	if strings.ContainsAny(line, `"'\`) {
		return nil, fmt.Errorf("%q: quoting is not supported by the lab", line)
	}
	var argv []string
	for _, f := range strings.Fields(line) {
		var b strings.Builder
		for i := 0; i < len(f); i++ {
			if f[i] != '%' {
				b.WriteByte(f[i])
				continue
			}
			if i+1 == len(f) {
				return nil, fmt.Errorf("%q: a lone %%", line)
			}
			i++
			switch f[i] {
			case 'd':
				b.WriteString(credentialsDir(unit))
			case 'n':
				b.WriteString(unit)
			case '%':
				b.WriteByte('%')
			default:
				return nil, fmt.Errorf("%q: specifier %%%c is not supported by the lab", line, f[i])
			}
		}
		argv = append(argv, b.String())
	}
	return argv, nil
}

// credentialsDir is where systemd puts a service's credentials ($CREDENTIALS_DIRECTORY).
func credentialsDir(unit string) string { return "/run/credentials/" + unit }

// systemdPath is the PATH systemd gives services.
const systemdPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// labTimer is one timer of a machine and the service it starts.
type labTimer struct {
	m                   *testenv.Machine
	timer, service      string
	boot, every, jitter time.Duration
	svc                 unitFile
}

// unitRun is one start of a timer's service.
type unitRun struct {
	machine, unit string
	start, end    time.Time
	skipped       string // the condition that failed; the service did not run
	ok            bool
	log           string // each command, its exit and output
}

func (r unitRun) String() string {
	state := "ok"
	switch {
	case r.skipped != "":
		state = "skipped: " + r.skipped
	case !r.ok:
		state = "FAILED"
	}
	return fmt.Sprintf("%s %s %s at %s (%s):\n%s", r.machine, r.unit, state, r.start.Format("15:04:05.000"),
		r.end.Sub(r.start).Round(time.Millisecond), r.log)
}

// machineTimers reads the timers ztwizard wrote into the machine's
// /etc/systemd/system (each of them an enabled one) and their services.
func machineTimers(t *testing.T, m *testenv.Machine) []*labTimer {
	t.Helper()
	paths, err := filepath.Glob(m.Path("/etc/systemd/system/ztwizard-*.timer"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*labTimer
	for _, p := range paths {
		read := func(p string) unitFile {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			u, err := parseUnit(string(data))
			if err != nil {
				t.Fatalf("%s: %s: %v", m.Name, p, err)
			}
			return u
		}
		tu := read(p)
		lt := &labTimer{m: m, timer: filepath.Base(p)}
		lt.service = tu.get("Timer", "Unit")
		if lt.service == "" {
			lt.service = strings.TrimSuffix(lt.timer, ".timer") + ".service"
		}
		for _, s := range []struct {
			key string
			d   *time.Duration
		}{{"OnBootSec", &lt.boot}, {"OnUnitActiveSec", &lt.every}, {"RandomizedDelaySec", &lt.jitter}} {
			if v := tu.get("Timer", s.key); v != "" {
				if *s.d, err = parseSpan(v); err != nil {
					t.Fatalf("%s: %s: %s: %v", m.Name, lt.timer, s.key, err)
				}
			}
		}
		for k := range tu["Timer"] {
			// AccuracySec: the lab runs timers on time anyway.
			if !slices.Contains([]string{"OnBootSec", "OnUnitActiveSec", "RandomizedDelaySec", "AccuracySec", "Persistent", "Unit"}, k) {
				t.Fatalf("%s: %s: %s= is not run by the lab", m.Name, lt.timer, k)
			}
		}
		if lt.every <= 0 {
			t.Fatalf("%s: %s has no OnUnitActiveSec", m.Name, lt.timer)
		}
		lt.svc = read(m.Path("/etc/systemd/system/" + lt.service))
		out = append(out, lt)
	}
	return out
}

// run starts the service once, as systemd would, and says how it went.
func (lt *labTimer) run(ctx context.Context) (r unitRun) {
	r = unitRun{machine: lt.m.Name, unit: lt.service, start: time.Now()}
	defer func() { r.end = time.Now() }()
	var log strings.Builder
	defer func() { r.log = log.String() }()
	exec := func(argv ...string) (int, error) {
		env := []string{systemdPath, "TZ=UTC"}
		stdout, stderr, err := testenv.RunCmd(ctx, time.Minute, lt.m.Command(ctx, env, argv...))
		code, err := testenv.ExitCode(err)
		fmt.Fprintf(&log, "  $ %s\n  exit %d %v\n%s%s", strings.Join(argv, " "), code, err, indent(stdout), indent(stderr))
		return code, err
	}
	for _, key := range []string{"ConditionPathExists", "ConditionPathIsDirectory"} {
		for _, c := range lt.svc["Unit"][key] {
			p, negate := strings.CutPrefix(c, "!")
			fi, err := os.Stat(lt.m.Path(p))
			holds := err == nil && (key == "ConditionPathExists" || fi.IsDir())
			if holds == negate {
				r.skipped = key + "=" + c
				return r
			}
		}
	}
	for k := range lt.svc["Unit"] {
		if strings.HasPrefix(k, "Condition") && k != "ConditionPathExists" && k != "ConditionPathIsDirectory" {
			fmt.Fprintf(&log, "  %s= is not supported by the lab\n", k)
			return r
		}
	}
	success := []int{0}
	for _, v := range lt.svc["Service"]["SuccessExitStatus"] {
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				fmt.Fprintf(&log, "  SuccessExitStatus=%s is not supported by the lab\n", v)
				return r
			}
			success = append(success, n)
		}
	}
	// LoadCredentialEncrypted=: systemd decrypts each into the service's
	// credentials folder for the run and removes it afterwards.
	creds := lt.svc["Service"]["LoadCredentialEncrypted"]
	if len(creds) > 0 {
		dir := credentialsDir(lt.service)
		defer exec("rm", "-rf", dir)
		if code, err := exec("install", "-d", "-m", "0700", dir); code != 0 || err != nil {
			return r
		}
		for _, c := range creds {
			name, src, ok := strings.Cut(c, ":")
			if !ok {
				fmt.Fprintf(&log, "  LoadCredentialEncrypted=%s: want NAME:PATH\n", c)
				return r
			}
			if code, err := exec("systemd-creds", "decrypt", "--name="+name, src, dir+"/"+name); code != 0 || err != nil {
				return r
			}
			if code, err := exec("chmod", "0400", dir+"/"+name); code != 0 || err != nil {
				return r
			}
		}
	}
	for _, key := range []string{"ExecStartPre", "ExecStart", "ExecStartPost"} {
		for _, line := range lt.svc["Service"][key] {
			ignore := strings.HasPrefix(line, "-")
			argv, err := execArgv(strings.TrimPrefix(line, "-"), lt.service)
			if err != nil {
				fmt.Fprintf(&log, "  %s: %v\n", key, err)
				return r
			}
			code, err := exec(argv...)
			if err != nil || !slices.Contains(success, code) {
				if ignore {
					continue
				}
				return r
			}
		}
	}
	r.ok = true
	return r
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

// timerRuns keeps every run of every timer of a lab.
type timerRuns struct {
	mu   sync.Mutex
	runs []unitRun
	wg   sync.WaitGroup
}

// start runs lt on its schedule, counted from now (the machine's boot),
// until ctx ends.
func (tr *timerRuns) start(ctx context.Context, lt *labTimer) {
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		delay := func() time.Duration {
			if lt.jitter <= 0 {
				return 0
			}
			return mrand.N(lt.jitter)
		}
		first := lt.boot
		if first <= 0 {
			first = lt.every
		}
		next := time.Now().Add(first + delay())
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(next)):
			}
			r := lt.run(ctx)
			if ctx.Err() != nil {
				return
			}
			tr.mu.Lock()
			tr.runs = append(tr.runs, r)
			tr.mu.Unlock()
			next = r.start.Add(lt.every + delay())
		}
	}()
}

// since returns the runs that started at or after from, of machine (any
// when "") and unit (any when "").
func (tr *timerRuns) since(from time.Time, machine, unit string) []unitRun {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []unitRun
	for _, r := range tr.runs {
		if !r.start.Before(from) && (machine == "" || r.machine == machine) && (unit == "" || r.unit == unit) {
			out = append(out, r)
		}
	}
	return out
}
