package paths

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathExposure(b *Backend) []*framework.Path {
	return []*framework.Path{roleReadPath{
		prefix: "exposure/", suffix: "exposure", read: b.handleExposure,
		summary:  "Find the role's values written into containers' definitions.",
		synopsis: "Where is this secret? Containers whose environment, command or labels hold one of the role's values.",
		help: "Every container on the role's Docker engines (docker_host, and the docker_hosts its consumers name; at most " +
			"500 per engine) whose environment, command or labels hold the role's current or a kept value, listed as a " +
			"consumer or not: container, endpoint, where (the variable, argument or label), version, listed_as_consumer. " +
			"Such a container cannot take a new value by restarting. Values are compared by hash; none is returned. " +
			"Needs sudo: it searches containers beyond the role's own consumers.",
	}.path()}
}

func (b *Backend) handleExposure(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	x, err := b.engine.Exposure(ctx, name)
	if err != nil {
		return respondErr(name, err)
	}
	list := make([]map[string]interface{}, 0, len(x.Findings))
	for _, f := range x.Findings {
		list = append(list, map[string]interface{}{
			"container": f.Container, "endpoint": f.Endpoint, "where": f.Where, "version": f.Tag,
			"listed_as_consumer": x.Consumer[f.Endpoint+"/"+f.Container],
		})
	}
	return &logical.Response{Data: map[string]interface{}{
		"exposures": list, "truncated": nonNil(x.Truncated), "errors": nonNil(x.Errors),
	}}, nil
}
