package backend

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Metrics of the mount in the Prometheus text format (README "Monitoring"): per role, what an
// alert on "no secret older than three months" needs, read from the role index; per mount, the
// rotations this node ran since it started, by kind, trigger and outcome, and how long each
// step took. No metric carries a value, and labels are role names and kinds only.

const metricsNamespace = "vault_rotation"

// mountMetrics are the counters this engine keeps as it rotates.
type mountMetrics struct {
	rotations *prometheus.CounterVec
	steps     *prometheus.HistogramVec
}

func newMountMetrics() *mountMetrics {
	return &mountMetrics{
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "rotations_total",
			Help: "Rotations this node ran since its plugin started, by kind, trigger and outcome (success, failed, unresolved).",
		}, []string{"type", "trigger", "outcome"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "step_duration_seconds",
			Help:    "How long each step of a rotation took (prepare, apply, verify, deploy, promote, ...), by kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"type", "step"}),
	}
}

// observe counts a finished run.
func (m *mountMetrics) observe(r *run) {
	typ := r.role.Type
	m.rotations.WithLabelValues(typ, string(r.out.Trigger), r.out.Result).Inc()
	for _, s := range r.out.Steps {
		m.steps.WithLabelValues(typ, s.Name).Observe(s.Duration.Seconds())
	}
}

// roleGauges is one gauge per role and fact, built from the role index at each scrape.
type roleGauges struct{ rows []StatusRow }

var roleDescs = struct {
	lastSuccess, nextDue, overdue, failures, parked, version *prometheus.Desc
}{
	lastSuccess: roleDesc("last_rotated_timestamp_seconds", "When the role's current value was rotated or imported (Unix time; 0: never)."),
	nextDue:     roleDesc("next_due_timestamp_seconds", "When the role is next due by its schedule, auto_rotate or not (Unix time; 0: no value yet)."),
	overdue:     roleDesc("overdue", "1 when the role's due time has passed."),
	failures:    roleDesc("consecutive_failures", "Rotations that failed in a row."),
	parked:      roleDesc("parked", "1 when the schedule stopped retrying the role after max_failures (failing)."),
	version:     roleDesc("current_version", "The role's current version number."),
}

func roleDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "role", name), help, []string{"role", "type"}, nil)
}

func (g roleGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{roleDescs.lastSuccess, roleDescs.nextDue, roleDescs.overdue, roleDescs.failures, roleDescs.parked, roleDescs.version} {
		ch <- d
	}
}

func (g roleGauges) Collect(ch chan<- prometheus.Metric) {
	for _, r := range g.rows {
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, r.Name, r.Type)
		}
		gauge(roleDescs.lastSuccess, timestamp(r.LastRotated))
		gauge(roleDescs.nextDue, timestamp(r.DueAt))
		gauge(roleDescs.overdue, boolValue(r.Overdue))
		gauge(roleDescs.failures, float64(r.ConsecutiveFailures))
		gauge(roleDescs.parked, boolValue(r.Failing))
		gauge(roleDescs.version, float64(r.CurrentVersion))
	}
}

// Metrics returns the mount's metrics in the Prometheus text exposition format.
func (e *Engine) Metrics(ctx context.Context) ([]byte, error) {
	rows, err := e.Status(ctx)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{e.metrics.rotations, e.metrics.steps, roleGauges{rows: rows}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// timestamp is t in Unix seconds, 0 for the zero time.
func timestamp(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
