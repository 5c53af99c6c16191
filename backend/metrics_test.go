package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
)

// TestMetrics: the text parses as Prometheus exposition, holds each role's gauges and the
// node's counters, and never a value.
func TestMetrics(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "app", "pw-metrics-1")
	te.importRole(t, "other", "pw-metrics-other")
	if _, err := te.e.Rotate(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	ft.ScriptApply(applyFailBefore)
	_, _ = te.e.Rotate(ctx, "app")
	te.clock.Advance(2 * time.Hour) // both due after an hour: overdue now

	text, err := te.e.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"pw-metrics-1", "pw-metrics-other"} {
		if strings.Contains(string(text), secret) {
			t.Fatal("the metrics hold a value")
		}
	}
	var parser expfmt.TextParser
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(text)))
	if err != nil {
		t.Fatalf("not the Prometheus text format: %v\n%s", err, text)
	}
	value := func(family string, labels map[string]string) float64 {
		t.Helper()
		f, ok := families[family]
		if !ok {
			t.Fatalf("no %s in\n%s", family, text)
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		t.Fatalf("no %s%v", family, labels)
		return 0
	}
	app := map[string]string{"role": "app", "type": faultType}
	if v := value("vault_rotation_role_current_version", app); v != 2 {
		t.Fatalf("current_version %v", v)
	}
	if v := value("vault_rotation_role_consecutive_failures", app); v != 1 {
		t.Fatalf("consecutive_failures %v", v)
	}
	if v := value("vault_rotation_role_overdue", app); v != 1 {
		t.Fatalf("overdue %v", v)
	}
	if v := value("vault_rotation_role_last_rotated_timestamp_seconds", app); v != float64(t0.Unix()) {
		t.Fatalf("last rotated %v, want %d", v, t0.Unix())
	}
	if v := value("vault_rotation_rotations_total", map[string]string{"type": faultType, "outcome": OutcomeSuccess}); v != 1 {
		t.Fatalf("successful rotations %v", v)
	}
	if v := value("vault_rotation_rotations_total", map[string]string{"type": faultType, "outcome": OutcomeFailed}); v != 1 {
		t.Fatalf("failed rotations %v", v)
	}
	if v := value("vault_rotation_step_duration_seconds", map[string]string{"step": "apply"}); v != 2 {
		t.Fatalf("apply steps observed %v", v)
	}
}
