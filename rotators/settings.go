package rotators

import (
	"encoding/json"
	"fmt"
	"time"
)

// FieldKind says how a role field is decoded and stored.
type FieldKind int

const (
	FieldString FieldKind = iota
	FieldList             // comma-separated or repeated: a list of strings
	FieldInt
	FieldBool
	FieldDuration // seconds, or a Go duration string
	FieldRoleRef  // the name of another role, of kind Field.RefKind
	FieldSecret   // write-only: handed to ImportSecret, never stored in settings nor returned
)

// Field is one type-specific role field.
type Field struct {
	Name        string
	Kind        FieldKind
	Description string
	// RefKind is the kind a FieldRoleRef must point at.
	RefKind string
	// Default is shown in help and applied when the field is absent at create.
	Default interface{}
	// Allowed lists the accepted values of a FieldString ("" = any).
	Allowed []string

	// Bounds of the value, checked by Check before the kind sees it; zero means the default of
	// the field's kind (docs/decisions.md, "Every input is bounded").
	//
	// MaxLen bounds a FieldString, FieldRoleRef or FieldSecret value, and each item of a
	// FieldList, in bytes.
	MaxLen int
	// MaxItems bounds the items of a FieldList.
	MaxItems int
	// Min and Max bound a FieldInt, or a FieldDuration in seconds; when Max is zero the range is
	// 0 to DefaultMaxInt, or 0 to DefaultMaxDuration.
	Min, Max int64
}

// Default bounds of a field's value by kind: every input is bounded even where its kind does not
// say, so that a role stays far inside one Vault storage entry (docs/decisions.md, "Every input
// is bounded").
const (
	DefaultMaxLen      = 1024    // FieldString, and each item of a FieldList
	DefaultMaxItems    = 32      // FieldList
	DefaultMaxSecret   = 8 << 10 // FieldSecret: the raw input (a PEM key), checked before it is parsed
	MaxRoleRefLen      = 128     // FieldRoleRef: a role name
	DefaultMaxInt      = 1 << 20
	DefaultMaxDuration = 365 * 24 * time.Hour
)

// MaxValueBytes bounds one value of a secret as it is stored: the JSON of its parts. With at most
// 100 kept versions (the engine's limit), a role's state stays under 440 KiB, less than half of
// the 1 MiB that Vault's integrated storage takes in one entry by default. The largest value the
// engine generates, an RSA-4096 key pair, takes about 4,300 bytes (docs/decisions.md, "Every input
// is bounded").
const MaxValueBytes = 4352

// ValueSize is the number of bytes a value takes in storage.
func ValueSize(s Secret) int {
	b, err := json.Marshal(s)
	if err != nil {
		return 0 // a map of strings always encodes
	}
	return len(b)
}

// CheckValueSize refuses a value that takes more than MaxValueBytes in storage, naming the field
// it came from and never quoting it.
func CheckValueSize(field string, s Secret) error {
	if n := ValueSize(s); n > MaxValueBytes {
		return fmt.Errorf("%s: the value takes %d bytes in storage, more than the %d a kept value may take", field, n, MaxValueBytes)
	}
	return nil
}

// Limits returns the field's bounds with the defaults of its kind filled in: the length bound
// (strings, list items, secrets), the item bound (lists), and the range (ints, durations in
// seconds).
func (f Field) Limits() (maxLen, maxItems int, min, max int64) {
	maxLen, maxItems, min, max = f.MaxLen, f.MaxItems, f.Min, f.Max
	if maxLen == 0 {
		switch f.Kind {
		case FieldSecret:
			maxLen = DefaultMaxSecret
		case FieldRoleRef:
			maxLen = MaxRoleRefLen
		default:
			maxLen = DefaultMaxLen
		}
	}
	if maxItems == 0 {
		maxItems = DefaultMaxItems
	}
	if max == 0 {
		min, max = 0, DefaultMaxInt
		if f.Kind == FieldDuration {
			max = int64(DefaultMaxDuration / time.Second)
		}
	}
	return maxLen, maxItems, min, max
}

// Check applies the field's bounds to a decoded value (string, []string, int or int64, seconds
// for a duration). Its errors name the field and never quote the value, which may be a secret.
func (f Field) Check(v interface{}) error {
	maxLen, maxItems, min, max := f.Limits()
	switch f.Kind {
	case FieldString, FieldRoleRef, FieldSecret:
		if s, _ := v.(string); len(s) > maxLen {
			return fmt.Errorf("%s: longer than %d bytes", f.Name, maxLen)
		}
	case FieldList:
		list, _ := v.([]string)
		if len(list) > maxItems {
			return fmt.Errorf("%s: more than %d items", f.Name, maxItems)
		}
		for i, item := range list {
			if len(item) > maxLen {
				return fmt.Errorf("%s: item %d is longer than %d bytes", f.Name, i+1, maxLen)
			}
		}
	case FieldInt, FieldDuration:
		var n int64
		switch x := v.(type) {
		case int:
			n = int64(x)
		case int64:
			n = x
		default:
			return fmt.Errorf("%s: not a number", f.Name)
		}
		if n < min || n > max {
			if f.Kind == FieldDuration {
				return fmt.Errorf("%s: must be between %s and %s", f.Name, seconds(min), seconds(max))
			}
			return fmt.Errorf("%s: must be between %d and %d", f.Name, min, max)
		}
	}
	return nil
}

// seconds renders a bound in seconds the way the API accepts it back (e.g. 8760h, 30s).
func seconds(n int64) string {
	switch d := time.Duration(n) * time.Second; {
	case n == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", n/3600)
	default:
		return fmt.Sprintf("%ds", n)
	}
}

// Settings are a role's type-specific fields after decoding, kept by type so that stored data
// decodes into typed maps without assertions.
type Settings struct {
	Strings map[string]string   `json:"strings,omitempty"`
	Lists   map[string][]string `json:"lists,omitempty"`
	Ints    map[string]int64    `json:"ints,omitempty"`
	Bools   map[string]bool     `json:"bools,omitempty"`
}

// String returns a string or role-reference field ("" when unset).
func (s Settings) String(name string) string { return s.Strings[name] }

// List returns a list field (nil when unset).
func (s Settings) List(name string) []string { return s.Lists[name] }

// Int returns an int field (0 when unset).
func (s Settings) Int(name string) int64 { return s.Ints[name] }

// Bool returns a bool field (false when unset).
func (s Settings) Bool(name string) bool { return s.Bools[name] }

// Duration returns a duration field (0 when unset).
func (s Settings) Duration(name string) time.Duration {
	return time.Duration(s.Ints[name]) * time.Second
}

// Has reports whether a field holds a value.
func (s Settings) Has(name string) bool {
	if _, ok := s.Strings[name]; ok {
		return true
	}
	if _, ok := s.Lists[name]; ok {
		return true
	}
	if _, ok := s.Ints[name]; ok {
		return true
	}
	_, ok := s.Bools[name]
	return ok
}

// Set stores a decoded value under the map its field kind uses.
func (s *Settings) Set(f Field, v interface{}) {
	switch f.Kind {
	case FieldString, FieldRoleRef:
		if s.Strings == nil {
			s.Strings = map[string]string{}
		}
		s.Strings[f.Name], _ = v.(string)
	case FieldList:
		if s.Lists == nil {
			s.Lists = map[string][]string{}
		}
		s.Lists[f.Name], _ = v.([]string)
	case FieldInt, FieldDuration:
		if s.Ints == nil {
			s.Ints = map[string]int64{}
		}
		switch n := v.(type) {
		case int:
			s.Ints[f.Name] = int64(n)
		case int64:
			s.Ints[f.Name] = n
		}
	case FieldBool:
		if s.Bools == nil {
			s.Bools = map[string]bool{}
		}
		s.Bools[f.Name], _ = v.(bool)
	}
}

// Delete removes a field's value.
func (s *Settings) Delete(name string) {
	delete(s.Strings, name)
	delete(s.Lists, name)
	delete(s.Ints, name)
	delete(s.Bools, name)
}

// Public returns the settings as a flat map for a role read.
func (s Settings) Public() map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range s.Strings {
		out[k] = v
	}
	for k, v := range s.Lists {
		out[k] = v
	}
	for k, v := range s.Ints {
		out[k] = v
	}
	for k, v := range s.Bools {
		out[k] = v
	}
	return out
}
