package rotators

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// testKind is a do-nothing kind registered only in this test binary, to exercise the registry.
type testKind struct{ name string }

func (k testKind) Name() string                                           { return k.name }
func (testKind) Fields() []Field                                          { return nil }
func (testKind) Bind(Settings) (Target, error)                            { return nil, nil }
func (testKind) ImportSecret(Settings, map[string]string) (Secret, error) { return nil, nil }
func (testKind) NeedsImport(Settings) string                              { return "" }
func (testKind) Describe(Settings, Secret) map[string]interface{}         { return nil }

var _ Kind = testKind{}

func init() {
	Register(testKind{name: "registry-test-b"})
	Register(testKind{name: "registry-test-a"})
}

func TestRegistry(t *testing.T) {
	k, ok := Lookup("registry-test-a")
	if !ok || k.Name() != "registry-test-a" {
		t.Fatalf("Lookup = %v, %v", k, ok)
	}
	if _, ok := Lookup("nope"); ok {
		t.Fatal("Lookup found an unregistered kind")
	}
	names := Names()
	if !reflect.DeepEqual(names, []string{"registry-test-a", "registry-test-b"}) {
		t.Fatalf("Names = %v, want sorted", names)
	}
	all := All()
	if len(all) != 2 || all[0].Name() != "registry-test-a" || all[1].Name() != "registry-test-b" {
		t.Fatalf("All = %v", all)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering a name twice did not panic")
		}
		if len(Names()) != 2 {
			t.Fatalf("registry changed by the failed register: %v", Names())
		}
	}()
	Register(testKind{name: "registry-test-a"})
}

func TestSecretCloneEqual(t *testing.T) {
	s := Secret{"username": "u", "password": "p"}
	c := s.Clone()
	if !c.Equal(s) || !s.Equal(c) {
		t.Fatal("clone differs")
	}
	c["password"] = "q"
	if s["password"] != "p" {
		t.Fatal("clone aliases the original")
	}
	if s.Equal(c) {
		t.Fatal("Equal ignores a changed part")
	}
	if s.Equal(Secret{"username": "u"}) || s.Equal(Secret{"username": "u", "pass": "p"}) {
		t.Fatal("Equal ignores missing or renamed parts")
	}
	if Secret(nil).Clone() != nil {
		t.Fatal("Clone(nil) != nil")
	}
	if !Secret(nil).Equal(Secret{}) {
		t.Fatal("nil and empty secrets differ")
	}
}

func TestSettingsSetGet(t *testing.T) {
	var s Settings
	s.Set(Field{Name: "url", Kind: FieldString}, "postgres://x")
	s.Set(Field{Name: "admin", Kind: FieldRoleRef}, "root")
	s.Set(Field{Name: "hosts", Kind: FieldList}, []string{"a:22", "b:22"})
	s.Set(Field{Name: "bits", Kind: FieldInt}, 2048)
	s.Set(Field{Name: "big", Kind: FieldInt}, int64(1)<<40)
	s.Set(Field{Name: "ttl", Kind: FieldDuration}, 90)
	s.Set(Field{Name: "insecure", Kind: FieldBool}, false)

	if s.String("url") != "postgres://x" || s.String("admin") != "root" {
		t.Fatalf("strings = %v", s.Strings)
	}
	if !reflect.DeepEqual(s.List("hosts"), []string{"a:22", "b:22"}) {
		t.Fatalf("list = %v", s.List("hosts"))
	}
	if s.Int("bits") != 2048 || s.Int("big") != 1<<40 {
		t.Fatalf("ints = %v", s.Ints)
	}
	if s.Duration("ttl") != 90*time.Second {
		t.Fatalf("duration = %v", s.Duration("ttl"))
	}
	// A false bool is a value, not an absence.
	if !s.Has("insecure") || s.Bool("insecure") {
		t.Fatal("false bool not kept")
	}
	for _, name := range []string{"url", "admin", "hosts", "bits", "ttl", "insecure"} {
		if !s.Has(name) {
			t.Errorf("Has(%q) = false", name)
		}
	}
	if s.Has("nope") || s.String("nope") != "" || s.List("nope") != nil || s.Int("nope") != 0 || s.Bool("nope") {
		t.Fatal("unset field has a value")
	}
	// Setting a string over a string replaces it.
	s.Set(Field{Name: "url", Kind: FieldString}, "postgres://y")
	if s.String("url") != "postgres://y" {
		t.Fatal("set did not replace")
	}

	s.Delete("hosts")
	s.Delete("bits")
	s.Delete("insecure")
	s.Delete("url")
	s.Delete("never-set")
	for _, name := range []string{"hosts", "bits", "insecure", "url"} {
		if s.Has(name) {
			t.Errorf("Has(%q) after Delete", name)
		}
	}
	var empty Settings
	empty.Delete("x") // nil maps: no panic
	if empty.Has("x") {
		t.Fatal("empty settings have a field")
	}
}

func TestSettingsPublic(t *testing.T) {
	var s Settings
	s.Set(Field{Name: "url", Kind: FieldString}, "u")
	s.Set(Field{Name: "hosts", Kind: FieldList}, []string{"h"})
	s.Set(Field{Name: "bits", Kind: FieldInt}, 3)
	s.Set(Field{Name: "on", Kind: FieldBool}, true)
	want := map[string]interface{}{"url": "u", "hosts": []string{"h"}, "bits": int64(3), "on": true}
	if got := s.Public(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Public = %#v, want %#v", got, want)
	}
	if got := (Settings{}).Public(); got == nil || len(got) != 0 {
		t.Fatalf("empty Public = %#v", got)
	}
}

func TestSettingsJSONRoundTrip(t *testing.T) {
	var s Settings
	s.Set(Field{Name: "url", Kind: FieldString}, "postgres://{{username}}:{{password}}@h/db")
	s.Set(Field{Name: "hosts", Kind: FieldList}, []string{"a", "b"})
	s.Set(Field{Name: "bits", Kind: FieldInt}, int64(4096))
	s.Set(Field{Name: "ttl", Kind: FieldDuration}, 3600)
	s.Set(Field{Name: "flag", Kind: FieldBool}, false)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Settings
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Fatalf("round trip: %+v, want %+v", back, s)
	}
	if back.Duration("ttl") != time.Hour || !back.Has("flag") {
		t.Fatalf("decoded = %+v", back)
	}
	// Empty settings encode to an empty object.
	b, _ = json.Marshal(Settings{})
	if string(b) != "{}" {
		t.Fatalf("empty settings = %s", b)
	}
}
