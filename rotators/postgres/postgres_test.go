package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/xdg-go/scram"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

const goodURL = "postgres://{{username}}:{{password}}@127.0.0.1:5432/appdb?sslmode=disable"

var awkwardPasswords = []string{
	"plain",
	"p@ss:w/rd%20?#&=+",
	"with space and 'single' and \"double\" quotes",
	"100%",
	"%41%", // looks escaped already
	"back\\slash;semi,comma",
	"ünïcødé-密码",
	"+++",
	"{{password}}", // a placeholder in the value is not expanded again
	strings.Repeat("x", 200),
}

func TestRenderURLRoundTripsThroughPgx(t *testing.T) {
	templates := []string{
		goodURL,
		"postgresql://{{username}}:{{password}}@db.internal/appdb",
		"postgres://db.internal:6432/appdb?user={{username}}&password={{password}}&sslmode=disable",
	}
	for _, tmpl := range templates {
		for _, pw := range awkwardPasswords {
			for _, user := range []string{"app", "app@corp:x/y", "with space"} {
				rendered := renderURL(tmpl, user, pw)
				cfg, err := pgx.ParseConfig(rendered)
				if err != nil {
					t.Fatalf("template %q, user %q, password %q: %v", tmpl, user, pw, err)
				}
				if cfg.Password != pw || cfg.User != user {
					t.Fatalf("template %q: parsed user %q password %q, want %q %q", tmpl, cfg.User, cfg.Password, user, pw)
				}
				if cfg.Database != "appdb" {
					t.Fatalf("database = %q", cfg.Database)
				}
			}
		}
	}
	cfg, _ := pgx.ParseConfig(renderURL(goodURL, "app", "p@ss:w/rd"))
	if cfg.Host != "127.0.0.1" || cfg.Port != 5432 {
		t.Fatalf("host %s port %d: the password broke the URL", cfg.Host, cfg.Port)
	}
}

func TestEscapeUserinfo(t *testing.T) {
	if got := escapeUserinfo("a b+c@d:e/f%"); got != "a%20b%2Bc%40d%3Ae%2Ff%25" {
		t.Fatalf("escapeUserinfo = %q", got)
	}
}

func TestValidateURLTemplate(t *testing.T) {
	for _, ok := range []string{
		goodURL,
		"postgresql://{{username}}:{{password}}@h/db",
	} {
		if err := validateURLTemplate(ok); err != nil {
			t.Errorf("validateURLTemplate(%q) = %v", ok, err)
		}
	}
	for _, tc := range []struct{ tmpl, mention string }{
		{"", "connection_url: required"},
		{"postgres://{{username}}:secret@h/db", "must contain {{password}}"},
		{"postgres://fixed_user:{{password}}@h:5433/db", "must be exactly {{username}}:{{password}}"},
		{"mysql://{{username}}:{{password}}@h/db", "not a postgres://"},
		{"postgres:///db?password={{password}}", "not a postgres://"},
		{"postgres://{{username}}:{{password}}@h:notaport/db", "not a postgres://"},
		{"{{password}}", "not a postgres://"},
		{"postgres://{{username}}:{{password}}@h/db?sslmode=sometimes", "connection_url:"},
	} {
		err := validateURLTemplate(tc.tmpl)
		if err == nil || !strings.Contains(err.Error(), tc.mention) || !strings.HasPrefix(err.Error(), "connection_url") {
			t.Errorf("validateURLTemplate(%q) = %v, want an error about %q", tc.tmpl, err, tc.mention)
		}
	}
}

var verifierRe = regexp.MustCompile(`^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*):([A-Za-z0-9+/]+=*)$`)

type parsedVerifier struct {
	iters                      int
	salt, storedKey, serverKey []byte
}

func parseVerifier(t *testing.T, v string) parsedVerifier {
	t.Helper()
	m := verifierRe.FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("verifier %q is not SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>", v)
	}
	iters, _ := strconv.Atoi(m[1])
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("base64 %q: %v", s, err)
		}
		return b
	}
	p := parsedVerifier{iters: iters, salt: dec(m[2]), storedKey: dec(m[3]), serverKey: dec(m[4])}
	if p.iters != 4096 || len(p.salt) != 16 || len(p.storedKey) != 32 || len(p.serverKey) != 32 {
		t.Fatalf("verifier %q: iterations %d, salt %d bytes, keys %d/%d bytes", v, p.iters, len(p.salt), len(p.storedKey), len(p.serverKey))
	}
	return p
}

// expectedKeys computes RFC 5802 StoredKey and ServerKey from the password bytes PostgreSQL uses.
func expectedKeys(t *testing.T, password string, salt []byte, iters int) (stored, server []byte) {
	t.Helper()
	salted, err := pbkdf2.Key(sha256.New, password, salt, iters, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	sum := sha256.Sum256(clientKey)
	return sum[:], mac(salted, "Server Key")
}

func TestScramVerifier(t *testing.T) {
	for _, tc := range []struct {
		password string
		prepped  string // the bytes PostgreSQL hashes (SASLprep, or raw when SASLprep refuses)
	}{
		{"correct horse battery staple", "correct horse battery staple"},
		{"p@ss:w/rd%'\"", "p@ss:w/rd%'\""},
		{"ＦＵＬＬwidth", "FULLwidth"},           // SASLprep normalizes (NFKC)
		{"bell\u0007char", "bell\u0007char"}, // prohibited by SASLprep: raw bytes, like PostgreSQL
	} {
		v, err := scramVerifier(tc.password)
		if err != nil {
			t.Fatalf("scramVerifier(%q): %v", tc.password, err)
		}
		p := parseVerifier(t, v)
		stored, server := expectedKeys(t, tc.prepped, p.salt, p.iters)
		if !hmac.Equal(stored, p.storedKey) || !hmac.Equal(server, p.serverKey) {
			t.Fatalf("verifier for %q does not match the password", tc.password)
		}
		if strings.Contains(v, tc.password) {
			t.Fatal("the verifier contains the plaintext")
		}
	}
}

func TestScramVerifierSaltIsRandom(t *testing.T) {
	a, _ := scramVerifier("same")
	b, _ := scramVerifier("same")
	if a == b {
		t.Fatal("two verifiers of one password are equal: the salt is not random")
	}
}

// TestScramVerifierAuthenticates runs a SCRAM-SHA-256 exchange, as PostgreSQL would, against
// the stored verifier: the right password authenticates, a wrong one does not.
func TestScramVerifierAuthenticates(t *testing.T) {
	v, err := scramVerifier("s3cret pass/word")
	if err != nil {
		t.Fatal(err)
	}
	p := parseVerifier(t, v)
	lookup := func(string) (scram.StoredCredentials, error) {
		return scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(p.salt), Iters: p.iters},
			StoredKey:  p.storedKey, ServerKey: p.serverKey,
		}, nil
	}
	exchange := func(password string) bool {
		server, err := scram.SHA256.NewServer(lookup)
		if err != nil {
			t.Fatal(err)
		}
		client, err := scram.SHA256.NewClient("app", password, "")
		if err != nil {
			t.Fatal(err)
		}
		cc, sc := client.NewConversation(), server.NewConversation()
		msg := ""
		for !cc.Done() {
			if msg, err = cc.Step(msg); err != nil {
				return false
			}
			if cc.Done() {
				break
			}
			if msg, err = sc.Step(msg); err != nil {
				return false
			}
		}
		return cc.Valid() && sc.Valid()
	}
	if !exchange("s3cret pass/word") {
		t.Fatal("the right password does not authenticate against the verifier")
	}
	if exchange("s3cret pass/wore") {
		t.Fatal("a wrong password authenticates")
	}
}

func TestQuoteLiteral(t *testing.T) {
	if got := quoteLiteral("a'b''c"); got != "'a''b''''c'" {
		t.Fatalf("quoteLiteral = %s", got)
	}
}

func settings(kv map[string]interface{}) rotators.Settings {
	var s rotators.Settings
	for _, f := range (Kind{}).Fields() {
		if v, ok := kv[f.Name]; ok {
			s.Set(f, v)
		}
	}
	return s
}

func TestParseConfig(t *testing.T) {
	long := strings.Repeat("u", 64)
	for _, tc := range []struct {
		name    string
		kv      map[string]interface{}
		mention string // "" = valid
	}{
		{"single", map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app"}, ""},
		{"single explicit", map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app", FieldStrategy: "single"}, ""},
		{"63-byte name", map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: long[:63]}, ""},
		{"alternating", map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"blue", "green"}, FieldAdminRole: "admin"}, ""},
		{"no url", map[string]interface{}{FieldUsername: "app"}, "connection_url: required"},
		{"no password placeholder", map[string]interface{}{FieldConnectionURL: "postgres://{{username}}@h/db", FieldUsername: "app"}, "{{password}}"},
		{"no username", map[string]interface{}{FieldConnectionURL: goodURL}, "username: required"},
		{"64-byte name", map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: long}, "username: \"" + long + "\" is longer than PostgreSQL's 63-byte limit"},
		{"NUL", map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "a\x00b"}, "username: contains a NUL byte"},
		{"usernames with single", map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app", FieldUsernames: []string{"a", "b"}}, "usernames: only used with strategy=alternating"},
		{"username with alternating", map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsername: "app", FieldUsernames: []string{"a", "b"}, FieldAdminRole: "x"}, "username: not used with strategy=alternating"},
		{"one username", map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"a"}, FieldAdminRole: "x"}, "usernames: strategy=alternating needs exactly two different logins"},
		{"same usernames", map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"a", "a"}, FieldAdminRole: "x"}, "exactly two different"},
		{"three usernames", map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"a", "b", "c"}, FieldAdminRole: "x"}, "exactly two different"},
		{"long alternate", map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"a", long}, FieldAdminRole: "x"}, "usernames:"},
		{"alternating without admin", map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"a", "b"}}, "admin_role: strategy=alternating needs an admin_role"},
		{"bad strategy", map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app", FieldStrategy: "round-robin"}, `strategy: "round-robin" is not one of single, alternating`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (Kind{}).Bind(settings(tc.kv))
			switch {
			case tc.mention == "" && err != nil:
				t.Fatalf("Bind = %v, want valid", err)
			case tc.mention != "" && (err == nil || !strings.Contains(err.Error(), tc.mention)):
				t.Fatalf("Bind = %v, want an error about %q", err, tc.mention)
			}
		})
	}
}

func stubEnv(pw string) rotators.Env {
	return rotators.Env{Password: func(context.Context) (string, error) { return pw, nil }}
}

func TestGenerateAlternatesUsernames(t *testing.T) {
	ctx := context.Background()
	target, err := (Kind{}).Bind(settings(map[string]interface{}{
		FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"app_blue", "app_green"}, FieldAdminRole: "admin",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var cur rotators.Secret
	want := []string{"app_blue", "app_green", "app_blue", "app_green"}
	for i, w := range want {
		next, err := target.Generate(ctx, stubEnv("pw"+strconv.Itoa(i)), cur)
		if err != nil {
			t.Fatal(err)
		}
		if next[PartUsername] != w || next[PartPassword] != "pw"+strconv.Itoa(i) {
			t.Fatalf("rotation %d: %v, want user %s", i, next, w)
		}
		cur = next
	}

	single, _ := (Kind{}).Bind(settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app"}))
	for _, cur := range []rotators.Secret{nil, {PartUsername: "app", PartPassword: "x"}} {
		next, err := single.Generate(ctx, stubEnv("pw"), cur)
		if err != nil || next[PartUsername] != "app" || next[PartPassword] != "pw" {
			t.Fatalf("single: %v, %v", next, err)
		}
	}

	failing := rotators.Env{Password: func(context.Context) (string, error) { return "", errors.New("policy down") }}
	if _, err := single.Generate(ctx, failing, nil); err == nil || !strings.Contains(err.Error(), "policy down") {
		t.Fatalf("Generate with a failing generator = %v", err)
	}
}

func TestApplyFailsBeforeIOWithoutCredential(t *testing.T) {
	ctx := context.Background()
	to := rotators.Secret{PartUsername: "app", PartPassword: "new"}

	self, _ := (Kind{}).Bind(settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app"}))
	if err := self.Apply(ctx, stubEnv(""), nil, to); !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "no current password") {
		t.Fatalf("self-managed Apply without from = %v", err)
	}

	managed, _ := (Kind{}).Bind(settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app", FieldAdminRole: "admin"}))
	if err := managed.Apply(ctx, stubEnv(""), nil, to); !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), `admin_role: role "admin" has no current credential`) {
		t.Fatalf("Apply without the admin's credential = %v", err)
	}
	env := stubEnv("")
	env.Linked = map[string]rotators.Linked{FieldAdminRole: {Name: "admin"}}
	if err := managed.Apply(ctx, env, nil, to); !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "has no current credential") {
		t.Fatalf("Apply with an admin without a value = %v", err)
	}
}

func TestSettleTimeAndAccount(t *testing.T) {
	tg, err := (Kind{}).Bind(settings(map[string]interface{}{
		FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"app_blue", "app_green"}, FieldAdminRole: "admin",
	}))
	if err != nil {
		t.Fatal(err)
	}
	settler, ok := tg.(rotators.Settler)
	if !ok {
		t.Fatal("the postgres target is not a rotators.Settler")
	}
	// A statement the client gave up on started before it gave up, and the server cancels it
	// statement_timeout after its start: settling must take at least that long.
	if st := settler.SettleTime(); st <= defaultStatementTimeout {
		t.Fatalf("SettleTime %s does not exceed statement_timeout %s", st, defaultStatementTimeout)
	}
	accounts, ok := tg.(rotators.Accounts)
	if !ok {
		t.Fatal("the postgres target is not a rotators.Accounts")
	}
	for _, user := range []string{"app_blue", "app_green"} {
		if got := accounts.Account(rotators.Secret{PartUsername: user, PartPassword: "pw"}); got != user {
			t.Fatalf("Account = %q, want the login %q", got, user)
		}
	}
}

func TestAuthURL(t *testing.T) {
	tgt := &target{cfg: config{urlTemplate: "postgres://{{username}}:{{password}}@Admin-Host:5432/postgres?sslmode=require", usernames: []string{"app"}, adminRole: "admin"}}
	adminSettings := settings(map[string]interface{}{
		FieldConnectionURL:    "postgres://{{username}}:{{password}}@admin-host:5432/postgres",
		FieldUsername:         "root",
		FieldAllowedUsernames: []string{"app"},
		FieldRequireAuth:      AuthSCRAM + ",md5",
	})
	env := rotators.Env{Linked: map[string]rotators.Linked{FieldAdminRole: {
		Name: "admin", Settings: adminSettings, Current: rotators.Secret{PartUsername: "root", PartPassword: "r@@t"},
	}}}
	u, lim, err := tgt.authURL(env, rotators.Secret{PartUsername: "app", PartPassword: "old"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(u)
	if err != nil || cfg.User != "root" || cfg.Password != "r@@t" || cfg.Host != "admin-host" {
		t.Fatalf("admin URL %v: %+v", err, cfg)
	}
	if lim.auth != AuthSCRAM+",md5" {
		t.Fatalf("the admin's session takes require_auth %q, want the admin role's", lim.auth)
	}

	self := &target{cfg: config{urlTemplate: goodURL, usernames: []string{"app"}}}
	u, _, err = self.authURL(rotators.Env{}, rotators.Secret{PartUsername: "app", PartPassword: "old pw"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := pgx.ParseConfig(u); err != nil || cfg.User != "app" || cfg.Password != "old pw" {
		t.Fatalf("self URL %v: %+v", err, cfg)
	}
}

// TestGrantedBy: the rules an admin role's grant applies without asking PostgreSQL, checked at
// role write and again before every change.
func TestGrantedBy(t *testing.T) {
	const adminURL = "postgres://{{username}}:{{password}}@db.internal:5432/app?sslmode=verify-full"
	admin := func(allowed ...string) rotators.Linked {
		return rotators.Linked{Name: "pg-admin", Current: rotators.Secret{PartUsername: "oa_admin", PartPassword: "x"},
			Settings: settings(map[string]interface{}{FieldConnectionURL: adminURL, FieldUsername: "oa_admin", FieldAllowedUsernames: allowed})}
	}
	dep := func(url string, users ...string) config {
		return config{urlTemplate: url, usernames: users, adminRole: "pg-admin"}
	}
	for _, tc := range []struct {
		name  string
		c     config
		admin rotators.Linked
		want  string // "" = granted
	}{
		{"exact", dep(adminURL, "app"), admin("app"), ""},
		{"star", dep(adminURL, "anything"), admin("*"), ""},
		{"prefix", dep(adminURL, "team_a_x"), admin("team_a_*"), ""},
		{"suffix", dep(adminURL, "x_svc"), admin("*_svc"), ""},
		{"empty grants nothing", dep(adminURL, "app"), admin(), `username: login "app" is not in admin_role "pg-admin"'s allowed_usernames`},
		{"outside the glob", dep(adminURL, "team_b_x"), admin("team_a_*"), "allowed_usernames"},
		{"case matters", dep(adminURL, "APP"), admin("app"), "allowed_usernames"},
		{"own login even with star", dep(adminURL, "oa_admin"), admin("*"), `username: "oa_admin" is the login of admin_role "pg-admin" itself`},
		{"own login named in allowed", dep(adminURL, "oa_admin"), admin("oa_admin"), "itself"},
		{"alternating, one outside", dep(adminURL, "app_blue", "other"), admin("app_*"), `usernames: login "other" is not in`},
		{"alternating, admin's login", dep(adminURL, "app_blue", "oa_admin"), admin("*"), `usernames: "oa_admin" is the login`},
		{"other host", dep("postgres://{{username}}:{{password}}@evil.example:5432/app", "app"), admin("*"), "connection_url: must name admin_role \"pg-admin\"'s host and port (db.internal:5432)"},
		{"other port", dep("postgres://{{username}}:{{password}}@db.internal:5433/app", "app"), admin("*"), "connection_url: must name"},
		{"another database of the same server", dep("postgres://{{username}}:{{password}}@db.internal:5432/other", "app"), admin("*"), ""},
		{"host case and options may differ", dep("postgres://{{username}}:{{password}}@DB.internal:5432/app?application_name=x", "app"), admin("*"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.grantedBy(tc.admin)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestAdminOnlyFields: grants on a role that has an admin would grant nothing and are refused.
func TestAdminOnlyFields(t *testing.T) {
	base := map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app", FieldAdminRole: "pg-admin"}
	for field, v := range map[string]interface{}{FieldAllowedUsernames: []string{"*"}, FieldAllowPrivileged: true} {
		kv := map[string]interface{}{field: v}
		for k, x := range base {
			kv[k] = x
		}
		if _, err := (Kind{}).Bind(settings(kv)); err == nil || !strings.HasPrefix(err.Error(), field+": only an admin role") {
			t.Fatalf("%s on a dependent: %v", field, err)
		}
	}
	delete(base, FieldAdminRole)
	base[FieldAllowedUsernames] = []string{"*"}
	base[FieldAllowPrivileged] = true
	if _, err := (Kind{}).Bind(settings(base)); err != nil {
		t.Fatalf("grants on an admin role: %v", err)
	}
}

// TestInheritAndClaims: a dependent without connection_url takes its admin's; claims name the
// server and the login, never a password.
func TestInheritAndClaims(t *testing.T) {
	s := settings(map[string]interface{}{FieldUsername: "app", FieldAdminRole: "pg-admin"})
	if _, err := (Kind{}).Bind(s); err != nil {
		t.Fatalf("a dependent without connection_url does not bind before Inherit: %v", err)
	}
	(Kind{}).Inherit(&s, map[string]rotators.Linked{FieldAdminRole: {Settings: settings(map[string]interface{}{FieldConnectionURL: goodURL})}})
	if s.String(FieldConnectionURL) != goodURL {
		t.Fatalf("inherited %q", s.String(FieldConnectionURL))
	}
	claims := (Kind{}).Claims(s, nil)
	if len(claims) != 1 || claims[0].Field != FieldUsername || claims[0].Account != `login "app" at 127.0.0.1:5432` {
		t.Fatalf("claims %+v", claims)
	}
	// A dependent's claims follow its admin as it is now, not the URL it copied.
	moved := map[string]rotators.Linked{FieldAdminRole: {Settings: settings(map[string]interface{}{FieldConnectionURL: "postgres://{{username}}:{{password}}@DB.internal:5432/x"})}}
	if c := (Kind{}).Claims(s, moved); len(c) != 1 || c[0].Account != `login "app" at db.internal:5432` {
		t.Fatalf("claims after the admin moved %+v", c)
	}
	alt := settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"b", "g"}, FieldAdminRole: "a"})
	if c := (Kind{}).Claims(alt, nil); len(c) != 2 || c[1].Field != FieldUsernames || c[1].Account != `login "g" at 127.0.0.1:5432` {
		t.Fatalf("alternating claims %+v", c)
	}
	self := settings(map[string]interface{}{FieldUsername: "app"})
	if _, err := (Kind{}).Bind(self); err == nil || !strings.HasPrefix(err.Error(), "connection_url: required") {
		t.Fatalf("a self-managed role without connection_url: %v", err)
	}
}

func TestClassify(t *testing.T) {
	for _, code := range []string{"28P01", "28000"} {
		err := classify(&pgconn.PgError{Code: code, Message: "password authentication failed for user \"app\""})
		if !errors.Is(err, rotators.ErrRejected) || !strings.Contains(err.Error(), code) {
			t.Fatalf("classify(%s) = %v, want a rejection", code, err)
		}
	}
	for _, err := range []error{
		&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"},
		errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"),
		context.DeadlineExceeded,
	} {
		got := classify(err)
		if errors.Is(got, rotators.ErrRejected) {
			t.Fatalf("classify(%v) is a rejection; only authentication failures are", err)
		}
		if !errors.Is(got, err) || !strings.HasPrefix(got.Error(), "connect: ") {
			t.Fatalf("classify(%v) = %v", err, got)
		}
	}
	// A refused port, a timeout and a server that is not PostgreSQL read alike: the text is no
	// port-scan oracle.
	refused := classify(errors.New("dial tcp 10.0.0.1:22: connect: connection refused")).Error()
	for _, cause := range []error{context.DeadlineExceeded, errors.New("failed to receive message: unexpected EOF"), errors.New("tls: first record does not look like a TLS handshake")} {
		if got := classify(cause).Error(); got != refused || strings.Contains(got, "10.0.0.1") {
			t.Fatalf("classify(%v) = %q, want %q", cause, got, refused)
		}
	}
}

func TestImportSecret(t *testing.T) {
	k := Kind{}
	single := settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app"})
	if s, err := k.ImportSecret(single, map[string]string{}); s != nil || err != nil {
		t.Fatalf("nothing supplied: %v, %v", s, err)
	}
	if _, err := k.ImportSecret(single, map[string]string{FieldPassword: ""}); err == nil || !strings.HasPrefix(err.Error(), "password:") {
		t.Fatalf("empty password: %v", err)
	}
	s, err := k.ImportSecret(single, map[string]string{FieldPassword: "cur"})
	if err != nil || !s.Equal(rotators.Secret{PartUsername: "app", PartPassword: "cur"}) {
		t.Fatalf("import = %v, %v", s, err)
	}
	alt := settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldStrategy: StrategyAlternating, FieldUsernames: []string{"a", "b"}, FieldAdminRole: "x"})
	if _, err := k.ImportSecret(alt, map[string]string{FieldPassword: "cur"}); err == nil || !strings.Contains(err.Error(), "alternating") {
		t.Fatalf("import with alternating: %v", err)
	}
}

func TestNeedsImportAndDescribe(t *testing.T) {
	k := Kind{}
	self := settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app"})
	if why := k.NeedsImport(self); !strings.HasPrefix(why, "password: required") {
		t.Fatalf("NeedsImport(self-managed) = %q", why)
	}
	managed := settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "app", FieldAdminRole: "admin"})
	if why := k.NeedsImport(managed); why != "" {
		t.Fatalf("NeedsImport(admin-managed) = %q", why)
	}
	d := k.Describe(self, rotators.Secret{PartUsername: "app", PartPassword: "p w@x"})
	cfg, err := pgx.ParseConfig(d[FieldConnectionURL].(string))
	if err != nil || cfg.User != "app" || cfg.Password != "p w@x" {
		t.Fatalf("described URL %v: %v, %+v", d, err, cfg)
	}
}

func TestFields(t *testing.T) {
	seen := map[string]rotators.Field{}
	for _, f := range (Kind{}).Fields() {
		if f.Description == "" {
			t.Errorf("field %s has no description", f.Name)
		}
		seen[f.Name] = f
	}
	if seen[FieldPassword].Kind != rotators.FieldSecret {
		t.Fatal("password is not write-only")
	}
	if f := seen[FieldAdminRole]; f.Kind != rotators.FieldRoleRef || f.RefKind != "postgres" {
		t.Fatalf("admin_role = %+v", f)
	}
	if f := seen[FieldStrategy]; f.Default != StrategySingle || len(f.Allowed) != 2 {
		t.Fatalf("strategy = %+v", f)
	}
	if k, ok := rotators.Lookup("postgres"); !ok || k.Name() != "postgres" {
		t.Fatal("postgres kind not registered")
	}
}

// connection_url may not name files for pgx to read on the plugin's host, nor redirect the
// connection through a service file: such options are refused before pgx acts on them.
func TestConnectionURLRefusesFileAndServiceOptions(t *testing.T) {
	base := "postgres://{{username}}:{{password}}@127.0.0.1:5432/postgres?"
	for _, opt := range []string{"sslrootcert=/dev/zero", "sslkey=/etc/shadow", "sslcert=/tmp/x", "passfile=/root/.pgpass",
		"servicefile=/tmp/svc", "service=prod", "sslpassword=x", "options=-c%20statement_timeout%3D0",
		// Query options pgx would take over the URL's own parts: another host, a Unix socket
		// on Vault's host, a fixed credential that Verify would prove instead of the role's.
		"host=/var/run/postgresql", "host=10.0.0.9", "port=6432", "user=postgres", "password=fixed", "dbname=other"} {
		if err := validateURLTemplate(base + opt); err == nil || !strings.Contains(err.Error(), FieldConnectionURL) {
			t.Errorf("%s accepted (err %v)", opt, err)
		}
		if _, err := parseConn(renderURL(base+opt, "u", "p")); err == nil {
			t.Errorf("%s parsed for a session", opt)
		}
	}
	if err := validateURLTemplate(base + "sslmode=verify-full&connect_timeout=5&application_name=app"); err != nil {
		t.Fatal(err)
	}
}

// The placeholders must be the URL's user and password, and nothing else may carry them: a fixed
// credential would make Verify prove something other than the role's value.
func TestConnectionURLPlaceholdersAreTheCredential(t *testing.T) {
	for _, tmpl := range []string{
		"postgres://admin:{{password}}@127.0.0.1:5432/postgres",
		"postgres://{{username}}:fixed@127.0.0.1:5432/postgres?application_name={{password}}",
		"postgres://{{username}}:{{password}}@127.0.0.1:5432/postgres?application_name={{password}}",
		"postgres://{{username}}:{{password}}@%2Fvar%2Frun%2Fpostgresql/postgres",
	} {
		if err := validateURLTemplate(tmpl); err == nil {
			t.Errorf("%s accepted", tmpl)
		}
	}
}

// TestRestoreSkipsStaticGrant: putting back the value a login held before a failed rotation is
// not refused by a grant narrowed since (the login would stay on the value that failed).
func TestRestoreSkipsStaticGrant(t *testing.T) {
	tgt := &target{cfg: config{urlTemplate: goodURL, usernames: []string{"app"}, adminRole: "admin"}, lim: defaultLimits}
	env := rotators.Env{Linked: map[string]rotators.Linked{FieldAdminRole: {
		Name: "admin", Current: rotators.Secret{PartUsername: "root", PartPassword: "x"},
		Settings: settings(map[string]interface{}{FieldConnectionURL: goodURL, FieldUsername: "root"}), // grants nothing now
	}}}
	if _, _, err := tgt.authURL(env, nil); err == nil || !strings.Contains(err.Error(), "allowed_usernames") {
		t.Fatalf("a forward change through a narrowed grant: %v", err)
	}
	env.Restoring = true
	if _, _, err := tgt.authURL(env, nil); err != nil {
		t.Fatalf("a restore through a narrowed grant: %v", err)
	}
	if tgt.privilegeCheck(env, "app") != nil {
		t.Fatal("a restore asks PostgreSQL about privileges")
	}
}

// TestOneHostPerRole: libpq's fallback hosts would get the password when the first is down.
func TestOneHostPerRole(t *testing.T) {
	for _, u := range []string{
		"postgres://{{username}}:{{password}}@127.0.0.1:5432,evil.example:5432/postgres",
		"postgres://{{username}}:{{password}}@127.0.0.1,evil.example/postgres?target_session_attrs=standby",
	} {
		if err := validateURLTemplate(u); err == nil || !strings.Contains(err.Error(), "more than one host") {
			t.Fatalf("%s: %v", u, err)
		}
	}
}
