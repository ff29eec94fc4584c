package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ztwizard/steps"
	"ztwizard/steps/monitor"
)

// statusJSON runs status --json and decodes it.
func statusJSON(t *testing.T, dir string, args ...string) (monitor.Report, result) {
	t.Helper()
	r := ztw(t, dir, append([]string{"status", "--json"}, args...)...)
	var rep monitor.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	return rep, r
}

// promFamilies parses a metrics file with Prometheus' own parser.
func promFamilies(t *testing.T, path string) map[string]float64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key := name
			for _, l := range m.Label {
				if l.GetName() == "kind" || l.GetName() == "source" {
					key += " " + l.GetValue()
				}
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

// Nothing due: exit 0, JSON and metrics agree. A CA within a year of its
// end: exit 1, in the text, the JSON and the metrics.
func TestStatusExitAndOutputs(t *testing.T) {
	dir, st := workdir(t)
	must(t, dir, "ca", "init", "--state", st)
	must(t, dir, "ca", "issue", "--name", "api", "--state", st)
	rep, r := statusJSON(t, dir, "--state", st)
	if r.code != 0 || rep.Due != 0 || len(rep.Items) != 3 {
		t.Fatalf("fresh CA: exit %d, %+v", r.code, rep)
	}
	// With the site, its own windows: a leaf is flagged a sixth of its
	// 90 days before its end, after the renewal at two thirds reached the
	// node; the CRL a day before nextUpdate.
	rep, r = statusJSON(t, dir, "--state", st, "-c", "site.yaml")
	windows := map[string]time.Duration{}
	for _, it := range rep.Items {
		windows[it.Kind] = it.NotAfter.Sub(it.WarnFrom)
	}
	if r.code != 0 || windows["x509-server"] != 15*24*time.Hour || windows["crl"] != 24*time.Hour {
		t.Fatalf("status with the site: exit %d, windows %v", r.code, windows)
	}
	prom := filepath.Join(dir, "ztwizard.prom")
	must(t, dir, "status", "--state", st, "--prometheus", prom)
	m := promFamilies(t, prom)
	if m[monitor.MetricDueTotal] != 0 || m[monitor.MetricExpiry+" ca x509-server"] == 0 || m[monitor.MetricExpiry+" ca crl"] == 0 {
		t.Fatalf("metrics: %v", m)
	}
	if r := ztw(t, dir, "status", "--state", st, "--prometheus", filepath.Join(dir, "m.txt")); r.code != 2 {
		t.Fatalf("a metrics file the collector ignores: exit %d", r.code)
	}

	// A CA that lives less than a year is due from the start.
	site, _ := os.ReadFile(filepath.Join(dir, "site.yaml"))
	short := strings.Replace(string(site), "validity: 87600h", "validity: 8000h", 1)
	if short == string(site) {
		t.Fatal("the example site has no ca.validity of 87600h to shorten")
	}
	if err := os.WriteFile(filepath.Join(dir, "short.yaml"), []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	st2 := filepath.Join(dir, "short-state")
	must(t, dir, "ca", "init", "-c", "short.yaml", "--state", st2)
	rep, r = statusJSON(t, dir, "--state", st2)
	if r.code != 1 || rep.Due != 1 {
		t.Fatalf("CA within a year of its end: exit %d, %+v", r.code, rep)
	}
	for _, it := range rep.Items {
		if (it.Kind == "x509-ca") != it.Due || it.Kind == "x509-ca" && it.State != monitor.StateDue {
			t.Fatalf("item %+v", it)
		}
	}
	if r := ztw(t, dir, "status", "--state", st2, "--prometheus", prom); r.code != 1 || !strings.Contains(r.stdout, "WARN  x509-ca") {
		t.Fatalf("text status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if m := promFamilies(t, prom); m[monitor.MetricDueTotal] != 1 || m[monitor.MetricDue+" ca x509-ca"] != 1 {
		t.Fatalf("metrics: %v", m)
	}
}

// A node reports what its applied bundle holds, in JSON and metrics.
func TestStatusOnNode(t *testing.T) {
	f := newFleet(t)
	f.request(t)
	f.bundle(t, "web", "web.ztb")
	if r := f.apply(t, "web.ztb", "--ca-fingerprint", f.fp); r.code != 0 {
		t.Fatalf("apply: %d %s%s", r.code, r.stdout, r.stderr)
	}
	rep, r := statusJSON(t, f.dir, "--state", f.nodeState)
	if r.code != 0 || rep.Node != "web" || rep.Due != 0 {
		t.Fatalf("node status: exit %d %+v", r.code, rep)
	}
	kinds := map[string]bool{}
	for _, it := range rep.Items {
		if it.Source == monitor.SourceNode {
			kinds[it.Kind] = true
		}
	}
	for _, k := range []string{"x509-ca", "x509-server", "ssh-host", "crl"} {
		if !kinds[k] {
			t.Errorf("node status lacks %s: %+v", k, rep.Items)
		}
	}
	// A CRL pulled later than the bundle counts, not the bundle's.
	bundleCRL := time.Time{}
	for _, it := range rep.Items {
		if it.Source == monitor.SourceNode && it.Kind == "crl" {
			bundleCRL = it.NotAfter
		}
	}
	time.Sleep(1100 * time.Millisecond)
	must(t, f.dir, "ca", "crl", "--state", f.ca, "--out", filepath.Join(f.root, steps.CRLPath))
	rep, _ = statusJSON(t, f.dir, "--state", f.nodeState, "--root", f.root)
	for _, it := range rep.Items {
		if it.Source == monitor.SourceNode && it.Kind == "crl" && !it.NotAfter.After(bundleCRL) {
			t.Fatalf("the installed CRL is not the one status reports: %v, bundle's %v", it.NotAfter, bundleCRL)
		}
	}
	if r := must(t, f.dir, "status", "--state", f.nodeState, "--root", f.root); !strings.Contains(r.stdout, "CRL installed (pulled)") {
		t.Fatalf("text status does not show the installed CRL:\n%s", r.stdout)
	}
	prom := filepath.Join(f.dir, "node.prom")
	must(t, f.dir, "status", "--state", f.nodeState, "--prometheus", prom)
	if m := promFamilies(t, prom); m[monitor.MetricExpiry+" node ssh-host"] == 0 || m[monitor.MetricDueTotal] != 0 {
		t.Fatalf("node metrics: %v", m)
	}
}

// A site with ca.test_timescale: validate and status warn of it, status
// judges its minutes-long validities by the site's shorter windows (with
// -c): nothing due right after issue. The same validities on a real site
// are bad input naming field and value.
func TestStatusTestTimescale(t *testing.T) {
	dir, st := workdir(t)
	site, _ := os.ReadFile(filepath.Join(dir, "site.yaml"))
	y := string(site)
	for _, r := range [][2]string{{"cert_validity: 2160h", "cert_validity: 10m"}, {"crl_validity: 168h", "crl_validity: 3m"}} {
		if !strings.Contains(y, r[0]) {
			t.Fatalf("the example site has no %q", r[0])
		}
		y = strings.Replace(y, r[0], r[1], 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "real.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	r := ztw(t, dir, "validate", "-c", "real.yaml")
	if r.code != 2 || !strings.Contains(r.stderr, `ca.crl_validity: "3m" is too short`) || !strings.Contains(r.stderr, `ca.cert_validity: "10m" is too short`) {
		t.Fatalf("a real site with minutes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	y = strings.Replace(y, "crl_validity: 3m", "crl_validity: 3m\n  test_timescale: true", 1)
	if err := os.WriteFile(filepath.Join(dir, "test.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	r = ztw(t, dir, "validate", "-c", "test.yaml")
	if r.code != 0 || !strings.Contains(r.stderr, "ca.test_timescale is set") || !strings.Contains(r.stderr, "every 15s") {
		t.Fatalf("validate of a test-timescale site: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	must(t, dir, "ca", "init", "-c", "test.yaml", "--state", st)
	must(t, dir, "ca", "issue", "-c", "test.yaml", "--name", "api", "--state", st)
	rep, r := statusJSON(t, dir, "--state", st, "-c", "test.yaml")
	if r.code != 0 || rep.Due != 0 || !strings.Contains(r.stderr, "ca.test_timescale is set") {
		t.Fatalf("status on the site's timescale: exit %d, %+v\n%s", r.code, rep, r.stderr)
	}
	for _, it := range rep.Items {
		if it.Kind == "crl" && it.NotAfter.Sub(it.WarnFrom) != 22500*time.Millisecond {
			t.Errorf("the CRL's window: %v, want 22.5s (an eighth of 3m)", it.NotAfter.Sub(it.WarnFrom))
		}
	}
	// Without the site, a real site's windows: everything is due.
	if rep, r := statusJSON(t, dir, "--state", st, "--root", dir); r.code != 1 || rep.Due == 0 {
		t.Fatalf("status on a real site's windows: exit %d, %+v", r.code, rep)
	}
}
