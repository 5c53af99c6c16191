// Package bench measures the plugin as Vault runs it: a real dev Vault server with the plugin
// mounted at rotation/ and a real PostgreSQL 15, both on 127.0.0.1 (internal/testenv). Each
// benchmark starts its own stack, does a bounded amount of work once, and reports its numbers
// with b.ReportMetric (the framework's ns/op is suppressed: it would only time the setup).
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/
//
// Knobs (environment): BENCH_ROTATIONS (default 200 rotations per engine), BENCH_RSS_ROLES
// (default 10000 roles), BENCH_RSS_WORKERS (default 16 concurrent imports), BENCH_RSS_DEADLINE
// (default 5m: stop importing after this long and report what was created).
package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/xdg-go/scram"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const mount = testenv.DefaultMount

// stack is testenv's stack: a dev Vault with the plugin at rotation/ and PostgreSQL.
type stack struct{ *testenv.Stack }

func newStack(b *testing.B) *stack {
	b.Helper()
	// BENCH_PROFILE_DIR=DIR: the plugin built with -tags pprof writes CPU and heap profiles
	// there (docs/benchmarks.md "Profiling").
	opts := testenv.StackOptions{Postgres: true}
	if p := os.Getenv("BENCH_PROFILE_DIR"); p != "" {
		opts.PluginTags, opts.PluginEnv = "pprof", []string{"ROTATION_PROFILE_DIR=" + p}
	}
	return &stack{testenv.NewStack(b, opts)}
}

// writeAt writes to a path outside the plugin's mount (Vault's database engine) and fails on error.
func (s *stack) writeAt(b *testing.B, path string, data map[string]interface{}) *api.Secret {
	b.Helper()
	sec, err := s.Client().Logical().WriteWithContext(context.Background(), path, data)
	if err != nil {
		b.Fatalf("write %s: %v", path, err)
	}
	return sec
}

// databaseEngine mounts Vault's database engine at database/ with connection pg: this
// PostgreSQL through its own CREATEROLE login db_admin (password db-admin-pw, created by the
// caller), so that the two engines never change each other's credential.
func (s *stack) databaseEngine(b *testing.B) {
	b.Helper()
	if err := s.Vault.Client.Sys().MountWithContext(context.Background(), "database", &api.MountInput{Type: "database"}); err != nil {
		b.Fatalf("enable database engine: %v", err)
	}
	s.writeAt(b, "database/config/pg", map[string]interface{}{
		"plugin_name":       "postgresql-database-plugin",
		"connection_url":    fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/postgres?sslmode=disable", s.Postgres.Port),
		"username":          "db_admin",
		"password":          "db-admin-pw",
		"allowed_roles":     "*",
		"verify_connection": true,
	})
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// summary is p50/p99/mean of a set of latencies, in milliseconds.
type summary struct{ n, p50, p99, mean, min, max float64 }

func summarize(ms []float64) summary {
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	rank := func(p float64) float64 { // nearest rank
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	var sum float64
	for _, v := range s {
		sum += v
	}
	return summary{n: float64(len(s)), p50: rank(0.50), p99: rank(0.99), mean: sum / float64(len(s)), min: s[0], max: s[len(s)-1]}
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func number(v interface{}) float64 {
	switch n := v.(type) {
	case json.Number:
		f, _ := n.Float64()
		return f
	case float64:
		return n
	}
	return math.NaN()
}

// BenchmarkRotateLatency compares, on one dev Vault and one PostgreSQL, the latency of a manual
// rotation through the HTTP API: ours (rotation/rotate/app: prepare, apply through the admin
// role's cached session, verify with a fresh login, promote) against Vault's builtin database
// engine (database/rotate-role/app2: ALTER ROLE through its pooled connection). Each engine
// has its own admin login, so they never change each other's credentials. The two are measured
// in alternating blocks of 20, so that drift affects both alike.
func BenchmarkRotateLatency(b *testing.B) {
	const warmups, block = 10, 20
	rotations := envInt(b, "BENCH_ROTATIONS", 200)
	s := newStack(b)
	ctx := context.Background()
	logical := s.Vault.Client.Logical()

	s.Postgres.Exec(b, `CREATE ROLE bench_admin LOGIN CREATEROLE PASSWORD 'bench-admin-pw';
		CREATE ROLE db_admin LOGIN CREATEROLE PASSWORD 'db-admin-pw';
		CREATE ROLE app LOGIN PASSWORD 'app-initial-pw';
		CREATE ROLE app2 LOGIN PASSWORD 'app2-initial-pw'`)

	// Ours: a self-managed admin (imported) and an app role rotated through it.
	s.Write(b, "roles/pg-admin", map[string]interface{}{
		"type": "postgres", "connection_url": s.Postgres.URLTemplate(), "username": "bench_admin", "password": "bench-admin-pw",
		"rotation_period": "2160h", "allowed_usernames": "app",
	})
	s.Write(b, "roles/app", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "app", "connection_url": s.Postgres.URLTemplate(),
		"rotation_period": "2160h",
	})

	// Theirs: Vault's database engine with a static role.
	s.databaseEngine(b)
	s.writeAt(b, "database/static-roles/app2", map[string]interface{}{
		"db_name": "pg", "username": "app2", "rotation_period": "24h",
	})

	ours := func() (float64, []interface{}) {
		start := time.Now()
		sec, err := logical.WriteWithContext(ctx, mount+"/rotate/app", nil)
		ms := msSince(start)
		if err != nil {
			b.Fatalf("rotate/app: %v", err)
		}
		steps, _ := sec.Data["steps"].([]interface{})
		return ms, steps
	}
	theirs := func() float64 {
		start := time.Now()
		_, err := logical.WriteWithContext(ctx, "database/rotate-role/app2", nil)
		ms := msSince(start)
		if err != nil {
			b.Fatalf("database/rotate-role/app2: %v", err)
		}
		return ms
	}
	for i := 0; i < warmups; i++ {
		ours()
		theirs()
	}

	var oursMS, theirsMS []float64
	stepMS := map[string][]float64{}
	var stepOrder []string
	var outsideMS []float64 // request time not inside any protocol step
	runOurs := func(n int) {
		for i := 0; i < n; i++ {
			ms, steps := ours()
			oursMS = append(oursMS, ms)
			inside := 0.0
			for _, st := range steps {
				m := st.(map[string]interface{})
				name := m["name"].(string)
				d := number(m["duration_ms"])
				if _, ok := stepMS[name]; !ok {
					stepOrder = append(stepOrder, name)
				}
				stepMS[name] = append(stepMS[name], d)
				inside += d
			}
			outsideMS = append(outsideMS, ms-inside)
		}
	}
	runTheirs := func(n int) {
		for i := 0; i < n; i++ {
			theirsMS = append(theirsMS, theirs())
		}
	}
	for done, blk := 0, 0; done < rotations; blk++ {
		n := min(block, rotations-done)
		if blk%2 == 0 {
			runOurs(n)
			runTheirs(n)
		} else {
			runTheirs(n)
			runOurs(n)
		}
		done += n
	}

	// A cheap read through each engine: the fixed cost of a request routed to that backend.
	var oursRead, theirsRead []float64
	for i := 0; i < 50; i++ {
		start := time.Now()
		if _, err := logical.ReadWithContext(ctx, mount+"/creds/app"); err != nil {
			b.Fatal(err)
		}
		oursRead = append(oursRead, msSince(start))
		start = time.Now()
		if _, err := logical.ReadWithContext(ctx, "database/static-creds/app2"); err != nil {
			b.Fatal(err)
		}
		theirsRead = append(theirsRead, msSince(start))
	}

	// Both engines still hold working credentials.
	sec, err := logical.ReadWithContext(ctx, mount+"/creds/app")
	if err != nil || sec == nil {
		b.Fatalf("creds/app: %v", err)
	}
	if err := s.Postgres.CanLogin("app", sec.Data["password"].(string)); err != nil {
		b.Fatalf("app cannot log in with its current password: %v", err)
	}
	sec, err = logical.ReadWithContext(ctx, "database/static-creds/app2")
	if err != nil || sec == nil {
		b.Fatalf("static-creds/app2: %v", err)
	}
	if err := s.Postgres.CanLogin("app2", sec.Data["password"].(string)); err != nil {
		b.Fatalf("app2 cannot log in with its current password: %v", err)
	}

	o, t := summarize(oursMS), summarize(theirsMS)
	or, tr := summarize(oursRead), summarize(theirsRead)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(o.p50, "ours-p50-ms")
	b.ReportMetric(o.p99, "ours-p99-ms")
	b.ReportMetric(o.mean, "ours-mean-ms")
	b.ReportMetric(t.p50, "theirs-p50-ms")
	b.ReportMetric(t.p99, "theirs-p99-ms")
	b.ReportMetric(t.mean, "theirs-mean-ms")

	fmt.Printf("\nrotation latency over the HTTP API, %d rotations each after %d warm-ups, interleaved in blocks of %d (ms)\n", rotations, warmups, block)
	fmt.Printf("%-42s %8s %8s %8s %8s %8s\n", "", "p50", "p99", "mean", "min", "max")
	row := func(name string, s summary) {
		fmt.Printf("%-42s %8.2f %8.2f %8.2f %8.2f %8.2f\n", name, s.p50, s.p99, s.mean, s.min, s.max)
	}
	row("ours   rotation/rotate/app", o)
	row("theirs database/rotate-role/app2", t)
	fmt.Printf("ours per step (from the response's steps):\n")
	for _, name := range stepOrder {
		row("  "+name, summarize(stepMS[name]))
	}
	row("  outside the steps (request, loads, history)", summarize(outsideMS))
	if k := 20; len(outsideMS) >= 2*k {
		// The role's history is read and rewritten by every rotation and grows to
		// history_limit (100) entries: the first rotations carry a short one.
		row(fmt.Sprintf("    first %d (history %d-%d entries)", k, warmups+2, warmups+1+k), summarize(outsideMS[:k]))
		row(fmt.Sprintf("    last %d (history full: 100 entries)", k), summarize(outsideMS[len(outsideMS)-k:]))
	}
	fmt.Printf("a cheap read through each engine (50 each):\n")
	row("ours   read rotation/creds/app", or)
	row("theirs read database/static-creds/app2", tr)
	fmt.Printf("ours/theirs p50 = %.2fx (%+.2f ms)\n\n", o.p50/t.p50, o.p50-t.p50)
}

// BenchmarkPluginRSS10kRoles creates 10,000 postgres roles in the dev Vault (each import
// verifies its login at PostgreSQL, 16 at a time) and reports the plugin process's resident
// memory before and after, and the time the imports took.
func BenchmarkPluginRSS10kRoles(b *testing.B) {
	n := envInt(b, "BENCH_RSS_ROLES", 10000)
	workers := envInt(b, "BENCH_RSS_WORKERS", 16)
	deadline := 5 * time.Minute
	if v := os.Getenv("BENCH_RSS_DEADLINE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("BENCH_RSS_DEADLINE: %v", err)
		}
		deadline = d
	}
	s := newStack(b)
	ctx := context.Background()

	// One statement creates every login, all with the same password given as a precomputed
	// SCRAM verifier (so PostgreSQL does not hash it 10,000 times).
	const password = "rss-shared-password"
	verifier := scramVerifier(b, password)
	start := time.Now()
	execLong(b, s.Postgres, fmt.Sprintf(`DO $$
DECLARE stmt text;
BEGIN
  FOR stmt IN SELECT format('CREATE ROLE %%I LOGIN PASSWORD %%L', 'rss_' || i, %s) FROM generate_series(1, %d) AS i LOOP
    EXECUTE stmt;
  END LOOP;
END $$`, quoteLiteral(verifier), n))
	loginsDur := time.Since(start)

	pid := s.pluginPID(b)
	vaultPID := ppid(b, pid)
	// A first request so that the before figure is of a plugin that has served something.
	if _, err := s.Vault.Client.Logical().ListWithContext(ctx, mount+"/roles"); err != nil {
		b.Fatal(err)
	}
	before := procStatus(b, pid)
	vaultBefore := procStatus(b, vaultPID)

	var next, created, failed atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(deadline)
	url := s.Postgres.URLTemplate()
	var wg sync.WaitGroup
	start = time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) || time.Now().After(stop) || failed.Load() > 0 {
					return
				}
				_, err := s.Vault.Client.Logical().WriteWithContext(ctx, fmt.Sprintf("%s/roles/rss-%d", mount, i), map[string]interface{}{
					"type": "postgres", "connection_url": url, "username": fmt.Sprintf("rss_%d", i), "password": password,
					"rotation_period": "2160h",
				})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("roles/rss-%d: %v", i, err))
					return
				}
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	importDur := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d imports failed; first: %v", failed.Load(), firstErr.Load())
	}
	after := procStatus(b, pid)
	time.Sleep(5 * time.Second) // let the plugin's GC settle
	settled := procStatus(b, pid)
	vaultAfter := procStatus(b, vaultPID)

	list, err := s.Vault.Client.Logical().ListWithContext(ctx, mount+"/roles")
	if err != nil {
		b.Fatal(err)
	}
	listed := len(list.Data["keys"].([]interface{}))
	if int64(listed) != created.Load() {
		b.Fatalf("roles listed %d, created %d", listed, created.Load())
	}

	// Inventory at this size, through Vault: each request 20 times, p50 (docs/benchmarks.md §5).
	s.Postgres.Exec(b, `CREATE ROLE inv_admin LOGIN CREATEROLE PASSWORD 'inv-admin-pw'; CREATE ROLE inv_app LOGIN PASSWORD 'inv-app-pw'`)
	s.writeAt(b, mount+"/roles/inv-admin", map[string]interface{}{"type": "postgres", "connection_url": url, "username": "inv_admin",
		"password": "inv-admin-pw", "rotation_period": "2160h", "allowed_usernames": "inv_app"})
	s.writeAt(b, mount+"/roles/inv-app", map[string]interface{}{"type": "postgres", "admin_role": "inv-admin", "username": "inv_app",
		"password": "inv-app-pw", "rotation_period": "2160h"})
	s.writeAt(b, mount+"/rotate/rss-1", nil)
	vc := s.Vault.Client.Logical()
	inventory := []struct {
		what string
		call func(i int) error
	}{
		{"LIST rotation/roles (with key_info)", func(int) error { _, err := vc.ListWithContext(ctx, mount+"/roles"); return err }},
		{"read rotation/status", func(int) error { _, err := vc.ReadWithContext(ctx, mount+"/status"); return err }},
		{"write a dependent role (tags)", func(i int) error {
			_, err := vc.WriteWithContext(ctx, mount+"/roles/inv-app", map[string]interface{}{"tags": fmt.Sprintf("n:%d", i)})
			return err
		}},
		{"write its admin role (rotation_period)", func(i int) error {
			_, err := vc.WriteWithContext(ctx, mount+"/roles/inv-admin", map[string]interface{}{"rotation_period": fmt.Sprintf("%dh", 2000+i)})
			return err
		}},
		{"read rotation/history/rss-1", func(int) error { _, err := vc.ReadWithContext(ctx, mount+"/history/rss-1"); return err }},
	}
	fmt.Printf("\ninventory at %d roles, through Vault (ms, 20 each after one warm-up)\n", created.Load()+2)
	fmt.Printf("  %-42s %8s %8s %8s\n", "", "p50", "max", "first")
	for _, inv := range inventory {
		var ms []float64
		for i := 0; i <= 20; i++ {
			t0 := time.Now()
			if err := inv.call(i); err != nil {
				b.Fatalf("%s: %v", inv.what, err)
			}
			ms = append(ms, msSince(t0))
		}
		sum := summarize(ms[1:])
		fmt.Printf("  %-42s %8.2f %8.2f %8.2f\n", inv.what, sum.p50, sum.max, ms[0])
	}
	inventoried := procStatus(b, pid)

	c := created.Load()
	mb := func(kb float64) float64 { return kb / 1024 }
	b.ReportMetric(mb(inventoried["VmRSS"]), "plugin-rss-inventory-MB")
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(c), "roles")
	b.ReportMetric(mb(before["VmRSS"]), "plugin-rss-before-MB")
	b.ReportMetric(mb(after["VmRSS"]), "plugin-rss-after-MB")
	b.ReportMetric(mb(settled["VmRSS"]), "plugin-rss-settled-MB")
	b.ReportMetric(mb(settled["VmHWM"]), "plugin-rss-peak-MB")
	b.ReportMetric(importDur.Seconds(), "import-s")
	b.ReportMetric(float64(c)/importDur.Seconds(), "imports/s")

	fmt.Printf("\nplugin process (pid %d) with %d postgres roles (%d concurrent imports)\n", pid, c, workers)
	if c < int64(n) {
		fmt.Printf("  STOPPED AT THE DEADLINE (%s): %d of %d roles created\n", deadline, c, n)
	}
	fmt.Printf("  %d logins created in PostgreSQL in one DO block:   %.2f s\n", n, loginsDur.Seconds())
	fmt.Printf("  %d imports (each verified by a login):           %.1f s  (%.0f/s, mean %.1f ms per import per worker)\n",
		c, importDur.Seconds(), float64(c)/importDur.Seconds(), importDur.Seconds()*1000*float64(workers)/float64(c))
	fmt.Printf("  plugin VmRSS before %.1f MB, right after %.1f MB, after 5 s %.1f MB, peak (VmHWM) %.1f MB\n",
		mb(before["VmRSS"]), mb(after["VmRSS"]), mb(settled["VmRSS"]), mb(settled["VmHWM"]))
	fmt.Printf("  after the inventory requests above (index and record cache filled): VmRSS %.1f MB, peak %.1f MB\n",
		mb(inventoried["VmRSS"]), mb(inventoried["VmHWM"]))
	fmt.Printf("  growth after 5 s: %.1f MB (%.2f KB per role)\n",
		mb(settled["VmRSS"]-before["VmRSS"]), (settled["VmRSS"]-before["VmRSS"])/float64(c))
	fmt.Printf("  vault server (pid %d, in-memory storage) VmRSS %.1f MB -> %.1f MB\n\n", vaultPID, mb(vaultBefore["VmRSS"]), mb(vaultAfter["VmRSS"]))
}

// execLong is testenv's Postgres.Exec with a longer timeout: creating a role costs PostgreSQL
// ~2.5 ms here even inside one transaction, so 10,000 take longer than Exec's 30 s.
func execLong(b *testing.B, pg *testenv.Postgres, sql string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		b.Fatalf("connect as superuser: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		log := pg.Log(b)
		if len(log) > 3000 {
			log = log[len(log)-3000:]
		}
		b.Fatalf("exec: %v\n--- postgres log ---\n%s", err, log)
	}
}

// pluginPID finds the plugin process of this stack's Vault: its executable is the plugin binary
// of this test binary and its parent is the Vault server listening on this stack's port.
func (s *stack) pluginPID(b *testing.B) int {
	b.Helper()
	want := filepath.Join(s.PluginDir, testenv.PluginName)
	port := s.Vault.Addr[strings.LastIndex(s.Vault.Addr, ":")+1:]
	var found []int
	deadline := time.Now().Add(30 * time.Second)
	for len(found) == 0 {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err != nil || exe != want {
				continue
			}
			cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppidOf(pid)))
			if err == nil && strings.Contains(string(cmd), "-dev-listen-address=127.0.0.1:"+port+"\x00") {
				found = append(found, pid)
			}
		}
		if len(found) == 0 {
			if time.Now().After(deadline) {
				b.Fatalf("no process of %s under the vault on port %s", want, port)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(found) > 1 {
		b.Fatalf("several plugin processes under one vault: %v", found)
	}
	return found[0]
}

func ppidOf(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// pid (comm) state ppid ...; comm may hold spaces, so parse after the last ')'.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if len(f) < 2 {
		return -1
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

func ppid(b *testing.B, pid int) int {
	b.Helper()
	p := ppidOf(pid)
	if p <= 0 {
		b.Fatalf("no parent of pid %d", pid)
	}
	return p
}

// procStatus returns the kB fields of /proc/PID/status (VmRSS, VmHWM, ...).
func procStatus(b *testing.B, pid int) map[string]float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("read status of pid %d: %v", pid, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		if n, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 64); err == nil {
			out[k] = n
		}
	}
	if _, ok := out["VmRSS"]; !ok {
		b.Fatalf("pid %d: no VmRSS in /proc status", pid)
	}
	return out
}

// scramVerifier is the SCRAM-SHA-256 secret PostgreSQL stores for password (4096 iterations).
func scramVerifier(b *testing.B, password string) string {
	b.Helper()
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		b.Fatal(err)
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		b.Fatal(err)
	}
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: 4096})
	if err != nil {
		b.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$4096:%s$%s:%s", enc(salt), enc(creds.StoredKey), enc(creds.ServerKey))
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
