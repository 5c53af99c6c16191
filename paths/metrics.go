package paths

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// prometheusContentType is the text exposition format's media type.
const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

func pathMetrics(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "metrics$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "metrics"},
		Fields: map[string]*framework.FieldSchema{
			"format": {Type: framework.TypeString, AllowedValues: []interface{}{"", "prometheus"},
				Description: "prometheus: answer the Prometheus text format itself (for a scraper); otherwise it is the field text of a JSON answer."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.handleMetrics, Summary: "The mount's metrics in the Prometheus text format."},
		},
		HelpSynopsis: "Metrics for Prometheus: every role's age, due time, failures; the rotations of this node.",
		HelpDescription: `Per role (labels role and type): vault_rotation_role_last_rotated_timestamp_seconds,
vault_rotation_role_next_due_timestamp_seconds, vault_rotation_role_overdue, vault_rotation_role_consecutive_failures,
vault_rotation_role_parked, vault_rotation_role_current_version. Per node since its plugin started:
vault_rotation_rotations_total (type, trigger, outcome) and vault_rotation_step_duration_seconds (type, step).
Scrape GET /v1/rotation/metrics?format=prometheus with a token whose policy reads rotation/metrics
(deploy/prometheus/ has a scrape configuration and alert rules). Never a value.`,
	}}
}

func (b *Backend) handleMetrics(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	text, err := b.engine.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	if d.Get("format").(string) == "prometheus" {
		return &logical.Response{Data: map[string]interface{}{
			logical.HTTPContentType: prometheusContentType,
			logical.HTTPRawBody:     text,
			logical.HTTPStatusCode:  http.StatusOK,
		}}, nil
	}
	return &logical.Response{Data: map[string]interface{}{"format": "prometheus", "text": string(text)}}, nil
}
