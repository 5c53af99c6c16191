package paths

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

func pathCreds(b *Backend) []*framework.Path {
	return []*framework.Path{roleReadPath{
		prefix: "creds/", suffix: "credentials", read: b.handleCreds,
		extra: map[string]*framework.FieldSchema{
			"version": {Type: framework.TypeInt, Description: "Kept version to read. Default: the current one."},
		},
		summary:  "Read the current (or a kept) credential.",
		synopsis: "Read a role's credential.",
		help: "Returns the current value (or kept version=N) with its version and schedule. For postgres: username, " +
			"password and connection_url with the password filled in; token: value; jwt: private_key or secret, kid, " +
			"algorithm; ssh: private_key, public_key, fingerprint.",
	}.path()}
}

func (b *Backend) handleCreds(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	n := d.Get("version").(int)
	v, described, view, err := b.engine.Creds(ctx, name, n)
	if err != nil {
		return respondErr(name, err)
	}
	data := map[string]interface{}{}
	for k, s := range v.Secret {
		data[k] = s
	}
	for k, s := range described {
		data[k] = s
	}
	data["version"] = v.Number
	data["current_version"] = view.CurrentVersion
	data["created"] = timeOrNil(v.Created)
	data["last_rotated"] = timeOrNil(view.LastRotated)
	data["next_rotation"] = timeOrNil(view.NextRotation)
	return &logical.Response{Data: data}, nil
}

func pathVersions(b *Backend) []*framework.Path {
	return []*framework.Path{roleReadPath{
		prefix: "versions/", suffix: "versions", read: b.handleVersions,
		summary:  "List kept versions without values.",
		synopsis: "List a role's kept versions.",
		help:     "Number, creation time, what created it and status (active or previous) of each kept version, newest first. No values.",
	}.path()}
}

func (b *Backend) handleVersions(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	versions, err := b.engine.Versions(ctx, name)
	if err != nil {
		return respondErr(name, err)
	}
	list := make([]map[string]interface{}, 0, len(versions))
	current := 0
	for _, v := range versions {
		if v.Status == backend.VersionActive {
			current = v.Number
		}
		list = append(list, map[string]interface{}{"version": v.Number, "created": timeOrNil(v.Created), "trigger": string(v.Trigger), "status": v.Status})
	}
	return &logical.Response{Data: map[string]interface{}{"versions": list, "current_version": current}}, nil
}
