package monitor

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"ztwizard/steps/atomicfile"
)

// Metric names written by Prometheus, part of the README's contract.
const (
	MetricExpiry    = "ztwizard_expiry_timestamp_seconds"
	MetricDue       = "ztwizard_expiry_due"
	MetricDueTotal  = "ztwizard_status_due"
	MetricGenerated = "ztwizard_status_generated_timestamp_seconds"
	MetricProblem   = "ztwizard_status_problem_deadline_timestamp_seconds"
)

// Prometheus is the report in Prometheus' text exposition format (0.0.4):
// per item the Unix time it runs out and whether it is due, labelled by
// source, kind, name and serial; the number of items due; when it was made.
func (r *Report) Prometheus() []byte {
	var b bytes.Buffer
	family := func(name, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	labels := func(it Item) string {
		s := `source="` + escape(it.Source) + `",kind="` + escape(it.Kind) + `",name="` + escape(it.Name) + `"`
		if r.Node != "" {
			s += `,node="` + escape(r.Node) + `"`
		}
		return s + `,serial="` + escape(it.Serial) + `"`
	}
	family(MetricExpiry, "When it runs out: a certificate's notAfter, a CRL's nextUpdate (Unix time).")
	for _, it := range r.Items {
		fmt.Fprintf(&b, "%s{%s} %d\n", MetricExpiry, labels(it), it.NotAfter.Unix())
	}
	family(MetricDue, "1 when it is within its warning window or past its end.")
	for _, it := range r.Items {
		fmt.Fprintf(&b, "%s{%s} %d\n", MetricDue, labels(it), b2i(it.Due))
	}
	if len(r.Problems) > 0 {
		family(MetricProblem, "By when a condition that keeps something from being renewed must be fixed (Unix time).")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "%s{what=\"%s\"} %d\n", MetricProblem, escape(p.What), p.Deadline.Unix())
		}
	}
	family(MetricDueTotal, "How many items are due or expired, plus problems; ztwizard status exits 1 when not 0.")
	fmt.Fprintf(&b, "%s %d\n", MetricDueTotal, r.Due)
	family(MetricGenerated, "When ztwizard status wrote this file (Unix time).")
	fmt.Fprintf(&b, "%s %d\n", MetricGenerated, r.Generated.Unix())
	return b.Bytes()
}

// WritePrometheus writes the metrics to path atomically (a temporary file in
// the same folder renamed over it, as the textfile collector needs), mode
// 0644. The name must end in .prom, or the collector ignores it.
func (r *Report) WritePrometheus(path string) error {
	if filepath.Ext(path) != ".prom" {
		return fmt.Errorf("monitor: %s: node_exporter reads only files ending in .prom", path)
	}
	if err := atomicfile.WriteFile(path, r.Prometheus(), 0o644); err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	return nil
}

// escape quotes a label value: backslash, double quote and line feed.
func escape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
