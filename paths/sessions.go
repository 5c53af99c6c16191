package paths

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

func pathSessions(b *Backend) []*framework.Path {
	return []*framework.Path{roleReadPath{
		prefix: "sessions/", suffix: "sessions", read: b.handleSessions,
		summary:  "List the live sessions of a role's logins.",
		synopsis: "List who is connected with a role's credential now.",
		help: fmt.Sprintf("The live sessions of the role's login(s) at its target (postgres: pg_stat_activity, read through "+
			"the admin_role's session, or the login's own for a self-managed role), oldest first, at most %d: login, "+
			"current (the login of the current version), pid, application_name, client_addr, client_port, backend_start, "+
			"database, state, age_seconds and opened_before_current (opened before the current version was made: it "+
			"authenticated with an earlier value). An admin that is not a member of pg_read_all_stats sees other logins' "+
			"sessions without address, start or state (null, with a warning). Never a secret. Roles of other types answer 400.", backend.MaxSessions),
	}.path()}
}

func (b *Backend) handleSessions(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	res, err := b.engine.Sessions(ctx, name)
	if err != nil {
		return respondErr(name, err)
	}
	list := make([]map[string]interface{}, 0, len(res.Sessions))
	for _, s := range res.Sessions {
		m := map[string]interface{}{
			"pid": s.ID, "login": s.Account, "current": s.Current, "application_name": s.ApplicationName, "database": s.Database,
			"client_addr": nil, "client_port": nil, "backend_start": nil, "state": nil, "age_seconds": nil, "opened_before_current": nil,
		}
		if !s.Hidden {
			m["backend_start"] = timeOrNil(s.Started)
			m["age_seconds"] = int64(s.Age.Seconds())
			m["state"] = s.State
			if s.ClientAddr != "" {
				m["client_addr"] = s.ClientAddr
			}
			if s.ClientPort != 0 {
				m["client_port"] = s.ClientPort
			}
		}
		if s.OpenedBeforeCurrent != nil {
			m["opened_before_current"] = *s.OpenedBeforeCurrent
		}
		list = append(list, m)
	}
	resp := &logical.Response{Data: map[string]interface{}{
		"sessions": list, "count": len(list), "truncated": res.Truncated, "current_version": res.CurrentVersion,
	}}
	for _, w := range res.Warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}
