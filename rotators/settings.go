package rotators

import "time"

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
