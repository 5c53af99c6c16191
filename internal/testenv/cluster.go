package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Cluster is a Vault HA cluster on integrated storage (raft): N `vault server` processes on 127.0.0.1, each with its own
// API and cluster port and raft directory, joined with retry_join, initialized with one Shamir key share and unsealed.
// Every node has the same plugin directory; the plugin is registered once (the catalog is replicated).
type Cluster struct {
	Nodes     []*Vault
	Token     string
	UnsealKey string
}

// StartRaftCluster starts an n-node raft cluster (n >= 1) with plugin directory pluginDir on every node, initializes it
// through node 0, unseals every node, and waits until all n are voters and node 0 is active. Cleanup stops every node.
//
// A node whose API or cluster port was taken by another process between choosing it and binding it (other tests run
// alongside) never joins: the whole cluster is then started again on new ports, at most three times.
func StartRaftCluster(t testing.TB, n int, pluginDir string) *Cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, taken := startRaftCluster(t, n, pluginDir)
		if !taken {
			return c
		}
		for _, v := range c.Nodes {
			v.shutdown(t)
		}
		if attempt == 3 {
			t.Fatalf("testenv: raft cluster: a node's port was taken by another process three times")
		}
		t.Logf("testenv: a raft node's port was taken by another process before it bound; starting the cluster again on new ports")
	}
}

// portTaken reports whether the node's log says one of its listeners could not bind.
func (v *Vault) portTaken(t testing.TB) bool {
	return strings.Contains(v.ServerLog(t), "address already in use")
}

func startRaftCluster(t testing.TB, n int, pluginDir string) (c *Cluster, portTaken bool) {
	t.Helper()
	if pluginDir != "" {
		abs, err := filepath.Abs(pluginDir)
		if err != nil {
			t.Fatal(err)
		}
		pluginDir = abs
	}
	bin := VaultBinary(t)
	root := sharedTempDir(t, "testenv-raft-")
	c = &Cluster{}
	for i := 0; i < n; i++ {
		v := &Vault{
			PluginDir: pluginDir,
			Bin:       bin,
			Dir:       filepath.Join(root, fmt.Sprintf("node%d", i)),
			opts:      VaultOptions{PluginDir: pluginDir, LogLevel: "debug"},
			port:      freePortPair(t),
		}
		v.Addr = fmt.Sprintf("http://127.0.0.1:%d", v.port)
		v.LogPath = filepath.Join(v.Dir, "vault.log")
		v.configPath = filepath.Join(v.Dir, "vault.hcl")
		if err := os.MkdirAll(filepath.Join(v.Dir, "raft"), 0o755); err != nil {
			t.Fatal(err)
		}
		client, err := api.NewClient(&api.Config{Address: v.Addr, Timeout: 60 * time.Second, MaxRetries: 2})
		if err != nil {
			t.Fatal(err)
		}
		client.ClearNamespace()
		v.Client = client
		c.Nodes = append(c.Nodes, v)
		t.Cleanup(func() { v.shutdown(t) })
	}
	for i, v := range c.Nodes {
		if err := os.WriteFile(v.configPath, []byte(c.config(i)), 0o600); err != nil {
			t.Fatal(err)
		}
		v.startProcess(t)
	}
	first := c.Nodes[0]
	for _, v := range c.Nodes {
		if v.waitUp(t); v.portTaken(t) {
			return c, true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	init, err := first.Client.Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("testenv: vault operator init: %v\n%s", err, first.ServerLog(t))
	}
	c.Token, c.UnsealKey = init.RootToken, init.Keys[0]
	for _, v := range c.Nodes {
		v.Token, v.UnsealKey = c.Token, c.UnsealKey
		v.Client.SetToken(c.Token)
	}
	first.unseal(t)
	first.waitActive(t)
	// Promote joining nodes to voters quickly (autopilot's default stabilization time is 10 s).
	if _, err := first.Client.Logical().WriteWithContext(ctx, "sys/storage/raft/autopilot/configuration",
		map[string]interface{}{"server_stabilization_time": "1s", "cleanup_dead_servers": false}); err != nil {
		t.Fatalf("testenv: autopilot configuration: %v", err)
	}
	for _, v := range c.Nodes[1:] {
		if !v.unsealJoiningOrTaken(t) {
			return c, true
		}
	}
	c.WaitVoters(t, n, 2*time.Minute)
	return c, false
}

// waitUp waits until the node answers or has exited (a port taken); a node that neither
// answers nor exits within the bound fails the test.
func (v *Vault) waitUp(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !v.exited() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := v.Client.Sys().HealthWithContext(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: vault at %s did not answer within 60 s: %v\n--- server log ---\n%s", v.Addr, err, v.ServerLog(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unsealJoiningOrTaken is unsealJoining for a node of a cluster being started: false as soon as
// the node's log shows a port taken (it would never join).
func (v *Vault) unsealJoiningOrTaken(t testing.TB) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if v.portTaken(t) {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := v.Client.Sys().UnsealWithContext(ctx, v.UnsealKey)
		cancel()
		if err == nil && !st.Sealed {
			return true
		}
		if v.exited() || time.Now().After(deadline) {
			t.Fatalf("testenv: node at %s did not join and unseal (last error: %v, sealed %v)\n--- server log ---\n%s", v.Addr, err, st != nil && st.Sealed, v.ServerLog(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// config is node i's server configuration: raft storage in Dir/raft, retry_join to every other node.
func (c *Cluster) config(i int) string {
	v := c.Nodes[i]
	var joins strings.Builder
	for j, o := range c.Nodes {
		if j != i {
			fmt.Fprintf(&joins, "  retry_join {\n    leader_api_addr = %q\n  }\n", o.Addr)
		}
	}
	storage := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "node%d"
  performance_multiplier = 1
%s}
`, filepath.Join(v.Dir, "raft"), i, joins.String())
	return serverHCL(storage, v.port, v.PluginDir)
}

// unsealJoining supplies the key share to a node that joins (or rejoins) the cluster; retry_join may need a few tries
// before the node has joined and can use it.
func (v *Vault) unsealJoining(t testing.TB) {
	t.Helper()
	v.poll(t, "the node to join and unseal", 2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := v.Client.Sys().UnsealWithContext(ctx, v.UnsealKey)
		if err != nil {
			return err
		}
		if st.Sealed {
			return errors.New("still sealed")
		}
		return nil
	})
}

// Health reports the node's health (nil error with Standby false: the active node).
func (v *Vault) Health() (*api.HealthResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return v.Client.Sys().HealthWithContext(ctx)
}

// IsActive reports whether the node answers as the unsealed active node.
func (v *Vault) IsActive() bool {
	if v.exited() {
		return false
	}
	h, err := v.Health()
	return err == nil && h.Initialized && !h.Sealed && !h.Standby
}

// WaitVoters waits until the raft configuration (read through any running node) has n voters.
func (c *Cluster) WaitVoters(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.voters(n); last == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("testenv: raft cluster has not %d voters after %s: %v", n, timeout, last)
}

func (c *Cluster) voters(n int) error {
	a := c.activeNode()
	if a == nil {
		return errors.New("no active node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sec, err := a.Client.Logical().ReadWithContext(ctx, "sys/storage/raft/configuration")
	if err != nil {
		return err
	}
	cfg, _ := sec.Data["config"].(map[string]interface{})
	servers, _ := cfg["servers"].([]interface{})
	voters := 0
	for _, s := range servers {
		if m, _ := s.(map[string]interface{}); m["voter"] == true {
			voters++
		}
	}
	if voters != n {
		return fmt.Errorf("%d voters of %d servers", voters, len(servers))
	}
	// Autopilot must also see every node healthy, or a failover could lack a quorum.
	sec, err = a.Client.Logical().ReadWithContext(ctx, "sys/storage/raft/autopilot/state")
	if err != nil {
		return err
	}
	if sec.Data["healthy"] != true {
		return fmt.Errorf("autopilot: not healthy yet")
	}
	return nil
}

func (c *Cluster) activeNode() *Vault {
	for _, v := range c.Nodes {
		if v.IsActive() {
			return v
		}
	}
	return nil
}

// Active waits (at most timeout) for an active node and returns it, with its index.
func (c *Cluster) Active(t testing.TB, timeout time.Duration) (*Vault, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, v := range c.Nodes {
			if v.IsActive() {
				return v, i
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv: no active node after %s", timeout)
	return nil, -1
}

// Standby returns a running, unsealed standby node other than the excluded indexes.
func (c *Cluster) Standby(t testing.TB, exclude ...int) *Vault {
	t.Helper()
	for i, v := range c.Nodes {
		skip := false
		for _, x := range exclude {
			skip = skip || x == i
		}
		if skip || v.exited() {
			continue
		}
		if h, err := v.Health(); err == nil && !h.Sealed && h.Standby {
			return v
		}
	}
	t.Fatal("testenv: no standby node")
	return nil
}

// Freeze sends SIGSTOP to the node's server process only: its plugin processes keep running and find their calls to
// the server unanswered. Thaw resumes it.
func (v *Vault) Freeze(t testing.TB) {
	t.Helper()
	cmd, _ := v.current()
	if cmd == nil {
		t.Fatal("testenv: Freeze: vault is not running")
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT) }) // never leave a stopped process to cleanup
}

// Thaw sends SIGCONT to the node's server process.
func (v *Vault) Thaw(t testing.TB) {
	t.Helper()
	cmd, _ := v.current()
	if cmd == nil {
		t.Fatal("testenv: Thaw: vault is not running")
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// RestartNode starts node i again after Kill or Stop (a running node is stopped first), unseals it, and waits until it
// is unsealed and the cluster has all its voters back again.
func (c *Cluster) RestartNode(t testing.TB, i int) {
	t.Helper()
	v := c.Nodes[i]
	if !v.exited() {
		v.Stop(t)
	}
	v.startProcess(t)
	v.waitResponding(t)
	v.unsealJoining(t)
	c.WaitVoters(t, len(c.Nodes), 2*time.Minute)
}

// Client returns a root-token client on node i that does not retry (a retried write could run twice).
func (c *Cluster) Client(t testing.TB, i int) *api.Client {
	t.Helper()
	cl, err := c.Nodes[i].Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	cl.SetToken(c.Token)
	cl.SetMaxRetries(0)
	return cl
}
