package postgres

import (
	"strings"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// secretMark is in every fuzzed password and in the seed templates' query: no error may hold it.
const secretMark = "Zx9secret"

// FuzzConnectionURL: for a template validateURLTemplate accepts, rendering any login and
// password (that PostgreSQL can hold) and parsing the result gives back exactly those bytes and the template's own host,
// port and database; no error, of the template check or of a parse, quotes a password.
func FuzzConnectionURL(f *testing.F) {
	const std = "postgres://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable"
	for _, s := range [][3]string{
		{std, "app", "pw"},
		{"postgresql://{{username}}:{{password}}@[::1]:5432/db?application_name=x&connect_timeout=5", "a b", "p@ss:w/rd?#%"},
		{"postgres://{{username}}:{{password}}@h/db?sslrootcert=/etc/passwd", "u", ""},
		{"postgres://{{username}}:{{password}}@h/db?password=" + secretMark, "u", "x"},
		{"postgres://{{username}}:" + secretMark + "@h/db", "u", "x"},
		{"postgres://{{username}}:{{password}}@/tmp/sock/db", "u", "p"},
		{"postgres://{{username}}:{{password}}@h%2Ftmp/db", "u", "p"},
		{"postgres://{{username}}:{{password}}@h:99999/db", "-oProxyCommand=x", "--"},
		{"postgres://{{username}}:{{password}}@h,i:5432/db", "u\n", "p\r\n"},
		{"postgres://{{username}}:{{password}}@h/db?host=evil", "u", "p\x00"},
		{"postgres://{{password}}:{{username}}@h/db", "u", "p"},
		{"host=h user={{username}} password={{password}}", "u", "p"},
		{std, "é", "\xff\xfe"},
		{std, strings.Repeat("u", 63), strings.Repeat("p", 1024)},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, tmpl, user, pass string) {
		pass = secretMark + pass
		if err := validateURLTemplate(tmpl); err != nil {
			if strings.Contains(err.Error(), secretMark) {
				t.Fatalf("the template error quotes it: %v", err)
			}
			return
		}
		if validateUsername(FieldUsername, user) != nil {
			return
		}
		if validatePassword(pass) != nil {
			// Refused at import and generation: it could never log in.
			if _, err := (Kind{}).ImportSecret(rotators.Settings{}, map[string]string{FieldPassword: pass}); err == nil {
				t.Fatalf("imported a password validatePassword refuses")
			}
			return
		}
		ref, err := parseConn(renderURL(tmpl, "u", "p"))
		if err != nil {
			t.Fatalf("an accepted template does not parse: %v", err)
		}
		cfg, err := parseConn(renderURL(tmpl, user, pass))
		if err != nil {
			if strings.Contains(err.Error(), secretMark) {
				t.Fatalf("the parse error quotes the password: %v", err)
			}
			t.Fatalf("login %q and a password of %d bytes do not parse in an accepted template: %v", user, len(pass), err)
		}
		if cfg.User != user || cfg.Password != pass {
			t.Fatalf("rendered %q / %q, parsed back %q / %q", user, pass, cfg.User, cfg.Password)
		}
		if cfg.Host != ref.Host || cfg.Port != ref.Port || cfg.Database != ref.Database || len(cfg.Fallbacks) != len(ref.Fallbacks) {
			t.Fatalf("the credential moved the target: %s:%d/%s, want %s:%d/%s", cfg.Host, cfg.Port, cfg.Database, ref.Host, ref.Port, ref.Database)
		}
	})
}
