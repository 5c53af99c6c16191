package integration

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/paths"
)

// documentedPaths are the mount's paths as Vault's OpenAPI generator names them (README "Usage"). The test also derives
// the list from the code (ourPaths), so that a path added later (status) is checked without editing this list.
var documentedPaths = []string{
	"/rotation/config",
	"/rotation/roles/",
	"/rotation/roles/{name}",
	"/rotation/rotate/{name}",
	"/rotation/creds/{name}",
	"/rotation/versions/{name}",
	"/rotation/rollback/{name}",
	"/rotation/history/{name}",
	"/rotation/jwks/{name}",
}

// ourPath is one framework.Path of the plugin, as the code declares it.
type ourPath struct {
	Path    *framework.Path
	OpenAPI string // e.g. /rotation/roles/{name}
	Request string // a concrete request path under the mount, e.g. roles/x
}

// capture is a path parameter as the plugin declares it: (?P<name>.+).
var capture = regexp.MustCompile(`\(\?P<(\w+)>\.\+\)`)

// ourPaths returns the plugin's paths from the code the plugin binary is built from (the same checkout).
func ourPaths(t *testing.T) []ourPath {
	t.Helper()
	b := paths.New(&logical.BackendConfig{})
	t.Cleanup(func() { b.Engine().Close() })
	var out []ourPath
	for _, p := range b.Backend.Paths {
		rel := strings.TrimSuffix(strings.TrimPrefix(p.Pattern, "^"), "$")
		rel = strings.ReplaceAll(rel, "/?", "/")
		api := capture.ReplaceAllString(rel, "{$1}")
		if strings.ContainsAny(api, `()?*+[]\^$|.`) {
			t.Fatalf("pattern %q: the test does not know how Vault names it in OpenAPI; extend ourPaths", p.Pattern)
		}
		out = append(out, ourPath{Path: p, OpenAPI: "/" + mount + "/" + api, Request: capture.ReplaceAllString(rel, "x")})
	}
	if len(out) < len(documentedPaths) {
		t.Fatalf("the backend has %d paths, fewer than the %d documented", len(out), len(documentedPaths))
	}
	return out
}

// TestOpenAPI reads the OpenAPI document of a real Vault with the plugin mounted, checks our paths and operation ids in
// it, and validates the whole document with @apidevtools/swagger-parser (scripts/openapi).
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed (scripts/install-deps.sh installs it): the OpenAPI document cannot be validated")
	}
	root := testenv.RepoRoot(t)
	validatorReady := make(chan error, 1)
	go func() { validatorReady <- installValidator(root) }() // meanwhile the stack starts

	s := newDevStack(t)
	resp, err := s.Vault.Client.Logical().ReadRawWithContext(context.Background(), "sys/internal/specs/openapi")
	if err != nil {
		t.Fatalf("sys/internal/specs/openapi: %v", err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("sys/internal/specs/openapi: status %d: %s", resp.StatusCode, raw)
	}
	var doc struct {
		OpenAPI    string                                       `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage        `json:"paths"`
		Components struct{ Schemas map[string]oasSchemaObject } `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the OpenAPI document is not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) < 100 {
		t.Fatalf("not Vault's OpenAPI 3 document: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}

	ours := ourPaths(t)
	want := map[string]*ourPath{}
	for i := range ours {
		want[ours[i].OpenAPI] = &ours[i]
	}
	for _, p := range documentedPaths {
		if want[p] == nil {
			t.Errorf("the backend has no path that Vault names %s", p)
		}
	}
	for p := range doc.Paths {
		if strings.HasPrefix(p, "/"+mount+"/") && want[p] == nil {
			t.Errorf("the document has %s, which is none of the backend's paths", p)
		}
	}

	// Every operation id in the document, to find ours and collisions.
	idCount := map[string]int{}
	for _, item := range doc.Paths {
		for method, rawOp := range item {
			if op, ok := operationOf(method, rawOp); ok && op.OperationID != "" {
				idCount[op.OperationID]++
			}
		}
	}

	for _, p := range ours {
		item, ok := doc.Paths[p.OpenAPI]
		if !ok {
			t.Errorf("%s (pattern %s) is not in the OpenAPI document", p.OpenAPI, p.Path.Pattern)
			continue
		}
		var desc string
		_ = json.Unmarshal(item["description"], &desc)
		if strings.TrimSpace(desc) == "" {
			t.Errorf("%s: no description", p.OpenAPI)
		}
		var unauth bool
		_ = json.Unmarshal(item["x-vault-unauthenticated"], &unauth)
		if wantUnauth := strings.HasPrefix(p.OpenAPI, "/"+mount+"/jwks/"); unauth != wantUnauth {
			t.Errorf("%s: x-vault-unauthenticated is %v, want %v", p.OpenAPI, unauth, wantUnauth)
		}
		ops := 0
		for method, rawOp := range item {
			op, ok := operationOf(method, rawOp)
			if !ok {
				continue
			}
			ops++
			switch {
			case !strings.HasPrefix(op.OperationID, operationPrefix):
				t.Errorf("%s %s: operationId %q does not start with %q", method, p.OpenAPI, op.OperationID, operationPrefix)
			case idCount[op.OperationID] != 1:
				t.Errorf("%s %s: operationId %q is used by %d operations of the document", method, p.OpenAPI, op.OperationID, idCount[op.OperationID])
			}
			if strings.TrimSpace(op.Summary) == "" {
				t.Errorf("%s %s: no summary", method, p.OpenAPI)
			}
		}
		if ops == 0 || ops < len(p.Path.Operations)-1 { // create and update are one POST
			t.Errorf("%s: %d operations in the document for %d in the code", p.OpenAPI, ops, len(p.Path.Operations))
		}
	}
	// Vault's own paths have duplicate ids (1.21: activation-flags-activate, plugins-runtimes-catalog-list-plugins-runtimes);
	// only ours must be unique, which the loop above checks. Logged so that a change is visible.
	var dup []string
	for id, n := range idCount {
		if n > 1 {
			dup = append(dup, id)
		}
	}
	sort.Strings(dup)
	t.Logf("operation ids Vault itself uses more than once: %v", dup)

	// Request bodies: every role field is documented, and write-only ones are marked sensitive.
	roleBody := doc.Components.Schemas["RotationWriteRoleRequest"]
	rotateBody := doc.Components.Schemas["RotationRotateRoleRequest"]
	for _, p := range ours {
		if p.OpenAPI != "/"+mount+"/roles/{name}" {
			continue
		}
		sensitive := 0
		for name, f := range p.Path.Fields {
			if name == "name" {
				continue
			}
			prop, ok := roleBody.Properties[name]
			if !ok {
				t.Errorf("role field %s is not in the RotationWriteRoleRequest schema", name)
				continue
			}
			if f.DisplayAttrs != nil && f.DisplayAttrs.Sensitive {
				sensitive++
				if !prop.DisplayAttrs.Sensitive {
					t.Errorf("role field %s is not marked sensitive in the OpenAPI document", name)
				}
			}
		}
		if sensitive < 2 { // postgres password, token value at least
			t.Errorf("only %d role fields are marked sensitive in the code", sensitive)
		}
	}
	if !rotateBody.Properties["value"].DisplayAttrs.Sensitive {
		t.Error("rotate's value is not marked sensitive in the OpenAPI document")
	}

	// The validator: the whole document as Vault serves it. (Vault 1.21's document is valid as a whole, so nothing is cut
	// out. Note that Vault's plugin transport drops the "$ref" of a plugin's request bodies, so they are {} in the
	// paths while the schemas are in components; that is valid OpenAPI and not caused by our paths.)
	if err := <-validatorReady; err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	specFile := filepath.Join(dir, "openapi.json")
	if err := os.WriteFile(specFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runValidator(root, node, specFile); err != nil {
		t.Fatalf("the OpenAPI document (with the plugin mounted) is not valid: %v\n%s", err, out)
	} else {
		t.Logf("validator: %s", strings.TrimSpace(out))
	}

	// The validator can fail: the same document with one of our operations broken must be rejected, naming it.
	var broken map[string]interface{}
	if err := json.Unmarshal(raw, &broken); err != nil {
		t.Fatal(err)
	}
	op := broken["paths"].(map[string]interface{})["/"+mount+"/rotate/{name}"].(map[string]interface{})["post"].(map[string]interface{})
	delete(op, "responses")
	brokenFile := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(brokenFile, []byte(testenv.JSONOf(t, broken)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runValidator(root, node, brokenFile); err == nil {
		t.Fatalf("the validator accepts an operation without responses:\n%s", out)
	} else if !strings.Contains(out, "rotate") {
		t.Fatalf("the validator rejects the broken document without naming the broken path:\n%s", out)
	}
}

const operationPrefix = "rotation-"

type oasDisplayAttrs struct {
	Sensitive bool `json:"sensitive"`
}

type oasSchemaObject struct {
	Properties map[string]struct {
		DisplayAttrs oasDisplayAttrs `json:"x-vault-displayAttrs"`
	} `json:"properties"`
}

type oasOperation struct {
	OperationID string `json:"operationId"`
	Summary     string `json:"summary"`
}

// operationOf decodes a path item's entry when it is an HTTP operation.
func operationOf(method string, raw json.RawMessage) (oasOperation, bool) {
	switch method {
	case "get", "put", "post", "delete", "patch", "head", "options", "trace":
	default:
		return oasOperation{}, false
	}
	var op oasOperation
	if err := json.Unmarshal(raw, &op); err != nil {
		return oasOperation{}, false
	}
	return op, true
}

var installOnce sync.Once
var installErr error

// installValidator runs `npm ci` in scripts/openapi when its node_modules is missing (once per test binary).
func installValidator(root string) error {
	installOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(root, "scripts", "openapi", "node_modules", "@apidevtools", "swagger-parser", "package.json")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--prefix", filepath.Join("scripts", "openapi"), "--no-audit", "--no-fund")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			installErr = &validatorError{what: "npm ci --prefix scripts/openapi", err: err, out: string(out)}
		}
	})
	return installErr
}

func runValidator(root, node, file string) (string, error) {
	cmd := exec.Command(node, filepath.Join("scripts", "openapi", "validate.js"), file)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type validatorError struct {
	what string
	err  error
	out  string
}

func (e *validatorError) Error() string { return e.what + ": " + e.err.Error() + "\n" + e.out }
