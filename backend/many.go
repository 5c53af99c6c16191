package backend

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-secure-stdlib/strutil"
	uuid "github.com/hashicorp/go-uuid"
)

// rotate-many rotates every selected role through the whole protocol: the guide's "employee
// departure: immediate rotation" (README "Rotating many roles at once"). A few roles are answered
// in the request; more run as a job whose record (jobs/ID) outlives the request and the process.

const (
	// ManyInline is the most roles rotate-many answers in the request; more run as a job.
	ManyInline = 16
	// MaxManyRoles bounds one selection: with each outcome bounded (maxJobErrorText), a job's
	// record stays far inside one storage entry (raft's 1 MiB).
	MaxManyRoles = 1000
	// maxJobErrorText bounds the error text an outcome keeps in a job record.
	maxJobErrorText = 256
	// jobWriteEvery is how often a running job's record is written (and once at its end).
	jobWriteEvery = time.Second
	// maxJobsKept bounds the job records kept; the oldest go first.
	maxJobsKept = 100
	maxGlobLen  = 256

	JobRunning     = "running"
	JobDone        = "done"
	JobInterrupted = "interrupted"
)

// ManyRequest selects roles by exactly one of a tag, a list of names or a name glob.
type ManyRequest struct {
	Tag    string
	Roles  []string
	Glob   string
	DryRun bool
}

// ManyOutcome is one role's result in a rotate-many.
type ManyOutcome struct {
	Role       string `json:"role"`
	Result     string `json:"result"` // an Outcome result, "pending" (not started), or "interrupted"
	Version    int    `json:"version,omitempty"`
	FailedStep string `json:"failed_step,omitempty"`
	Error      string `json:"error,omitempty"`
	// Detail says, for a role of an interrupted job, where the role stands (no value).
	Detail string `json:"detail,omitempty"`
}

// Job is the record of a rotate-many that runs past the request.
type Job struct {
	ID       string        `json:"id"`
	State    string        `json:"state"`
	Created  time.Time     `json:"created"`
	Finished time.Time     `json:"finished,omitempty"`
	By       Requester     `json:"requested_by,omitempty"`
	Outcomes []ManyOutcome `json:"outcomes"`
}

// ManyResult answers a rotate-many: the selected roles, and either their outcomes or a job.
type ManyResult struct {
	Roles    []string
	Outcomes []ManyOutcome
	JobID    string
}

// selectRoles applies a ManyRequest's selector to the role index.
func (e *Engine) selectRoles(ctx context.Context, req ManyRequest) ([]string, error) {
	given := 0
	for _, set := range []bool{req.Tag != "", len(req.Roles) > 0, req.Glob != ""} {
		if set {
			given++
		}
	}
	if given != 1 {
		return nil, userError(errors.New("tag, roles or glob: give exactly one"))
	}
	switch {
	case req.Tag != "":
		if err := validateTags([]string{req.Tag}); err != nil {
			return nil, userError(fmt.Errorf("tag: %s", strings.TrimPrefix(err.Error(), FieldTags+": item 1 ")))
		}
	case req.Glob != "":
		if len(req.Glob) > maxGlobLen {
			return nil, userError(fmt.Errorf("glob: longer than %d bytes", maxGlobLen))
		}
	default:
		if len(req.Roles) > MaxManyRoles {
			return nil, userError(fmt.Errorf("roles: more than %d", MaxManyRoles))
		}
		for _, n := range req.Roles {
			if err := ValidateRoleName(n); err != nil {
				return nil, userError(fmt.Errorf("roles: %w", err))
			}
		}
	}
	roles, err := e.indexedRoles(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*Role, len(roles))
	for _, r := range roles {
		byName[r.Role.Name] = r.Role
	}
	var names []string
	switch {
	case len(req.Roles) > 0:
		seen := map[string]bool{}
		for _, n := range req.Roles {
			if byName[n] == nil {
				return nil, userError(fmt.Errorf("roles: role %q does not exist", n))
			}
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	default:
		for _, r := range roles {
			if (req.Tag != "" && contains(r.Role.Tags, req.Tag)) ||
				(req.Glob != "" && (req.Glob == "*" || strutil.GlobbedStringsMatch(req.Glob, r.Role.Name))) {
				names = append(names, r.Role.Name)
			}
		}
	}
	if len(names) > MaxManyRoles {
		return nil, userError(fmt.Errorf("the selection holds %d roles, more than %d", len(names), MaxManyRoles))
	}
	sort.Strings(names)
	return names, nil
}

// RotateMany rotates the selected roles, each through the whole protocol and each on its own
// (a failing role rolls back alone). At most max_parallel run at once.
func (e *Engine) RotateMany(ctx context.Context, req ManyRequest) (*ManyResult, error) {
	names, err := e.selectRoles(ctx, req)
	if err != nil {
		return nil, err
	}
	res := &ManyResult{Roles: names}
	if req.DryRun || len(names) == 0 {
		return res, nil
	}
	by := requesterFrom(ctx)
	if len(names) <= ManyInline {
		res.Outcomes = e.rotateEach(ctx, names, nil)
		return res, nil
	}
	if !e.jobRunning.CompareAndSwap(false, true) {
		return nil, userError(errors.New("a rotate-many job is running on this mount (vault list rotation/jobs); wait until it is done"))
	}
	id, err := uuid.GenerateUUID()
	if err != nil {
		e.jobRunning.Store(false)
		return nil, fmt.Errorf("job id: %w", err)
	}
	job := &Job{ID: id, State: JobRunning, Created: e.now(), By: by}
	for _, n := range names {
		job.Outcomes = append(job.Outcomes, ManyOutcome{Role: n, Result: "pending"})
	}
	if err := e.putJob(ctx, job); err != nil {
		e.jobRunning.Store(false)
		return nil, err
	}
	e.trimJobs(ctx)
	res.JobID = id
	// The job belongs to the engine, not to the request: it runs until done or the mount closes
	// (Close waits for it), and a closing engine writes no more of it (the next start reports it
	// interrupted).
	e.jobsMu.Lock()
	if e.jobsClosed {
		e.jobsMu.Unlock()
		e.jobRunning.Store(false)
		return nil, errShuttingDown // the record stays "running": the next start reports it interrupted
	}
	e.jobs.Add(1) // under jobsMu: Close, which takes it after the cancel, waits for this one
	e.jobsMu.Unlock()
	go func() {
		defer e.jobs.Done()
		defer e.jobRunning.Store(false)
		var mu sync.Mutex
		written := time.Now()
		write := func() {
			if e.ctx.Err() != nil {
				return
			}
			if err := e.putJob(e.ctx, job); err != nil {
				e.logger.Error("rotate-many: write the job record", "job", id, "error", err)
			}
			written = time.Now()
		}
		e.rotateEach(WithRequester(e.ctx, by), names, func(i int, o ManyOutcome) {
			mu.Lock()
			defer mu.Unlock()
			o.Error = cappedTo(o.Error, maxJobErrorText)
			job.Outcomes[i] = o
			if time.Since(written) >= jobWriteEvery {
				write()
			}
		})
		mu.Lock()
		defer mu.Unlock()
		job.State, job.Finished = JobDone, e.now()
		write()
	}()
	return res, nil
}

// rotateEach rotates names with at most max_parallel at once; done (when not nil) hears each
// outcome as it comes.
func (e *Engine) rotateEach(ctx context.Context, names []string, done func(int, ManyOutcome)) []ManyOutcome {
	out := make([]ManyOutcome, len(names))
	sem := make(chan struct{}, max(1, e.Config().MaxParallel))
	var wg sync.WaitGroup
	for i, name := range names {
		if ctx.Err() != nil {
			break // closing: start no more
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return out
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o := ManyOutcome{Role: name}
			outcome, err := e.rotate(ctx, name, rotateRequest{trigger: TriggerManual})
			switch {
			case err != nil:
				o.Result, o.Error = OutcomeFailed, capped(err.Error())
			default:
				o.Result, o.Version, o.FailedStep, o.Error = outcome.Result, outcome.NewVersion, outcome.FailedStep, outcome.Error
			}
			out[i] = o
			if done != nil {
				done(i, o)
			}
		}()
	}
	wg.Wait()
	return out
}

// ReadJob returns a rotate-many job's record (nil: none).
func (e *Engine) ReadJob(ctx context.Context, id string) (*Job, error) {
	if _, err := uuid.ParseUUID(id); err != nil {
		return nil, userError(errors.New("id: not a job id"))
	}
	var j Job
	ok, err := getJSON(ctx, e.storage, jobPrefix+id, &j)
	if err != nil || !ok {
		return nil, err
	}
	return &j, nil
}

// ListJobs returns the kept job ids.
func (e *Engine) ListJobs(ctx context.Context) ([]string, error) {
	return e.storage.List(ctx, jobPrefix)
}

func (e *Engine) putJob(ctx context.Context, j *Job) error {
	return putJSON(ctx, e.storage, jobPrefix+j.ID, j)
}

// trimJobs keeps the newest maxJobsKept job records.
func (e *Engine) trimJobs(ctx context.Context) {
	ids, err := e.storage.List(ctx, jobPrefix)
	if err != nil || len(ids) <= maxJobsKept {
		return
	}
	type dated struct {
		id      string
		created time.Time
	}
	var jobs []dated
	for _, id := range ids {
		var j Job
		if ok, err := getJSON(ctx, e.storage, jobPrefix+id, &j); err == nil && ok && j.State != JobRunning {
			jobs = append(jobs, dated{id, j.Created})
		}
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].created.After(jobs[b].created) })
	e.jobsMu.Lock() // jobRoleResolved rewrites a record under it: never one deleted here
	defer e.jobsMu.Unlock()
	for _, j := range jobs[min(maxJobsKept, len(jobs)):] {
		if err := deleteKey(ctx, e.storage, jobPrefix+j.id); err != nil {
			e.logger.Warn("rotate-many: trim job records", "error", err)
			return
		}
	}
}

// interruptJobs marks the jobs a previous process left running. Each role the job had not yet
// reported is resolved in the record: one that had no rotation in flight keeps its current
// version; one that was mid-rotation (its pending record is among pendings) is reported when
// recovery has resolved that record (jobRoleResolved), with the version then current.
func (e *Engine) interruptJobs(ctx context.Context, pendings []string) error {
	ids, err := e.storage.List(ctx, jobPrefix)
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	inFlight := map[string]bool{}
	for _, n := range pendings {
		inFlight[n] = true
	}
	for _, id := range ids {
		var j Job
		ok, err := getJSON(ctx, e.storage, jobPrefix+id, &j)
		if err != nil {
			return err
		}
		if !ok || j.State != JobRunning {
			continue
		}
		for i := range j.Outcomes {
			o := &j.Outcomes[i]
			if o.Result != "pending" {
				continue
			}
			o.Result = JobInterrupted
			if inFlight[o.Role] {
				o.Detail = "a rotation (this job's, or another trigger's) was in flight when the plugin stopped; recovery is resolving its pending record"
				e.interrupted.watch(o.Role, id)
				continue
			}
			o.Version = e.currentVersion(ctx, o.Role)
			// The job writes its record about once a second, so a role it finished just before
			// the stop may show here too: the version says where the role stands either way.
			o.Detail = "no outcome recorded before the plugin stopped, and no rotation in flight: version is current"
		}
		j.State, j.Finished = JobInterrupted, e.now()
		if err := e.putJob(ctx, &j); err != nil {
			return err
		}
	}
	return nil
}

// currentVersion is the role's current version (0: none, or unreadable).
func (e *Engine) currentVersion(ctx context.Context, name string) int {
	st, err := e.loadState(ctx, name)
	if err != nil {
		return 0
	}
	if cur := st.Current(); cur != nil {
		return cur.Number
	}
	return 0
}

// interruptedRoles maps a role that was mid-rotation in an interrupted job to that job.
type interruptedRoles struct {
	mu    sync.Mutex
	byJob map[string]string // role name → job id
}

func (m *interruptedRoles) watch(role, job string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byJob == nil {
		m.byJob = map[string]string{}
	}
	m.byJob[role] = job
}

func (m *interruptedRoles) take(role string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byJob[role]
	delete(m.byJob, role)
	return id, ok
}

// jobRoleResolved writes into the interrupted job the state of a role whose in-flight rotation
// recovery has just resolved. The caller holds the role's lock.
func (e *Engine) jobRoleResolved(ctx context.Context, role string) {
	id, ok := e.interrupted.take(role)
	if !ok {
		return
	}
	e.jobsMu.Lock()
	defer e.jobsMu.Unlock()
	j, err := e.ReadJob(ctx, id)
	if err != nil || j == nil {
		return
	}
	for i := range j.Outcomes {
		if o := &j.Outcomes[i]; o.Role == role && o.Result == JobInterrupted {
			o.Version = e.currentVersion(ctx, role)
			o.Detail = fmt.Sprintf("a rotation (this job's, or another trigger's) was in flight when the plugin stopped; recovery resolved it: version %d is current (rotation/history/%s)", o.Version, role)
		}
	}
	if err := e.putJob(ctx, j); err != nil {
		e.logger.Warn("rotate-many: record a resolved role of an interrupted job", "job", id, "role", role, "error", err)
	}
}
