package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// TestPrometheusScrapesMetrics: a real Prometheus (Debian's package) scrapes the plugin's metrics
// through Vault with a bearer token whose policy reads only rotation/metrics, and its query API
// then answers the role's current version; the shipped alert rules load.
func TestPrometheusScrapesMetrics(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is missing (scripts/install-deps.sh installs Debian's prometheus package)")
	}
	s := newDevStack(t)
	s.ImportAdmin(t, "pg-admin", "prom_admin", "prom-admin-pw")
	s.CreateLogin(t, "prom_app", "prom-app-pw", "")
	s.Write(t, "roles/app", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "prom_app", "password": "prom-app-pw", "rotation_period": "720h",
	})
	s.Write(t, "rotate/app", nil)

	if err := s.Vault.Client.Sys().PutPolicy("metrics-reader", `path "rotation/metrics" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	reader := s.PolicyClient(t, "metrics-reader")
	if _, err := reader.Logical().Read(mount + "/creds/app"); !isForbidden(err) {
		t.Fatalf("the metrics token reads creds: %v", err)
	}

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(reader.Token()), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs("../deploy/prometheus/rotation-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: vault-rotation
    metrics_path: /v1/rotation/metrics
    params: {format: [prometheus]}
    authorization: {credentials_file: %q}
    static_configs: [{targets: [%q]}]
`, rules, tokenFile, s.Vault.Addr[len("http://"):])
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("prometheus log:\n%s", b)
			}
		}
	})

	query := fmt.Sprintf(`http://127.0.0.1:%d/api/v1/query?query=vault_rotation_role_current_version%%7Brole%%3D%%22app%%22%%7D`, port)
	testenv.Eventually(t, "prometheus scraped the role's version", 90*time.Second, func() error {
		resp, err := http.Get(query)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var r struct {
			Data struct {
				Result []struct {
					Value [2]interface{} `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		if len(r.Data.Result) != 1 || r.Data.Result[0].Value[1] != "2" {
			return fmt.Errorf("query answered %s", body)
		}
		return nil
	})
	s.AssertNoSecretIn(t, "metrics", s.Read(t, "metrics").Data["text"].(string))
}
