// Package backend is the rotation engine: roles and their storage, the rotation protocol,
// pending-record recovery, kept versions, history and the scheduler. It knows Vault only
// through logical.Storage and logical.SystemView; the API paths live in package paths.
package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/version"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// PluginVersion is the plugin's version, as registered in Vault's catalog (internal/version).
var PluginVersion = version.Version

// Clock tells the time; tests replace it instead of sleeping.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now().UTC() }

// Engine rotates the roles of one mount.
type Engine struct {
	logger  hclog.Logger
	storage logical.Storage
	records *recordCache // role and state records as storage last held them (nil in some tests)
	system  logical.SystemView
	clock   Clock

	cfgMu sync.RWMutex
	cfg   Config

	locks     roleLocks
	claims    claimSet  // accounts claimed by role writes in progress
	relations relations // dependents and claimed accounts of the stored roles, kept with the role index
	docker    dockerClients
	// resources are the clients kinds keep open (database session pools), closed in Close.
	resources *rotators.Resources
	histSeq   historySeqs
	notify    *notifier
	probes    *consumers.ProbeLimiter // health probes in flight, over every rotation of the mount
	events    logical.EventSender
	queue     *dueQueue
	pending   pendingSet
	keySets   *keySetCache
	index     *roleIndex // every role's settings and state summary, for inventory and cross-role rules
	writes    writeFence // whether this node's storage writes succeed; creds refuses while they fail
	due       dueTimer   // wakes the scheduler at the earliest due time
	metrics   *mountMetrics
	// jobs are the rotate-many jobs running (at most one: jobRunning); Close waits for them.
	jobs       sync.WaitGroup
	jobsMu     sync.Mutex // orders a job's start against Close's wait
	jobsClosed bool       // Close began: no job may start
	jobRunning atomic.Bool
	// interrupted are the roles an interrupted job left mid-rotation, reported once recovered.
	interrupted interruptedRoles
	workers     *workerPool
	// windows are the roles between apply and promote, which creds waits for, at most credsWait.
	windows   applyWindows
	credsWait time.Duration
	// timers wake recovery when a target has settled (recoverAt).
	timersMu sync.Mutex
	timers   map[string]*time.Timer
	// held are creds waits that outlive the run that opened them: records left by a crash, and
	// unknown outcomes until their target settled; recovery takes them over.
	heldMu sync.Mutex
	held   map[string]func()
	// flights are the rotations in progress; Close waits for them.
	flights flights
	// started is when Initialize ran: a record left by a process that died is settled
	// (rotators.Settler) counted from here.
	started time.Time

	ctx    context.Context // outlives requests; cancelled by Close
	cancel context.CancelFunc
}

// New returns an engine over the mount's storage view. Call Initialize before use.
func New(conf *logical.BackendConfig) *Engine {
	ctx, cancel := context.WithCancel(context.Background())
	logger := conf.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	e := &Engine{
		logger:    logger,
		system:    conf.System,
		clock:     systemClock{},
		cfg:       DefaultConfig(),
		queue:     newDueQueue(),
		pending:   pendingSet{names: map[string]bool{}},
		keySets:   newKeySetCache(maxCachedKeySets),
		index:     newRoleIndex(),
		metrics:   newMountMetrics(),
		ctx:       ctx,
		cancel:    cancel,
		notify:    newNotifier(logger),
		probes:    consumers.NewProbeLimiter(consumers.MaxProbesInFlight),
		resources: rotators.NewResources(),
		credsWait: credsWaitMax,
		events:    conf.EventsSender,
	}
	e.records = newRecordCache()
	e.storage = engineStorage{Storage: conf.StorageView, written: e.storageWritten, writeResult: e.writes.heard, cache: e.records}
	e.queue.changed = e.armDue
	e.workers = newWorkerPool(ctx, e.runJob)
	return e
}

// storageWritten drops what the engine holds in memory of the key just written.
func (e *Engine) storageWritten(key string) {
	if name := keySetRole(key); name != "" {
		e.keySets.drop(name)
	}
	if name := indexRole(key); name != "" {
		e.index.stale(name)
		e.relations.stale(name)
	}
}

// SetClock replaces the clock (tests).
func (e *Engine) SetClock(c Clock) { e.clock = c }

func (e *Engine) now() time.Time { return e.clock.Now().UTC() }

// Initialize loads the config, rebuilds the schedule from storage, and queues the recovery of
// every pending record left by an interrupted rotation.
func (e *Engine) Initialize(ctx context.Context) error {
	e.started = e.now()
	if err := e.loadConfig(ctx); err != nil {
		return err
	}
	// Reading every role once fills the role index, which inventory then answers from.
	roles, err := e.indexedRoles(ctx)
	if err != nil {
		return fmt.Errorf("read the roles: %w", err)
	}
	now := e.now()
	for _, r := range roles {
		e.queue.set(r.Role.Name, r.Role.NextWake(r.Sum.state(), now))
	}
	pendings, err := e.storage.List(ctx, pendingPrefix)
	if err != nil {
		return fmt.Errorf("list pending: %w", err)
	}
	if e.writeSafe() {
		if err := e.interruptJobs(ctx, pendings); err != nil {
			return err
		}
	}
	e.workers.resize(e.Config().MaxParallel)
	e.notify.start(e.ctx)
	if e.writeSafe() {
		e.openStartupWindows(pendings)
	}
	for _, name := range pendings {
		e.pending.add(name)
		if e.writeSafe() {
			e.workers.submit(job{name: name, recover: true})
		}
	}
	e.logger.Info("rotation engine started", "roles", len(roles), "pending", len(pendings))
	return nil
}

// closeWait bounds how long Close waits for cancelled rotations to record their outcome.
const closeWait = 2 * time.Minute

// Close cancels background rotations and waits for them to stop.
func (e *Engine) Close() {
	e.cancel()
	e.stopDue()
	e.timersMu.Lock()
	for _, t := range e.timers {
		t.Stop()
	}
	e.timersMu.Unlock()
	e.workers.close()
	e.jobsMu.Lock()
	e.jobsClosed = true // no job starts after this; the ones started are in e.jobs
	e.jobsMu.Unlock()
	jobsDone := make(chan struct{})
	go func() { e.jobs.Wait(); close(jobsDone) }()
	if !e.flights.closeAndWait(closeWait) {
		// Their records are in storage; the next engine settles them from its own start,
		// which may be too early for a change these still send: say so.
		e.logger.Error("closing with rotations still running after their cancel; their pending records are resolved by the next start", "waited", closeWait)
	}
	e.timersMu.Lock()
	for _, t := range e.timers {
		t.Stop() // armed by rotations that ended meanwhile
	}
	e.timersMu.Unlock()
	select {
	case <-jobsDone:
	case <-time.After(closeWait):
		e.logger.Error("closing with a rotate-many job still running after its cancel", "waited", closeWait)
	}
	e.heldMu.Lock()
	for name, end := range e.held {
		end() // no recovery will run on this engine any more
		delete(e.held, name)
	}
	e.heldMu.Unlock()
	e.docker.close()
	e.resources.Close()
}

// writeSafe is false where storage writes would fail (replication secondaries, perf standbys).
func (e *Engine) writeSafe() bool {
	if e.system == nil {
		return true
	}
	rs := e.system.ReplicationState()
	return (e.system.LocalMount() || !rs.HasState(consts.ReplicationPerformanceSecondary)) &&
		!rs.HasState(consts.ReplicationDRSecondary) &&
		!rs.HasState(consts.ReplicationPerformanceStandby)
}

// pendingSet tracks the roles with a pending record, so a tick does not list storage.
type pendingSet struct {
	mu    sync.Mutex
	names map[string]bool
}

func (p *pendingSet) add(name string) {
	p.mu.Lock()
	p.names[name] = true
	p.mu.Unlock()
}

func (p *pendingSet) remove(name string) {
	p.mu.Lock()
	delete(p.names, name)
	p.mu.Unlock()
}

func (p *pendingSet) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.names))
	for n := range p.names {
		out = append(out, n)
	}
	return out
}

// Stats reports the scheduler's state (benchmarks and tests).
type Stats struct {
	Scheduled, Waiting, Pending int
}

func (e *Engine) Stats() Stats {
	return Stats{Scheduled: e.queue.len(), Waiting: e.workers.waiting(), Pending: len(e.pending.list())}
}

// joinErrors renders step errors for one message.
func joinErrors(parts ...string) string {
	var kept []string
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "; ")
}

func (p *pendingSet) has(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.names[name]
}
