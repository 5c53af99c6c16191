// Package prometheus holds the Prometheus configuration shipped with the plugin; its test runs
// promtool on the alert rules.
package prometheus

import (
	"os/exec"
	"testing"
)

// TestAlertRules runs promtool's checks and unit tests of rotation-rules.yml (installed with the
// prometheus package by scripts/install-deps.sh).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing (scripts/install-deps.sh installs Debian's prometheus package)")
	}
	for _, args := range [][]string{{"check", "rules", "rotation-rules.yml"}, {"test", "rules", "rotation-rules_test.yml"}} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
