package integration

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// helpPurpose is a word of each path's purpose (README "Usage") that its help must contain, lower-cased. A path of the
// code that is not listed here must still answer a help text with its synopsis and its fields.
var helpPurpose = map[string]string{
	"config":      "settings",
	"roles/":      "roles",
	"roles/x":     "secret under rotation",
	"rotate/x":    "rotate",
	"creds/x":     "credential",
	"versions/x":  "kept versions",
	"rollback/x":  "kept version",
	"history/x":   "rotation record",
	"jwks/x":      "json web key set",
	"status":      "every",
	"rotate-many": "many roles",
	"jobs/":       "rotate-many jobs",
	"jobs/x":      "rotate-many job",
}

// kindFields are fields of each kind that the help of roles/x must list when the kind exists (README "Usage").
var kindFields = map[string][]string{
	"postgres": {"connection_url", "username", "password", "admin_role", "strategy", "usernames", "allowed_usernames", "allow_privileged", "require_auth"},
	"token":    {"format", "bytes", "prefix", "value"},
	"jwt":      {"algorithm", "key_bits", "verification_ttl"},
	"ssh":      {"hosts", "username", "key_type", "private_key", "host_keys"},
}

// helpParam matches a parameter of Vault's help text: 4 spaces, the name, its type in parentheses (which may contain
// some: "duration (sec)"), an empty line, and the description indented by 8 spaces.
var helpParam = regexp.MustCompile(`(?m)^ {4}([a-z_0-9]+) \((.*)\)\n\n((?: {8}.*\n?)*)`)

// TestPathHelp asks the real Vault for the help of every path of the plugin, as `vault path-help` does (GET with
// ?help=1), and checks that it is served by the right path, says what the path is for and lists its fields.
func TestPathHelp(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	ours := ourPaths(t)

	seen := map[string]bool{}
	for _, p := range ours {
		p := p
		seen[p.Request] = true
		t.Run(p.Request, func(t *testing.T) {
			h, err := s.Vault.Client.HelpWithContext(context.Background(), mount+"/"+p.Request)
			if err != nil {
				t.Fatalf("help %s: %v", p.Request, err)
			}
			text := h.Help
			if strings.TrimSpace(text) == "" {
				t.Fatal("empty help")
			}
			route := p.Path.Pattern
			if !strings.HasPrefix(route, "^") {
				route = "^" + route
			}
			if !strings.HasSuffix(route, "$") {
				route += "$"
			}
			if !strings.Contains(text, "Matching Route: "+route+"\n") {
				t.Errorf("the help is not the one of %s:\n%s", route, text)
			}
			if syn := strings.TrimSpace(p.Path.HelpSynopsis); syn == "" || !strings.Contains(text, syn) {
				t.Errorf("the help lacks the path's synopsis %q:\n%s", syn, text)
			}
			if desc := strings.TrimSpace(p.Path.HelpDescription); desc == "" || !strings.Contains(text, strings.SplitN(desc, "\n", 2)[0]) {
				t.Errorf("the help lacks the path's description:\n%s", text)
			}
			if word, ok := helpPurpose[p.Request]; ok && !strings.Contains(strings.ToLower(text), word) {
				t.Errorf("the help does not mention %q:\n%s", word, text)
			}

			params := map[string]string{}
			for _, m := range helpParam.FindAllStringSubmatch(text, -1) {
				params[m[1]] = m[3]
			}
			for name, f := range p.Path.Fields {
				desc, ok := params[name]
				if !ok {
					t.Errorf("the help does not list the field %s", name)
					continue
				}
				if strings.TrimSpace(desc) == "" || strings.TrimSpace(f.Description) == "" {
					t.Errorf("field %s has no description in the help", name)
				}
			}
			if p.Request == "roles/x" {
				checkRoleHelp(t, params)
			}
		})
	}
	for _, want := range []string{"config", "roles/", "roles/x", "rotate/x", "creds/x", "versions/x", "rollback/x", "history/x", "jwks/x"} {
		if !seen[want] {
			t.Errorf("the backend has no path for %s", want)
		}
	}
}

// checkRoleHelp asserts that the help of roles/x lists the common fields and those of every kind, and that type lists
// every kind.
func checkRoleHelp(t *testing.T, params map[string]string) {
	t.Helper()
	kinds := rotators.Names()
	if len(kinds) < 2 {
		t.Fatalf("only %d kinds registered: %v", len(kinds), kinds)
	}
	for _, k := range kinds {
		if !strings.Contains(params["type"], k) {
			t.Errorf("the help of type does not list the kind %s: %q", k, params["type"])
		}
	}
	want := []string{"type", "rotation_period", "rotation_schedule", "rotation_window", "auto_rotate", "versions_kept",
		"consumers", "health_checks", "health_timeout", "rollback_on_failure", "password_policy"}
	for _, k := range rotators.All() {
		wantFields, known := kindFields[k.Name()]
		if !known {
			t.Logf("kind %s: no expected fields listed in the test; checking the fields it declares", k.Name())
		}
		want = append(want, wantFields...)
		for _, f := range k.Fields() {
			want = append(want, f.Name)
			// The field's description names its kind, so that the flat list says which type it belongs to.
			if !strings.Contains(params[f.Name], "("+k.Name()+")") {
				t.Errorf("the help of %s does not say it is a field of %s: %q", f.Name, k.Name(), params[f.Name])
			}
		}
	}
	sort.Strings(want)
	for i, name := range want {
		if i > 0 && want[i-1] == name {
			continue
		}
		if _, ok := params[name]; !ok {
			t.Errorf("the help of roles/x does not list %s", name)
		}
	}
}
