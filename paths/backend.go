// Package paths defines the mount's API: framework paths with their fields, help and OpenAPI
// display attributes. Handlers translate requests to calls of the engine in package backend.
package paths

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
	// Each secret kind registers itself.
	_ "github.com/vault-plugin-rotation/vault-plugin-rotation/rotators/jwt"
	_ "github.com/vault-plugin-rotation/vault-plugin-rotation/rotators/postgres"
	_ "github.com/vault-plugin-rotation/vault-plugin-rotation/rotators/ssh"
	_ "github.com/vault-plugin-rotation/vault-plugin-rotation/rotators/token"
)

const operationPrefix = "rotation"

const backendHelp = `
The rotation secrets engine owns the lifecycle of long-lived secrets: it generates a new
value, applies it at the target, verifies it, and only then promotes it, keeping prior values
as versions. It rotates on a schedule (rotation_period or rotation_schedule) and on demand
(rotate/NAME), and never loses a credential: a pending record of the old and new value is
stored before the target is touched, and resolved after any crash.
`

// Backend is the mount: the framework backend and the engine behind it.
type Backend struct {
	*framework.Backend
	engine *backend.Engine
}

// Factory creates the mount; the plugin's main and the unit tests both call it.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := New(conf)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// New wires the engine and the paths without setting up the framework backend.
func New(conf *logical.BackendConfig) *Backend {
	b := &Backend{engine: backend.New(conf)}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: backend.SealWrapPrefixes,
			Unauthenticated: []string{"jwks/*"},
			// The mount's settings (where consumers are restarted, where notifications go), the
			// actions across roles (rotate-many and its jobs), and the search of every container
			// of an engine (exposure: with a value a role writer chose, it would tell where that
			// string appears in other teams' containers) need a policy with sudo.
			Root: []string{"config", "rotate-many", "jobs", "jobs/*", "exposure/*"},
		},
		Paths: framework.PathAppend(
			pathConfig(b),
			pathRoles(b),
			pathRotate(b),
			pathCreds(b),
			pathVersions(b),
			pathRollback(b),
			pathHistory(b),
			pathSessions(b),
			pathJWKS(b),
			pathStatus(b),
			pathMany(b),
			pathMetrics(b),
			pathExposure(b),
		),
		InitializeFunc: func(ctx context.Context, _ *logical.InitializationRequest) error {
			return b.engine.Initialize(ctx)
		},
		PeriodicFunc: func(ctx context.Context, _ *logical.Request) error {
			return b.engine.Tick(ctx)
		},
		Clean:          func(context.Context) { b.engine.Close() },
		Invalidate:     b.engine.Invalidate,
		RunningVersion: backend.PluginVersion,
	}
	return b
}

// Engine returns the rotation engine (tests and benchmarks).
func (b *Backend) Engine() *backend.Engine { return b.engine }

// nameOf validates the name captured by a path pattern.
func nameOf(d *framework.FieldData) (string, *logical.Response) {
	name := d.Get("name").(string)
	if err := backend.ValidateRoleName(name); err != nil {
		return "", logical.ErrorResponse(err.Error())
	}
	return name, nil
}

// respondErr turns an engine error into the API's answer: a 400 for the caller's mistakes, a 404
// for a missing role, and an internal error otherwise.
func respondErr(name string, err error) (*logical.Response, error) {
	switch {
	case errors.Is(err, backend.ErrRoleNotFound):
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("role %q not found", name))
	case backend.IsUserError(err):
		return logical.ErrorResponse(err.Error()), nil
	case errors.Is(err, backend.ErrOutcomePending), errors.Is(err, backend.ErrTargetUnavailable), errors.Is(err, backend.ErrNotWritable),
		errors.Is(err, rotators.ErrUnreachable):
		return nil, logical.CodedError(http.StatusServiceUnavailable, err.Error())
	default:
		return nil, err
	}
}

// nameField is the role name captured by every per-role path.
func nameField() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"name": {Type: framework.TypeString, Description: "Name of the role.", Required: true},
	}
}

// roleReadPath is a read-only path of one role: PREFIX/NAME, answered by read.
type roleReadPath struct {
	prefix, suffix          string
	extra                   map[string]*framework.FieldSchema
	read                    framework.OperationFunc
	summary, synopsis, help string
}

func (p roleReadPath) path() *framework.Path {
	fields := nameField()
	for k, v := range p.extra {
		fields[k] = v
	}
	return &framework.Path{
		Pattern:      namePattern(p.prefix),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: p.suffix},
		Fields:       fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: p.read, Summary: p.summary},
		},
		HelpSynopsis:    p.synopsis,
		HelpDescription: p.help,
	}
}

// namePattern captures any role name, so that a bad one gets a 400 that says why instead of an
// unsupported-path error.
func namePattern(prefix string) string { return prefix + "(?P<name>.+)" }

func timeOrNil(t time.Time) interface{} {
	if t.IsZero() {
		return nil
	}
	return t.Format(time.RFC3339)
}

func stepsData(steps []backend.StepResult) []map[string]interface{} {
	out := make([]map[string]interface{}, 0, len(steps))
	for _, s := range steps {
		m := map[string]interface{}{"name": s.Name, "duration": s.Duration.String(), "duration_ms": float64(s.Duration.Microseconds()) / 1000}
		if s.Error != "" {
			m["error"] = s.Error
		}
		out = append(out, m)
	}
	return out
}

// kindFieldSchema maps a rotator field to the framework's field schema.
func kindFieldSchema(f rotators.Field, kind string) *framework.FieldSchema {
	s := &framework.FieldSchema{Description: fmt.Sprintf("(%s) %s", kind, f.Description), Default: f.Default}
	switch f.Kind {
	case rotators.FieldList:
		s.Type = framework.TypeCommaStringSlice
	case rotators.FieldInt:
		s.Type = framework.TypeInt
	case rotators.FieldBool:
		s.Type = framework.TypeBool
	case rotators.FieldDuration:
		s.Type = framework.TypeDurationSecond
	case rotators.FieldSecret:
		s.Type = framework.TypeString
		s.DisplayAttrs = &framework.DisplayAttributes{Sensitive: true}
	default:
		s.Type = framework.TypeString
	}
	if len(f.Allowed) > 0 {
		for _, a := range f.Allowed {
			s.AllowedValues = append(s.AllowedValues, a)
		}
	}
	return s
}

func secondsDuration(s int) time.Duration { return time.Duration(s) * time.Second }

// withRequester records who made a request, for the history of the rotation it starts.
func withRequester(ctx context.Context, req *logical.Request) context.Context {
	return backend.WithRequester(ctx, backend.Requester{EntityID: req.EntityID, Accessor: req.ClientTokenAccessor})
}
