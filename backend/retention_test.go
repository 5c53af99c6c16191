package backend

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	// The real jwt kind: its retired keys stay needed until verification_ttl has passed.
	_ "github.com/vault-plugin-rotation/vault-plugin-rotation/rotators/jwt"
)

// jwtRole creates a jwt role (ES256: fast to generate) whose first key is generated at create.
func jwtRole(t *testing.T, te *testEnv, name string, kept int, ttl time.Duration) {
	t.Helper()
	res, err := te.e.WriteRole(context.Background(), name, RoleInput{
		Type: "jwt", RotationPeriod: ptr(24 * time.Hour), VersionsKept: ptr(kept),
		Settings: map[string]interface{}{"algorithm": "ES256", "verification_ttl": int(ttl / time.Second)},
	})
	if err != nil || res.Rotation == nil || !res.Rotation.Success {
		t.Fatalf("create jwt role: %+v %v", res, err)
	}
}

func rotateOK(t *testing.T, te *testEnv, name string) {
	t.Helper()
	if out, err := te.e.Rotate(context.Background(), name); err != nil || !out.Success {
		t.Fatalf("rotate %s: %+v %v", name, out, err)
	}
}

// publishedKids are the kids of the role's JWK Set, sorted.
func publishedKids(t *testing.T, te *testEnv, name string) []string {
	t.Helper()
	doc, err := te.e.KeySet(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	sort.Strings(kids)
	return kids
}

// keptKids are the kids of the role's kept versions, newest first.
func keptKids(t *testing.T, te *testEnv, name string) []string {
	t.Helper()
	var kids []string
	for _, v := range te.state(t, name).Versions {
		kids = append(kids, v.Secret["kid"])
	}
	return kids
}

func sorted(list []string) []string {
	out := append([]string(nil), list...)
	sort.Strings(out)
	return out
}

// versions_kept does not drop a retired JWT key whose tokens may still be in use: three
// rotations inside verification_ttl keep (and publish) every retired key although
// versions_kept=2; once the ttl has passed, the next rotation trims them.
func TestJWTRetiredKeysKeptUntilVerificationTTL(t *testing.T) {
	te := newEnv(t)
	jwtRole(t, te, "sign", 2, time.Hour)
	for i := 0; i < 3; i++ {
		te.clock.Advance(time.Minute)
		rotateOK(t, te, "sign")
	}
	kept := keptKids(t, te, "sign")
	if len(kept) != 4 {
		t.Fatalf("kept %d versions, want all 4: the retired keys are inside verification_ttl", len(kept))
	}
	if got, want := strings.Join(publishedKids(t, te, "sign"), ","), strings.Join(sorted(kept), ","); got != want {
		t.Fatalf("published kids %s, want every kept key %s", got, want)
	}

	// Past the ttl of every retired key but the one the next rotation retires.
	te.clock.Advance(2 * time.Hour)
	rotateOK(t, te, "sign")
	now := keptKids(t, te, "sign")
	if len(now) != 2 || now[1] != kept[0] {
		t.Fatalf("kept %v after the ttl, want the new key and the one it retired (%s)", now, kept[0])
	}
	if got, want := strings.Join(publishedKids(t, te, "sign"), ","), strings.Join(sorted(now), ","); got != want {
		t.Fatalf("published kids %s, want %s", got, want)
	}
}

// Lowering versions_kept by a role write keeps the retired keys still inside their window too.
func TestJWTRoleWriteKeepsRetiredKeysInWindow(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	jwtRole(t, te, "sign", 5, time.Hour)
	for i := 0; i < 3; i++ {
		te.clock.Advance(time.Minute)
		rotateOK(t, te, "sign")
	}
	if _, err := te.e.WriteRole(ctx, "sign", RoleInput{VersionsKept: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	if n := len(te.state(t, "sign").Versions); n != 4 {
		t.Fatalf("kept %d versions after versions_kept=2, want 4", n)
	}
	// With verification_ttl=0 nothing is needed once retired: the write trims to versions_kept.
	if _, err := te.e.WriteRole(ctx, "sign", RoleInput{Settings: map[string]interface{}{"verification_ttl": 0}}); err != nil {
		t.Fatal(err)
	}
	if n := len(te.state(t, "sign").Versions); n != 2 {
		t.Fatalf("kept %d versions with verification_ttl=0, want 2", n)
	}
}

// Retention is bounded by the engine's MaxVersionsKept, however long the ttl.
func TestJWTRetentionBoundedByMaxVersionsKept(t *testing.T) {
	te := newEnv(t)
	jwtRole(t, te, "sign", 2, 24*time.Hour)
	for i := 0; i < MaxVersionsKept+5; i++ {
		te.clock.Advance(time.Second)
		rotateOK(t, te, "sign")
	}
	if n := len(te.state(t, "sign").Versions); n != MaxVersionsKept {
		t.Fatalf("kept %d versions, want the engine's bound %d", n, MaxVersionsKept)
	}
}

// A kind without retention keeps exactly versions_kept, however recent the dropped values.
func TestTrimWithoutRetention(t *testing.T) {
	te := newEnv(t)
	te.importRole(t, "plain", "pw-plain-0", func(in *RoleInput) { in.VersionsKept = ptr(2) })
	for i := 0; i < 3; i++ {
		rotateOK(t, te, "plain")
	}
	if n := len(te.state(t, "plain").Versions); n != 2 {
		t.Fatalf("kept %d versions, want 2", n)
	}
}
