package backend

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testkit"
)

// Scheduler benchmarks over in-memory storage and the fault-test kind (internal/testkit), so
// that they measure the engine alone: no Vault RPCs, no target latency. Roles are created through
// the engine API (WriteRole importing a value, which verifies it at the fake target), exactly as
// a role write through the mount does. Run with:
//
//	go test -run '^$' -bench . ./backend/

// benchEngine is an engine over st with a null logger and a settable clock, initialized.
func benchEngine(b *testing.B, st logical.Storage, clock *fakeClock) *Engine {
	b.Helper()
	e := New(&logical.BackendConfig{StorageView: st, System: &logical.StaticSystemView{}})
	e.SetClock(clock)
	if err := e.Initialize(context.Background()); err != nil {
		b.Fatalf("Initialize: %v", err)
	}
	b.Cleanup(e.Close)
	return e
}

// benchTarget registers a fake target holding value; it is removed at cleanup.
func benchTarget(b *testing.B, name, value string) {
	b.Helper()
	testkit.AddFaultTarget(b, name, secretOf(value))
}

// benchImport creates role name on target by importing value through WriteRole.
func benchImport(b *testing.B, e *Engine, name, target, value string, period time.Duration) {
	b.Helper()
	in := faultRole(target)
	in.RotationPeriod = ptr(period)
	in.Secrets[fFaultValue] = value
	res, err := e.WriteRole(context.Background(), name, in)
	if err != nil {
		b.Fatalf("WriteRole(%s): %v", name, err)
	}
	if !res.Created || !res.Imported {
		b.Fatalf("WriteRole(%s) = %+v, want created+imported", name, res)
	}
}

// BenchmarkTickNoneDue is the cost of one periodic tick with 10,000 roles of which none is due
// (README "How a rotation runs": a tick costs O(due roles), not O(all roles); the target is < 1 ms). It also
// reports how long creating the roles through WriteRole and rebuilding the schedule from
// storage (Initialize, i.e. a plugin start) took.
func BenchmarkTickNoneDue(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	st := &logical.InmemStorage{}
	clock := newClock(t0)
	e := benchEngine(b, st, clock)
	const target = "bench-tick"
	benchTarget(b, target, "tick-pw")

	start := time.Now()
	for i := 0; i < n; i++ {
		// Periods from 1h to ~28h, so the heap holds distinct due times.
		benchImport(b, e, fmt.Sprintf("role-%05d", i), target, "tick-pw", time.Hour+time.Duration(i)*10*time.Second)
	}
	createDur := time.Since(start)

	// A plugin restart: a second engine rebuilds the schedule from the same storage.
	start = time.Now()
	e2 := benchEngine(b, st, clock)
	initDur := time.Since(start)
	if got := e2.Stats().Scheduled; got != n {
		b.Fatalf("scheduled after Initialize = %d, want %d", got, n)
	}
	e2.Close()

	if err := e.Tick(ctx); err != nil { // nothing due at t0
		b.Fatal(err)
	}
	for b.Loop() {
		_ = e.Tick(ctx)
	}
	b.StopTimer()
	if s := e.Stats(); s.Scheduled != n || s.Waiting != 0 {
		b.Fatalf("after ticks: %+v, want %d scheduled and nothing handed out", s, n)
	}
	b.ReportMetric(float64(n), "roles")
	b.ReportMetric(float64(createDur.Milliseconds()), "create-10k-ms")
	b.ReportMetric(float64(initDur.Microseconds())/1000, "initialize-10k-ms")
}

// countingStorage counts history writes: the last storage write of every rotation (record),
// made while the role's lock is still held.
type countingStorage struct {
	*logical.InmemStorage
	history atomic.Int64
	want    atomic.Int64
	done    chan struct{}
}

func (s *countingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	err := s.InmemStorage.Put(ctx, e)
	if strings.HasPrefix(e.Key, historyPrefix) {
		if s.history.Add(1) == s.want.Load() {
			s.done <- struct{}{}
		}
	}
	return err
}

// BenchmarkDrainDue is the throughput of the worker pool: 1,000 roles become due at once, one
// tick hands them out, and the pool rotates them all (prepare, apply, verify, promote, history,
// each against its own in-memory fake target). Reported as roles/s for max_parallel 4 (the
// default) and 16. Each iteration advances the clock by 2h so all 1,000 are due again. Every
// role's history starts full (history_limit=100 entries, the default), so each iteration costs
// the same: the steady state of a mount that has been rotating for a while.
func BenchmarkDrainDue(b *testing.B) {
	for _, par := range []int{4, 16} {
		b.Run(fmt.Sprintf("max_parallel=%d", par), func(b *testing.B) {
			const n = 1000
			ctx := context.Background()
			st := &countingStorage{InmemStorage: &logical.InmemStorage{}, done: make(chan struct{}, 1)}
			clock := newClock(t0)
			e := benchEngine(b, st, clock)
			cfg := e.Config()
			cfg.MaxParallel = par
			if err := e.SetConfig(ctx, cfg); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("drain-%s-%04d", strings.ReplaceAll(b.Name(), "/", "_"), i)
				benchTarget(b, name, "drain-pw")
				benchImport(b, e, fmt.Sprintf("role-%04d", i), name, "drain-pw", time.Hour)
			}
			// Steady state: every role's history is already full (history_limit entries, as
			// the engine writes them: one key each), so each rotation also trims the oldest
			// entry, whatever the number of rounds.
			entry := HistoryEntry{Time: t0, Trigger: TriggerSchedule, Outcome: OutcomeSuccess, VersionBefore: 1, VersionAfter: 1,
				Steps: []StepResult{{Name: StepPrepare, Duration: time.Millisecond}, {Name: StepApply, Duration: time.Millisecond},
					{Name: StepVerify, Duration: time.Millisecond}, {Name: StepPromote, Duration: time.Millisecond}}}
			for i := 0; i < n; i++ {
				for seq := 1; seq <= e.Config().HistoryLimit; seq++ {
					if err := putJSON(ctx, st.InmemStorage, historyKey(fmt.Sprintf("role-%04d", i), uint64(seq)), entry); err != nil {
						b.Fatal(err)
					}
				}
			}
			rounds := 0
			for b.Loop() {
				rounds++
				clock.Advance(2 * time.Hour)
				st.want.Store(int64(rounds * n))
				if err := e.Tick(ctx); err != nil {
					b.Fatal(err)
				}
				select {
				case <-st.done:
				case <-time.After(time.Minute):
					b.Fatalf("round %d: %d of %d rotations recorded after 1 minute", rounds, st.history.Load()-int64((rounds-1)*n), n)
				}
			}
			b.StopTimer()
			if s := e.Stats(); s.Scheduled != n || s.Pending != 0 {
				b.Fatalf("after draining: %+v", s)
			}
			// Every role rotated once per round.
			for i := 0; i < n; i++ {
				stt, err := e.loadState(ctx, fmt.Sprintf("role-%04d", i))
				if err != nil {
					b.Fatal(err)
				}
				if cur := stt.Current(); cur == nil || cur.Number != rounds+1 || cur.Trigger != TriggerSchedule {
					b.Fatalf("role-%04d: current %+v after %d rounds", i, cur, rounds)
				}
			}
			b.ReportMetric(float64(n*rounds)/b.Elapsed().Seconds(), "roles/s")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(rounds), "ms/drain-1000")
		})
	}
}

// BenchmarkKeySet is one jwks/NAME read of a jwt role publishing 20 ES256 keys (all inside
// verification_ttl): "cached" is the steady state, "uncached" drops the document before every
// read, as every read did before the cache (read the role and state, decode every private key).
func BenchmarkKeySet(b *testing.B) {
	ctx := context.Background()
	clock := newClock(t0)
	e := benchEngine(b, &logical.InmemStorage{}, clock)
	res, err := e.WriteRole(ctx, "sign", RoleInput{
		Type: "jwt", RotationPeriod: ptr(24 * time.Hour), VersionsKept: ptr(20),
		Settings: map[string]interface{}{"algorithm": "ES256", "verification_ttl": int((24 * time.Hour) / time.Second)},
	})
	if err != nil || res.Rotation == nil || !res.Rotation.Success {
		b.Fatalf("create jwt role: %+v %v", res, err)
	}
	for i := 1; i < 20; i++ {
		clock.Advance(time.Second)
		if out, err := e.Rotate(ctx, "sign"); err != nil || !out.Success {
			b.Fatalf("rotate: %+v %v", out, err)
		}
	}
	for _, mode := range []string{"cached", "uncached"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if mode == "uncached" {
					e.keySets.drop("sign")
				}
				if _, err := e.KeySet(ctx, "sign"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInventory10k measures, at 10,000 roles each claiming an account, 9,000 of them
// linked to one of 1,000 admins (so that one-login-one-role and the dependents lookup have work),
// what issue 11 asks of inventory: status (what LIST -detailed also answers from), a LIST's
// names, and one role write that re-checks the claims and the dependents. Storage is in memory,
// so these are the engine's own costs; a real Vault adds one RPC per storage call.
func BenchmarkInventory10k(b *testing.B) {
	const roles, admins = 10000, 1000
	e := benchEngine(b, &logical.InmemStorage{}, newClock(t0))
	ctx := context.Background()
	benchTarget(b, "inv", "pw-inv")
	start := time.Now()
	for i := 0; i < roles; i++ {
		in := faultRole("inv")
		in.Secrets[fFaultValue] = "pw-inv"
		in.Settings[fFaultAccount] = fmt.Sprintf("acct-%d", i)
		if i >= admins {
			in.Settings[fFaultAdmin] = fmt.Sprintf("r%05d", i%admins)
		} else {
			grants := make([]string, 0, roles/admins)
			for j := i; j < roles; j += admins {
				grants = append(grants, fmt.Sprintf("acct-%d", j))
			}
			in.Settings[fFaultGrants] = grants
		}
		if _, err := e.WriteRole(ctx, fmt.Sprintf("r%05d", i), in); err != nil {
			b.Fatalf("WriteRole %d: %v", i, err)
		}
	}
	created := time.Since(start)

	var statusNs, listNs, writeNs, depNs time.Duration
	n := 0
	for b.Loop() {
		t := time.Now()
		rows, err := e.Status(ctx)
		if err != nil || len(rows) != roles {
			b.Fatalf("status: %d rows, %v", len(rows), err)
		}
		statusNs += time.Since(t)

		t = time.Now()
		if names, err := e.indexedRoles(ctx); err != nil || len(names) != roles {
			b.Fatalf("list: %v", err)
		}
		listNs += time.Since(t)

		t = time.Now()
		// An admin (dependents looked up) whose kind settings change (claims checked).
		if _, err := e.WriteRole(ctx, "r00007", RoleInput{Settings: map[string]interface{}{fFaultMode: []string{"normal", "strict"}[n%2]}}); err != nil {
			b.Fatalf("role write: %v", err)
		}
		writeNs += time.Since(t)

		t = time.Now()
		// A dependent (its grant and its claim checked against every other role's).
		if _, err := e.WriteRole(ctx, "r05007", RoleInput{Tags: &[]string{fmt.Sprintf("n:%d", n)}}); err != nil {
			b.Fatalf("dependent write: %v", err)
		}
		depNs += time.Since(t)
		n++
	}
	b.ReportMetric(float64(depNs.Microseconds())/float64(n)/1000, "dependent-write-ms")
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(statusNs.Microseconds())/float64(n)/1000, "status-ms")
	b.ReportMetric(float64(listNs.Microseconds())/float64(n)/1000, "list-ms")
	b.ReportMetric(float64(writeNs.Microseconds())/float64(n)/1000, "role-write-ms")
	b.ReportMetric(created.Seconds(), "create-10k-s")
}
