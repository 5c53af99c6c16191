package paths

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathJWKS(b *Backend) []*framework.Path {
	return []*framework.Path{roleReadPath{
		prefix: "jwks/", suffix: "jwks", read: b.handleJWKS,
		summary:  "The role's public JSON Web Key Set (unauthenticated).",
		synopsis: "Public JSON Web Key Set of a jwt role.",
		help: `Unauthenticated, so that any service can verify tokens: an RFC 7517 JWK Set with the
current public key and every retired public key whose verification_ttl has not passed. Never an
HMAC secret, never a private part.`,
	}.path()}
}

func (b *Backend) handleJWKS(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	doc, err := b.engine.KeySet(ctx, name)
	if err != nil {
		return respondErr(name, err)
	}
	return &logical.Response{Data: map[string]interface{}{
		logical.HTTPContentType: "application/jwk-set+json",
		logical.HTTPRawBody:     doc,
		logical.HTTPStatusCode:  http.StatusOK,
	}}, nil
}
