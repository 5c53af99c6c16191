package rotators

import (
	"strings"
	"testing"
	"time"
)

// Field.Check applies the default bound of the field's kind unless the field sets its own, names
// the field, and never quotes the value.
func TestFieldCheck(t *testing.T) {
	secret := "s3cret-" + strings.Repeat("x", DefaultMaxSecret)
	cases := []struct {
		f       Field
		v       interface{}
		mention string // "" = accepted
	}{
		{Field{Name: "s", Kind: FieldString}, strings.Repeat("a", DefaultMaxLen), ""},
		{Field{Name: "s", Kind: FieldString}, strings.Repeat("a", DefaultMaxLen+1), "s: longer than 1024 bytes"},
		{Field{Name: "s", Kind: FieldString, MaxLen: 8}, "123456789", "s: longer than 8 bytes"},
		{Field{Name: "r", Kind: FieldRoleRef}, strings.Repeat("r", MaxRoleRefLen+1), "r: longer than 128 bytes"},
		{Field{Name: "k", Kind: FieldSecret}, secret[:DefaultMaxSecret], ""},
		{Field{Name: "k", Kind: FieldSecret}, secret, "k: longer than 8192 bytes"},
		{Field{Name: "l", Kind: FieldList}, make([]string, DefaultMaxItems), ""},
		{Field{Name: "l", Kind: FieldList}, make([]string, DefaultMaxItems+1), "l: more than 32 items"},
		{Field{Name: "l", Kind: FieldList, MaxItems: 2}, []string{"a", "b", "c"}, "l: more than 2 items"},
		{Field{Name: "l", Kind: FieldList, MaxLen: 3}, []string{"abc", "s3cret-"}, "l: item 2 is longer than 3 bytes"},
		{Field{Name: "n", Kind: FieldInt}, DefaultMaxInt, ""},
		{Field{Name: "n", Kind: FieldInt}, DefaultMaxInt + 1, "n: must be between 0 and 1048576"},
		{Field{Name: "n", Kind: FieldInt}, int64(-1), "n: must be between 0 and 1048576"},
		{Field{Name: "n", Kind: FieldInt, Min: 16, Max: 64}, 8, "n: must be between 16 and 64"},
		{Field{Name: "n", Kind: FieldInt, Min: 16, Max: 64}, int64(64), ""},
		{Field{Name: "d", Kind: FieldDuration}, int(DefaultMaxDuration / time.Second), ""},
		{Field{Name: "d", Kind: FieldDuration}, int(DefaultMaxDuration/time.Second) + 1, "d: must be between 0s and 8760h"},
		{Field{Name: "d", Kind: FieldDuration, Max: 90}, 91, "d: must be between 0s and 90s"},
		{Field{Name: "b", Kind: FieldBool}, true, ""},
	}
	for _, c := range cases {
		err := c.f.Check(c.v)
		switch {
		case c.mention == "" && err != nil:
			t.Errorf("%+v: %v", c.f, err)
		case c.mention != "" && (err == nil || !strings.Contains(err.Error(), c.mention)):
			t.Errorf("%+v: error %v, want %q", c.f, err, c.mention)
		case err != nil && strings.Contains(err.Error(), "s3cret-"):
			t.Errorf("%+v: error quotes the value", c.f)
		}
	}
}

func TestCheckValueSize(t *testing.T) {
	s := Secret{"value": ""}
	s["value"] = strings.Repeat("v", MaxValueBytes-ValueSize(s))
	if err := CheckValueSize("value", s); err != nil {
		t.Fatalf("a value of exactly MaxValueBytes: %v", err)
	}
	s["value"] = "s3cret-" + s["value"]
	err := CheckValueSize("value", s)
	if err == nil || !strings.HasPrefix(err.Error(), "value: the value takes 4359 bytes in storage") || strings.Contains(err.Error(), "s3cret-") {
		t.Fatalf("error %v", err)
	}
	// Storage is JSON: a character it escapes counts as what it takes there.
	if n := ValueSize(Secret{"v": "<"}); n != len(`{"v":"\u003c"}`) {
		t.Fatalf("ValueSize = %d", n)
	}
}
