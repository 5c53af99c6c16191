package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/failpoint"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// Vault HA on integrated storage (issue 10): one 3-node raft cluster on 127.0.0.1 for every case,
// the failpoints build of the plugin registered once per catalog name. Three names for one binary
// give three mounts with their own plugin environment: rotation/ (no failpoint), ha-kill/ (pauses
// after apply until killed) and ha-freeze/ (pauses after apply for haFreezePause, then goes on).
// The cases run in order on the one cluster, since each failover concerns every mount.

const (
	haKillMount   = "ha-kill"
	haFreezeMount = "ha-freeze"
	// haRestartMount's plugin pauses after a rotation restarted the first of its consumers.
	haRestartMount = "ha-kill-restart"
	// haFreezePause is how long the frozen leader's plugin waits after apply: long enough for the
	// new leader to be elected, resolve the record and rotate again.
	haFreezePause = 25 * time.Second
	// haFailoverBound bounds an election plus the new active node's mounts answering.
	haFailoverBound = 90 * time.Second
	// haSchedPeriod is the period of the scheduled role: due at every periodic tick (~1 min).
	haSchedPeriod = 15 * time.Second
)

// haMounts are the mounts of the cluster, each with its own admin role pg-admin.
var haMounts = []string{mount, haKillMount, haFreezeMount, haRestartMount}

type haEnv struct {
	st     *testenv.Stack // the raft stack, requests to the node active at start, at rotation/
	c      *testenv.Cluster
	pg     *testenv.Postgres
	kill   *testenv.Failpoint // ha-kill/'s
	freeze *testenv.Failpoint // ha-freeze/'s
	// restart is ha-kill-restart/'s: after the first consumer restart, until killed.
	restart *testenv.Failpoint
	seq     int
	// failovers are the times a leader was taken away (killed, frozen, stopped).
	failovers []time.Time
}

// on is a stack whose requests go to node, at mount path.
func (h *haEnv) on(node *testenv.Vault, path string) *stack {
	return &stack{h.st.On(node, path)}
}

func (h *haEnv) pw(t *testing.T) string {
	t.Helper()
	h.seq++
	return fmt.Sprintf("ha-pw-%d-%s", h.seq, randHexT(t))
}

func randHexT(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// leader returns the active node, after every mount answers on it.
func (h *haEnv) leader(t *testing.T) (*testenv.Vault, int) {
	t.Helper()
	v, i := h.c.Active(t, haFailoverBound)
	for _, m := range haMounts {
		v.WaitPlugin(t, m)
	}
	return v, i
}

// newLeader waits until a node other than old is active and its mounts answer.
func (h *haEnv) newLeader(t *testing.T, old int) (*testenv.Vault, int) {
	t.Helper()
	h.c.NewActive(t, old, haFailoverBound)
	return h.leader(t)
}

// rotateOn starts rotate/ROLE through client without retries (a retry could be a second rotation).
func rotateOn(client *api.Client, path, role string) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_, err := client.Logical().WriteWithContext(ctx, path+"/rotate/"+role, nil)
		done <- err
	}()
	return done
}

// assertCredsLogIn reads creds/ROLE at path through every running node and logs in with each
// answer; all answers are the same version, at least min.
func (h *haEnv) assertCredsLogIn(t *testing.T, path, role string, min int) int {
	t.Helper()
	return h.st.On(h.st.Vault, path).AssertCredsEverywhere(t, role, min)
}

// pgRole creates a login and a role for it under the mount's admin.
func (h *haEnv) pgRole(t *testing.T, s *stack, role, user string, extra map[string]interface{}) {
	t.Helper()
	s.CreateLogin(t, user, h.pw(t), "")
	data := map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": user,
		"connection_url": h.pg.URLTemplate(), "rotation_period": "2160h"}
	for k, v := range extra {
		data[k] = v
	}
	s.Write(t, "roles/"+role, data)
}

func TestHA(t *testing.T) {
	t.Parallel()
	start := time.Now()
	st := testenv.NewStack(t, testenv.StackOptions{Storage: testenv.StorageRaft, Postgres: true, PluginTags: "failpoints"})
	h := &haEnv{st: st, c: st.Cluster, pg: st.Postgres}
	t.Logf("raft cluster up, plugin mounted, in %s", time.Since(start).Round(time.Second))
	h.kill = testenv.NewFailpoint(t, failpoint.AfterApply, 10*time.Minute)
	h.freeze = testenv.NewFailpoint(t, failpoint.AfterApply, haFreezePause)
	h.restart = testenv.NewFailpoint(t, failpoint.AfterFirstRestart, 10*time.Minute)
	leader := st.Vault
	st.MountPlugin(t, "rotation-ha-kill", haKillMount, h.kill.Env())
	st.MountPlugin(t, "rotation-ha-freeze", haFreezeMount, h.freeze.Env())
	st.MountPlugin(t, "rotation-ha-kill-restart", haRestartMount, h.restart.Env()).
		Write(t, "config", map[string]interface{}{"docker_host": testenv.DockerHost(), "allowed_consumers": "docker:testenv-demo-*"})
	for i, m := range haMounts {
		s := h.on(leader, m)
		s.ImportAdmin(t, "pg-admin", fmt.Sprintf("ha_admin%d", i), h.pw(t))
	}
	// The scheduled role: due at every tick, through every failover below.
	h.pgRole(t, h.on(leader, mount), "sched", "ha_sched", map[string]interface{}{"rotation_period": haSchedPeriod.String()})

	t.Run("standby-requests", h.standbyRequests)
	if t.Failed() {
		return
	}
	t.Run("leader-killed-mid-rotation", h.leaderKilled)
	if t.Failed() {
		return
	}
	t.Run("leader-killed-after-first-consumer-restart", h.leaderKilledAfterRestart)
	if t.Failed() {
		return
	}
	t.Run("leader-frozen-mid-rotation", h.leaderFrozen)
	if t.Failed() {
		return
	}
	t.Run("rolling-restart", h.rollingRestart)
	t.Run("schedule-survives-failovers", h.scheduleSurvived)
	t.Logf("HA suite took %s", time.Since(start).Round(time.Second))
}

// standbyRequests (test 4): every kind of request sent to a standby answers as on the leader.
func (h *haEnv) standbyRequests(t *testing.T) {
	_, li := h.leader(t)
	sb := h.c.Standby(t, li)
	s := h.on(sb, mount)
	// roles writes
	s.ImportAdmin(t, "sb-admin", "ha_sb_admin", h.pw(t))
	s.CreateLogin(t, "ha_sb_app", h.pw(t), "")
	s.Write(t, "roles/sb-app", map[string]interface{}{"type": "postgres", "admin_role": "sb-admin", "username": "ha_sb_app",
		"connection_url": h.pg.URLTemplate(), "rotation_period": "2160h"})
	// rotate
	rot := s.Write(t, "rotate/sb-app", nil)
	if rot == nil || rot.Data["outcome"] != "success" || testenv.IntOf(t, rot.Data["version"]) != 2 {
		t.Fatalf("rotate through a standby: %s", testenv.JSONOf(t, rot))
	}
	// creds
	u, pw, v := s.Creds(t, "sb-app")
	if v != 2 {
		t.Fatalf("creds through a standby: version %d, want 2", v)
	}
	s.AssertLogin(t, u, pw, true)
	// status
	st := s.Read(t, "status")
	found := false
	for _, r := range st.Data["roles"].([]interface{}) {
		row := r.(map[string]interface{})
		if row["name"] == "sb-app" {
			found = testenv.IntOf(t, row["current_version"]) == 2 && row["last_outcome"] == "success"
		}
	}
	if !found {
		t.Fatalf("status through a standby lacks sb-app at version 2: %s", testenv.JSONOf(t, st.Data))
	}
	// jwks, unauthenticated
	s.Write(t, "roles/sb-jwt", map[string]interface{}{"type": "jwt", "algorithm": "ES256", "rotation_period": "2160h"})
	kid, _ := s.Read(t, "creds/sb-jwt").Data["kid"].(string)
	var set struct {
		Keys []map[string]interface{} `json:"keys"`
	}
	if err := json.Unmarshal(s.jwks(t, "sb-jwt"), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0]["kid"] != kid {
		t.Fatalf("jwks through a standby: %v, want the one key %s", set.Keys, kid)
	}
	if status, _, _ := s.fetchJWKS(t, "no-such-role"); status != http.StatusNotFound {
		t.Fatalf("jwks of a missing role through a standby: %d", status)
	}
}

// leaderKilled (test 1): SIGKILL the leader (server and plugin) while a rotation waits after
// apply; the new leader recovers the record, and creds through it and a standby logs in.
func (h *haEnv) leaderKilled(t *testing.T) {
	leader, li := h.leader(t)
	s := h.on(leader, haKillMount)
	h.pgRole(t, s, "app", "ha_kill_app", nil)
	before := testenv.IntOf(t, s.Read(t, "roles/app").Data["current_version"])
	h.kill.Arm(t)
	done := rotateOn(h.c.Client(t, li), haKillMount, "app")
	h.kill.Wait(t, done, crashReachBound)
	h.killInside(t, leader, done)
	nl, ni := h.newLeader(t, li)
	t.Logf("node%d killed; node%d is the new leader", li, ni)
	data := h.on(nl, haKillMount).WaitResolved(t, "app", 2*time.Minute)
	if got := testenv.IntOf(t, data["current_version"]); got != before+1 {
		t.Fatalf("current version %d after recovery, want %d (rolled forward)", got, before+1)
	}
	// The history entry is written just after the promotion that waitResolved saw.
	testenv.Eventually(t, "the recovery in the history", 15*time.Second, func() error {
		hist := h.on(nl, haKillMount).Read(t, "history/app").Data["history"].([]interface{})
		if last := hist[0].(map[string]interface{}); last["trigger"] != "recovery" || last["outcome"] != "success" {
			return fmt.Errorf("latest history entry is not the recovery: %s", testenv.JSONOf(t, last))
		}
		return nil
	})
	// Through the new leader and the standby still up, then through the killed node once back.
	h.assertCredsLogIn(t, haKillMount, "app", before+1)
	h.c.RestartNode(t, li)
	h.assertCredsLogIn(t, haKillMount, "app", before+1)
	// The next rotation works on the new leader.
	if rot := h.on(nl, haKillMount).Write(t, "rotate/app", nil); rot.Data["outcome"] != "success" {
		t.Fatalf("rotation after the failover: %s", testenv.JSONOf(t, rot))
	}
	h.assertCredsLogIn(t, haKillMount, "app", before+2)
}

// leaderKilledAfterRestart (test 1, second variant): SIGKILL the leader (server and plugin)
// while a rotation waits after restarting the first of its two Docker consumers on the new value.
// The new leader recovers the record: the new value is live at PostgreSQL and the first consumer
// runs it, so it rolls forward and deploys it; creds through the new leader and a standby logs
// in, and both consumers end healthy on the version creds hands out.
func (h *haEnv) leaderKilledAfterRestart(t *testing.T) {
	leader, li := h.leader(t)
	s := h.on(leader, haRestartMount)
	h.pgRole(t, s, "app", "ha_restart_app", nil)
	// The consumers read creds at start through a standby (which forwards to whichever node is
	// active): the leader's address dies with it.
	sb := h.on(h.c.Standby(t, li), haRestartMount)
	ctrs := []*testenv.Container{sb.RunDemo(t, "app", testenv.DemoOptions{}), sb.RunDemo(t, "app", testenv.DemoOptions{})}
	for _, c := range ctrs {
		testenv.WaitHTTPStatus(t, c.URL("/health"), http.StatusOK, 30*time.Second)
	}
	s.Write(t, "roles/app", map[string]interface{}{
		"consumers":     "docker:" + ctrs[0].Name + ",docker:" + ctrs[1].Name,
		"health_checks": ctrs[0].URL("/health") + "," + ctrs[1].URL("/health"), "health_timeout": "20s",
	})
	before := testenv.IntOf(t, s.Read(t, "roles/app").Data["current_version"])
	h.restart.Arm(t)
	done := rotateOn(h.c.Client(t, li), haRestartMount, "app")
	h.restart.Wait(t, done, crashReachBound)
	// The first consumer was restarted on the staged value, the second not yet.
	testenv.Eventually(t, "the first consumer runs the new version", 30*time.Second, func() error {
		if code, body, err := testenv.HTTPGet(ctrs[0].URL("/version")); err != nil || code != http.StatusOK {
			return fmt.Errorf("/version: %d %v", code, err)
		} else if got := demoStartedWith(t, ctrs[0]).Version; got != before+1 {
			return fmt.Errorf("runs version %d (%s)", got, body)
		}
		return nil
	})
	if got := demoStartedWith(t, ctrs[1]).Version; got != before {
		t.Fatalf("the second consumer runs version %d before the kill, want the old %d", got, before)
	}
	h.killInside(t, leader, done)
	nl, ni := h.newLeader(t, li)
	t.Logf("node%d killed after the first consumer restart; node%d is the new leader", li, ni)
	sn := h.on(nl, haRestartMount)
	data := sn.WaitResolved(t, "app", 2*time.Minute)
	if got := testenv.IntOf(t, data["current_version"]); got != before+1 {
		t.Fatalf("current version %d after recovery, want %d (rolled forward)", got, before+1)
	}
	testenv.Eventually(t, "the recovery in the history", 15*time.Second, func() error {
		hist := sn.Read(t, "history/app").Data["history"].([]interface{})
		if last := hist[0].(map[string]interface{}); last["trigger"] != "recovery" || last["outcome"] != "success" {
			return fmt.Errorf("latest history entry is not the recovery: %s", testenv.JSONOf(t, last))
		}
		return nil
	})
	// Through the new leader and the standby still up.
	h.assertCredsLogIn(t, haRestartMount, "app", before+1)
	// Both consumers run the recovered version and are healthy with it (/health logs in).
	for _, c := range ctrs {
		testenv.WaitHTTPStatus(t, c.URL("/health"), http.StatusOK, 30*time.Second)
		if got := demoStartedWith(t, c); got.Version != before+1 || got.Username != "ha_restart_app" {
			t.Fatalf("%s runs %s version %d after recovery, want version %d", c.Name, got.Username, got.Version, before+1)
		}
	}
	// The killed node comes back as a standby; the next rotation, through the new leader,
	// restarts both consumers on its value.
	h.c.RestartNode(t, li)
	h.assertCredsLogIn(t, haRestartMount, "app", before+1)
	if rot := sn.Write(t, "rotate/app", nil); rot.Data["outcome"] != "success" {
		t.Fatalf("rotation after the failover: %s", testenv.JSONOf(t, rot))
	}
	h.assertCredsLogIn(t, haRestartMount, "app", before+2)
	for _, c := range ctrs {
		testenv.WaitHTTPStatus(t, c.URL("/health"), http.StatusOK, 30*time.Second)
		if got := demoStartedWith(t, c); got.Version != before+2 {
			t.Fatalf("%s runs version %d after the next rotation, want %d", c.Name, got.Version, before+2)
		}
	}
	sn.AssertNoSecretIn(t, "the new leader's server log", nl.ServerLog(t))
}

// leaderFrozen (test 2): SIGSTOP the leader's server (its plugin keeps running) while a rotation
// waits after apply. The new leader resolves the record and rotates again; the old plugin then
// wakes up, finds its value rejected and cannot store anything: it must not put its old value
// back. After SIGCONT the old node steps down and the credential in Vault still logs in.
func (h *haEnv) leaderFrozen(t *testing.T) {
	leader, li := h.leader(t)
	s := h.on(leader, haFreezeMount)
	h.pgRole(t, s, "app", "ha_freeze_app", nil)
	before := testenv.IntOf(t, s.Read(t, "roles/app").Data["current_version"])
	h.freeze.Arm(t)
	done := rotateOn(h.c.Client(t, li), haFreezeMount, "app")
	h.freeze.Wait(t, done, crashReachBound)
	reached := time.Now()
	h.failovers = append(h.failovers, reached)
	leader.Freeze(t)
	nl, ni := h.newLeader(t, li)
	t.Logf("node%d frozen; node%d is the new leader after %s", li, ni, time.Since(reached).Round(time.Millisecond))
	sn := h.on(nl, haFreezeMount)
	data := sn.WaitResolved(t, "app", 2*time.Minute)
	if got := testenv.IntOf(t, data["current_version"]); got != before+1 {
		t.Fatalf("current version %d after recovery, want %d", got, before+1)
	}
	if rot := sn.Write(t, "rotate/app", nil); rot.Data["outcome"] != "success" || testenv.IntOf(t, rot.Data["version"]) != before+2 {
		t.Fatalf("rotation on the new leader: %s", testenv.JSONOf(t, rot))
	}
	if time.Since(reached) > haFreezePause-2*time.Second {
		t.Fatalf("the new leader took %s to resolve and rotate: the old plugin may have woken too early", time.Since(reached))
	}
	u, pw, _ := sn.Creds(t, "app")
	s.AssertLogin(t, u, pw, true)

	// The old plugin wakes at reached+pause, its verify meets the new value, and its write of the
	// restoring phase goes to a frozen server (30 s). A restore would have happened right after.
	wake := reached.Add(haFreezePause + 30*time.Second + 10*time.Second)
	time.Sleep(time.Until(wake))
	if err := h.pg.CanLogin(u, pw); err != nil {
		t.Fatalf("while the old leader was frozen, its plugin changed the password Vault holds: %v", err)
	}
	leader.Thaw(t)
	// After SIGCONT the old node's raft finds it lost the leadership and becomes a follower at
	// once, but Vault 1.21's core on it may keep calling itself active for minutes (seen: more
	// than 90 s), so its plugin goes on running periodic work and recovery from its own copy of
	// storage. Every write it tries fails ("node is not the leader"), and no change at the target
	// follows a failed write (docs/decisions.md, "Vault HA").
	select {
	case err := <-done:
		t.Logf("the frozen leader's rotate request ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Log("the frozen leader's rotate request has not ended 20 s after the thaw")
	}
	time.Sleep(10 * time.Second) // what the old plugin still sends after the thaw
	data = sn.WaitResolved(t, "app", time.Minute)
	if got := testenv.IntOf(t, data["current_version"]); got != before+2 {
		t.Fatalf("current version %d after the thaw, want %d", got, before+2)
	}
	if err := h.pg.CanLogin(u, pw); err != nil {
		t.Fatalf("after the thaw the password Vault holds no longer logs in: %v", err)
	}
	// Creds through the thawed old node, which may still call itself active with a stale copy of
	// storage: a 503 (its writes fail) or a value that logs in, never a dead one.
	old := h.on(leader, haFreezeMount)
	for range 5 {
		sec, err := old.Vault.Client.Logical().Read(haFreezeMount + "/creds/app")
		var re *api.ResponseError
		switch {
		case errors.As(err, &re) && re.StatusCode == http.StatusServiceUnavailable:
			t.Logf("creds through the thawed old node: 503 (%v)", re.Errors)
		case err != nil:
			t.Logf("creds through the thawed old node: %v", err) // forwarded, or the node is stepping down
		case sec != nil:
			ou, _ := sec.Data["username"].(string)
			opw, _ := sec.Data["password"].(string)
			if err := h.pg.CanLogin(ou, opw); err != nil {
				t.Fatalf("creds through the thawed old node handed out a dead value (version %v): %v", sec.Data["version"], err)
			}
		}
		time.Sleep(time.Second)
	}
	hist := sn.Read(t, "history/app").Data["history"].([]interface{})
	if last := hist[0].(map[string]interface{}); last["trigger"] != "manual" || testenv.IntOf(t, last["version_after"]) != before+2 {
		t.Fatalf("the latest history entry is not the new leader's rotation: %s", testenv.JSONOf(t, last))
	}
	// A restart makes the old node a plain standby again (the cases after this one need one
	// active node).
	h.c.RestartNode(t, li)
	h.assertCredsLogIn(t, haFreezeMount, "app", before+2)
}

// rollingRestart (test 5): each node in turn is stopped (SIGTERM) and started again while
// rotations stream through whichever node is up; nothing is lost.
func (h *haEnv) rollingRestart(t *testing.T) {
	leader, _ := h.leader(t)
	h.pgRole(t, h.on(leader, mount), "stream", "ha_stream", nil)
	const maxRotations = 150
	var (
		mu        sync.Mutex
		successes []int // versions answered by successful rotations, in order
		failures  int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < maxRotations; i++ {
			select {
			case <-stop:
				return
			default:
			}
			n := h.c.Nodes[i%len(h.c.Nodes)]
			if !n.Running() {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			cl, err := n.Client.Clone()
			if err != nil {
				continue
			}
			cl.SetToken(h.c.Token)
			cl.SetMaxRetries(0)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			sec, err := cl.Logical().WriteWithContext(ctx, mount+"/rotate/stream", nil)
			cancel()
			mu.Lock()
			if err == nil && sec != nil && sec.Data["outcome"] == "success" {
				successes = append(successes, jsonInt(sec.Data["version"]))
			} else {
				failures++
			}
			mu.Unlock()
			time.Sleep(300 * time.Millisecond)
		}
	}()
	for i := range h.c.Nodes {
		_, li := h.leader(t)
		if i == li {
			h.failovers = append(h.failovers, time.Now())
		}
		h.c.Nodes[i].Stop(t)
		h.c.RestartNode(t, i)
		t.Logf("node%d restarted (leader before: node%d)", i, li)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	nl, _ := h.leader(t)
	s := h.on(nl, mount)
	data := s.WaitResolved(t, "stream", 2*time.Minute)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d rotations succeeded, %d failed or were cut short by a restart", len(successes), failures)
	if len(successes) < 5 {
		t.Fatalf("only %d rotations succeeded during the rolling restart", len(successes))
	}
	for i := 1; i < len(successes); i++ {
		if successes[i] <= successes[i-1] {
			t.Fatalf("versions answered by successive rotations do not increase: %v", successes)
		}
	}
	cur := testenv.IntOf(t, data["current_version"])
	if cur < successes[len(successes)-1] {
		t.Fatalf("current version %d below the last answered %d", cur, successes[len(successes)-1])
	}
	h.assertCredsLogIn(t, mount, "stream", cur)
	// History: the successful rotations' versions strictly increase over time.
	hist := s.Read(t, "history/stream").Data["history"].([]interface{})
	last := 0
	for i := len(hist) - 1; i >= 0; i-- {
		e := hist[i].(map[string]interface{})
		if e["outcome"] != "success" {
			continue
		}
		v := testenv.IntOf(t, e["version_after"])
		if v <= last {
			t.Fatalf("history: success to version %d after one to %d: %s", v, last, testenv.JSONOf(t, hist))
		}
		last = v
	}
	// Kept versions: distinct numbers and values.
	list := s.Read(t, "versions/stream").Data["versions"].([]interface{})
	seen := map[string]int{}
	for _, e := range list {
		n := testenv.IntOf(t, e.(map[string]interface{})["version"])
		_, pw, _ := s.Creds(t, "stream", "version", fmt.Sprint(n))
		if other, dup := seen[pw]; dup {
			t.Fatalf("versions %d and %d hold the same value", other, n)
		}
		seen[pw] = n
	}
}

func jsonInt(v interface{}) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	}
	return -1
}

// scheduleSurvived (test 3): the scheduled role kept rotating through every failover above,
// once per due time: one scheduled run per version, successive runs at least a period apart,
// and a scheduled run by a new leader after the first failover.
func (h *haEnv) scheduleSurvived(t *testing.T) {
	if len(h.failovers) == 0 {
		t.Skip("no failover happened")
	}
	nl, _ := h.leader(t)
	s := h.on(nl, mount)
	first := h.failovers[0]
	var sched []map[string]interface{}
	testenv.Eventually(t, "a scheduled rotation after the first failover", 3*time.Minute, func() error {
		sched = sched[:0]
		hist := s.Read(t, "history/sched").Data["history"].([]interface{})
		after := false
		for _, e := range hist {
			m := e.(map[string]interface{})
			if m["trigger"] != "schedule" {
				continue
			}
			sched = append(sched, m)
			if ts, _ := time.Parse(time.RFC3339Nano, m["time"].(string)); ts.After(first) {
				after = true
			}
		}
		if !after {
			return fmt.Errorf("%d scheduled runs, none after %s", len(sched), first.Format(time.RFC3339))
		}
		return nil
	})
	sort.Slice(sched, func(i, j int) bool { return sched[i]["time"].(string) < sched[j]["time"].(string) })
	byBefore := map[int]bool{}
	var prev time.Time
	prevAfter := 0
	for _, m := range sched {
		vb, va := testenv.IntOf(t, m["version_before"]), testenv.IntOf(t, m["version_after"])
		ts, _ := time.Parse(time.RFC3339Nano, m["time"].(string))
		if byBefore[vb] {
			t.Fatalf("two scheduled runs from version %d (one due time rotated twice): %s", vb, testenv.JSONOf(t, sched))
		}
		byBefore[vb] = true
		if m["outcome"] == "success" && va <= prevAfter {
			t.Fatalf("scheduled versions do not increase: %s", testenv.JSONOf(t, sched))
		}
		if !prev.IsZero() && ts.Sub(prev) < haSchedPeriod-time.Second {
			t.Fatalf("two scheduled runs %s apart, less than the period %s: %s", ts.Sub(prev), haSchedPeriod, testenv.JSONOf(t, sched))
		}
		if m["outcome"] == "success" {
			prevAfter = va
		}
		prev = ts
	}
	t.Logf("%d scheduled runs over %d failovers", len(sched), len(h.failovers))
	h.assertCredsLogIn(t, mount, "sched", 2)
}

// killInside SIGKILLs the leader while the rotate request done is paused inside it, and checks
// that the request fails (it never answers success for a rotation its node did not finish).
func (h *haEnv) killInside(t *testing.T, leader *testenv.Vault, done <-chan error) {
	t.Helper()
	h.failovers = append(h.failovers, time.Now())
	leader.Kill(t)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the rotate request succeeded although its leader was killed inside it")
		}
	case <-time.After(time.Minute):
		t.Fatal("the rotate request did not end within a minute of the kill")
	}
}
