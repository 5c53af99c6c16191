package paths

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
)

func pathConfig(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "config",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "configuration"},
		Fields: map[string]*framework.FieldSchema{
			"max_parallel":  {Type: framework.TypeInt, Default: backend.DefaultConfig().MaxParallel, Description: "How many scheduled rotations run at once."},
			"history_limit": {Type: framework.TypeInt, Default: backend.DefaultConfig().HistoryLimit, Description: "How many history entries to keep per role."},
			"retry_base":    {Type: framework.TypeDurationSecond, Default: int(backend.DefaultConfig().RetryBase.Seconds()), Description: "First backoff after a failed scheduled rotation; doubles on each failure (1s to 24h)."},
			"retry_max":     {Type: framework.TypeDurationSecond, Default: int(backend.DefaultConfig().RetryMax.Seconds()), Description: "Longest backoff (retry_base to 24h)."},
			"max_failures":  {Type: framework.TypeInt, Default: backend.DefaultConfig().MaxFailures, Description: "Consecutive failures after which a role is parked as failing until it is written or rotated by hand (1 to 1000)."},
			"notify_url": {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
				Description: "http(s) URL that receives a JSON document (event, role, type, version, outcome, error, time; never a secret) on every success, failure, rollback, parking, and due reminder of a manual-only role. Empty: off. Write-only: a read shows only its scheme and host, as 'https://hooks.example.com (set)'. Redirects are not followed."},
			"docker_host": {Type: framework.TypeString, Default: backend.DefaultDockerHost, Description: "Docker Engine API that docker:NAME and compose:PROJECT/SERVICE consumers are restarted through (unix:///var/run/docker.sock, tcp://127.0.0.1:2375)."},
			"docker_hosts": {Type: framework.TypeCommaStringSlice,
				Description: "Named Docker engines, NAME=unix:///PATH or NAME=tcp://HOST:PORT (web1=tcp://10.0.0.5:2376), that docker://NAME/CONTAINER and compose://NAME/PROJECT/SERVICE consumers are restarted through. A write replaces the list; TLS material of endpoints left out is dropped. A tcp endpoint needs docker_tls unless its host is a loopback address. At most 16; names as role names, at most 64 bytes; addresses at most 256 bytes."},
			"docker_tls": {Type: framework.TypeMap, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
				Description: "TLS of the tcp endpoints of docker_hosts, by name: {\"web1\": {\"ca_pem\": CA that signed the engine's certificate (required), \"cert_pem\" and \"key_pem\": the client certificate and its unencrypted key, which an engine run with --tlsverify asks for}}, PEM, each at most 8 KiB. A write replaces every endpoint's material. key_pem is write-only: a read shows '(set)'."},
			"allowed_consumers": {Type: framework.TypeCommaStringSlice,
				Description: "Globs over the consumers a role may list, as KIND:NAME without options (docker:api-*, compose:cockpit/*); '*' matches any run of characters. Empty (default): no role may list a consumer. At most 64 items of 256 bytes."},
			"allowed_health_targets": {Type: framework.TypeCommaStringSlice, Default: backend.DefaultHealthTargets(),
				Description: "What a role's health checks may connect to: CIDRs and IP addresses (matching IP literals only), and globs over host:port (*.internal:443, 10.1.2.3:8080). Default: loopback (127.0.0.0/8, ::1), any port. At most 64 items of 256 bytes."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation:   &framework.PathOperation{Callback: b.handleConfigRead, Summary: "Read the mount's settings."},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.handleConfigWrite, Summary: "Change the mount's settings."},
		},
		HelpSynopsis:    "The mount's rotation settings.",
		HelpDescription: "Concurrency of scheduled rotations, history size, the backoff and failure limit of scheduled retries, the Docker engines of the consumers (docker_host, and the named endpoints of docker_hosts with their docker_tls), the webhook, and the allow-lists that bound which consumers and health targets roles may name.",
	}}
}

func configData(c backend.Config) map[string]interface{} {
	return map[string]interface{}{
		"max_parallel": c.MaxParallel, "history_limit": c.HistoryLimit,
		"retry_base": int64(c.RetryBase.Seconds()), "retry_max": int64(c.RetryMax.Seconds()), "max_failures": c.MaxFailures,
		"docker_host": c.DockerHost, "notify_url": c.ShownNotifyURL(),
		"docker_hosts": c.DockerHostItems(), "docker_tls": c.ShownDockerTLS(),
		"allowed_consumers": c.AllowedConsumers, "allowed_health_targets": c.AllowedHealthTargets,
	}
}

func (b *Backend) handleConfigRead(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return &logical.Response{Data: configData(b.engine.Config())}, nil
}

func (b *Backend) handleConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	var unknown []string
	for k := range req.Data {
		if _, ok := d.Schema[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return logical.ErrorResponse("%s: not a config field", strings.Join(unknown, ", ")), nil
	}
	c := b.engine.Config()
	if v, ok := d.GetOk("max_parallel"); ok {
		c.MaxParallel = v.(int)
	}
	if v, ok := d.GetOk("history_limit"); ok {
		c.HistoryLimit = v.(int)
	}
	if v, ok := d.GetOk("retry_base"); ok {
		c.RetryBase = secondsDuration(v.(int))
	}
	if v, ok := d.GetOk("retry_max"); ok {
		c.RetryMax = secondsDuration(v.(int))
	}
	if v, ok := d.GetOk("max_failures"); ok {
		c.MaxFailures = v.(int)
	}
	if v, ok := d.GetOk("docker_host"); ok {
		c.DockerHost = v.(string)
	}
	if v, ok := d.GetOk("docker_hosts"); ok {
		if err := c.SetDockerHosts(v.([]string)); err != nil {
			return respondErr("", err)
		}
	}
	if v, ok := d.GetOk("docker_tls"); ok {
		m, err := decodeDockerTLS(v.(map[string]interface{}))
		if err != nil {
			return logical.ErrorResponse("docker_tls: %s", err), nil
		}
		if err := c.SetDockerTLS(m); err != nil {
			return respondErr("", err)
		}
	}
	if v, ok := d.GetOk("notify_url"); ok {
		c.NotifyURL = v.(string)
	}
	if v, ok := d.GetOk("allowed_consumers"); ok {
		c.AllowedConsumers = v.([]string)
	}
	if v, ok := d.GetOk("allowed_health_targets"); ok {
		c.AllowedHealthTargets = v.([]string)
	}
	if err := b.engine.SetConfig(ctx, c); err != nil {
		return respondErr("", err)
	}
	return nil, nil
}

// decodeDockerTLS reads docker_tls, an object of endpoint names to objects holding only ca_pem,
// cert_pem and key_pem. Errors name the endpoint and the field, never a value.
func decodeDockerTLS(raw map[string]interface{}) (map[string]consumers.DockerTLS, error) {
	if len(raw) > consumers.MaxDockerHosts {
		return nil, fmt.Errorf("more than %d endpoints", consumers.MaxDockerHosts)
	}
	out := make(map[string]consumers.DockerTLS, len(raw))
	for name, v := range raw {
		if err := consumers.ValidateEndpointName(name); err != nil {
			return nil, err
		}
		obj, ok := v.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("%s: not an object with ca_pem, cert_pem and key_pem", name)
		}
		var t consumers.DockerTLS
		for k, fv := range obj {
			s, ok := fv.(string)
			if !ok {
				return nil, fmt.Errorf("%s: %s: not a string", name, boundedKey(k))
			}
			switch k {
			case "ca_pem":
				t.CA = s
			case "cert_pem":
				t.Cert = s
			case "key_pem":
				t.Key = s
			default:
				return nil, fmt.Errorf("%s: %s: not a field (ca_pem, cert_pem, key_pem)", name, boundedKey(k))
			}
		}
		out[name] = t
	}
	return out, nil
}

// boundedKey quotes a field name a request made up, if it is short.
func boundedKey(k string) string {
	if len(k) > 64 {
		return "a field name longer than 64 bytes"
	}
	return fmt.Sprintf("%q", k)
}
