package monitor

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ztwizard/steps/authority"
	"ztwizard/steps/bundle"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func day(n int) time.Time { return now.Add(time.Duration(n) * 24 * time.Hour) }

func TestWindows(t *testing.T) {
	for _, tc := range []struct {
		kind     string
		notAfter time.Time
		state    string
		due      bool
	}{
		{authority.KindCA, day(366), StateOK, false},
		{authority.KindCA, day(364), StateDue, true}, // a year before the CA's end
		{authority.KindSSHHostCA, day(300), StateDue, true},
		{authority.KindServer, day(31), StateOK, false},
		{authority.KindServer, day(29), StateDue, true},
		{authority.KindServer, day(-1), StateExpired, true},
		{authority.KindSSHHost, day(20), StateDue, true},
		{authority.KindCRL, now.Add(25 * time.Hour), StateOK, false},
		{authority.KindCRL, now.Add(23 * time.Hour), StateDue, true},
		{authority.KindSSHUser, now.Add(time.Hour), StateOK, false},
		{authority.KindSSHUser, now.Add(-time.Hour), StateExpired, false},
	} {
		it := NewItem(SourceCA, tc.kind, "x", "", tc.notAfter, now)
		if it.State != tc.state || it.Due != tc.due {
			t.Errorf("%s ending %s: state %s due %v, want %s %v", tc.kind, tc.notAfter, it.State, it.Due, tc.state, tc.due)
		}
	}
}

func sample() *Report {
	ca := []authority.Expiry{
		{Kind: authority.KindCA, Name: `Root "CA" \ one`, Serial: "0a", NotAfter: day(3650)},
		{Kind: authority.KindServer, Name: "api", Serial: "1f", NotAfter: day(10)},
		{Kind: authority.KindCRL, Name: "revocation list", NotAfter: day(6)},
	}
	held := &bundle.Held{Site: "oslo", Node: "web", Expiries: []bundle.Expiry{
		{What: "CA Root", NotAfter: day(3650)}, {What: "CRL", NotAfter: now.Add(2 * time.Hour)},
		{What: "service api", NotAfter: day(80)}, {What: "SSH host certificate", NotAfter: day(80)},
	}}
	r := Build(now, ca, held)
	r.AddProblem(Problem{What: "the CA cannot sign its CRL unattended", Deadline: day(6)})
	return r
}

func TestBuild(t *testing.T) {
	r := sample()
	// api on the CA host (10 days), the node's CRL (2 hours), the problem.
	if r.Due != 3 || len(r.Items) != 7 || r.Node != "web" {
		t.Fatalf("due %d, items %d, node %q", r.Due, len(r.Items), r.Node)
	}
	if r.Items[0].Kind != authority.KindCRL || r.Items[0].Source != SourceNode {
		t.Fatalf("soonest first: %+v", r.Items[0])
	}
	if Build(now, nil, nil).Due != 0 {
		t.Fatal("an empty report is due")
	}
}

// The JSON field names are a contract: a change here is a change in the README.
func TestJSONFieldNames(t *testing.T) {
	data, err := json.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"generated", "node", "site", "due", "items", "problems"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report lacks %q: %s", k, data)
		}
	}
	item := m["items"].([]any)[0].(map[string]any)
	for _, k := range []string{"source", "kind", "name", "not_after", "warn_from", "state", "due"} {
		if _, ok := item[k]; !ok {
			t.Errorf("item lacks %q: %v", k, item)
		}
	}
	p := m["problems"].([]any)[0].(map[string]any)
	if _, ok := p["deadline"]; !ok {
		t.Errorf("problem lacks deadline: %v", p)
	}
}

// The metrics parse with Prometheus' own text parser, every sample is
// there with its labels, and values are the Unix times.
func TestPrometheusParses(t *testing.T) {
	r := sample()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.Prometheus()))
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Prometheus())
	}
	exp := fams[MetricExpiry]
	if exp == nil || exp.GetType() != dto.MetricType_GAUGE || len(exp.Metric) != len(r.Items) {
		t.Fatalf("%s: %v", MetricExpiry, exp)
	}
	found := false
	for _, m := range exp.Metric {
		l := map[string]string{}
		for _, lp := range m.Label {
			l[lp.GetName()] = lp.GetValue()
		}
		if l["node"] != "web" {
			t.Errorf("no node label: %v", l)
		}
		if l["name"] == `Root "CA" \ one` {
			found = true
			if got := int64(m.GetGauge().GetValue()); got != day(3650).Unix() || l["kind"] != authority.KindCA || l["serial"] != "0a" || l["source"] != SourceCA {
				t.Errorf("CA sample: %v %d", l, got)
			}
		}
	}
	if !found {
		t.Error("the CA's name did not survive escaping")
	}
	due := 0
	for _, m := range fams[MetricDue].GetMetric() {
		due += int(m.GetGauge().GetValue())
	}
	if due != 2 {
		t.Errorf("%d items due in the metrics, want 2", due)
	}
	if v := fams[MetricDueTotal].GetMetric()[0].GetGauge().GetValue(); v != 3 {
		t.Errorf("%s = %v, want 3", MetricDueTotal, v)
	}
	if v := fams[MetricProblem].GetMetric()[0].GetGauge().GetValue(); int64(v) != day(6).Unix() {
		t.Errorf("%s = %v", MetricProblem, v)
	}
	if v := fams[MetricGenerated].GetMetric()[0].GetGauge().GetValue(); int64(v) != now.Unix() {
		t.Errorf("%s = %v", MetricGenerated, v)
	}
}

func TestWritePrometheusAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ztwizard.prom")
	if err := sample().WritePrometheus(path); err != nil {
		t.Fatal(err)
	}
	if err := Build(now, nil, nil).WritePrometheus(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%v %v", fi, err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), MetricDueTotal+" 0\n") {
		t.Fatalf("not replaced:\n%s", data)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left beside it: %v", ents)
	}
	if err := sample().WritePrometheus(filepath.Join(dir, "metrics.txt")); err == nil {
		t.Fatal("a name the collector ignores was accepted")
	}
}
