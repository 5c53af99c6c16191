package paths_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

// durationField is a duration the API takes, where it is written and read back, and its bounds.
type durationField struct {
	path, field string
	min, max    time.Duration
	zero        time.Duration // what a read shows after 0 was written (the default), or -1: 0 is refused
	with        map[string]interface{}
}

var durationFields = []durationField{
	{"roles/tok", "rotation_period", backend.MinRotationPeriod, backend.MaxRotationPeriod, -1, nil},
	{"roles/tok", "health_timeout", time.Second, backend.MaxHealthTimeout, backend.DefaultHealthTimeout, nil},
	{"roles/sign", "verification_ttl", 0, 8760 * time.Hour, 0, nil},
	// retry_base may not exceed retry_max: give the largest.
	{"config", "retry_base", time.Second, 24 * time.Hour, -1, map[string]interface{}{"retry_max": "24h"}},
}

// FuzzDurations: a duration as the API parses it (seconds, a Go duration, "Nd") is either
// refused with a 400 or stored as the whole seconds it says (within a second: the framework
// rounds through float64), inside the field's bounds; never a 500, never a wrapped number.
func FuzzDurations(f *testing.F) {
	for _, s := range []string{"1h", "5s", "4s", "43800h", "43801h", "0", "-1", "-5s", "1.5s", "500ms", "2d", "-0", "+1h",
		"9223372036854775807", "9223372037", "9223372036854775807ns", "106751d", "1e3", "0x10", "1h\n", " 1h", "--",
		"-oProxyCommand=", "\x00", "3600", "86400", "31536000", "31536001", "1.999999999s", "Inf", "NaN"} {
		for i := range durationFields {
			f.Add(uint8(i), s)
		}
	}
	e := newBackend(f)
	if _, st, err := e.do(f, logical.CreateOperation, "roles/tok", map[string]interface{}{"type": "token", "rotation_period": "1h"}); err != nil || st != http.StatusOK {
		f.Fatalf("create token role: %d %v", st, err)
	}
	if _, st, err := e.do(f, logical.CreateOperation, "roles/sign", map[string]interface{}{"type": "jwt", "algorithm": "ES256", "rotation_period": "1h"}); err != nil || st != http.StatusOK {
		f.Fatalf("create jwt role: %d %v", st, err)
	}
	f.Fuzz(func(t *testing.T, which uint8, v string) {
		df := durationFields[int(which)%len(durationFields)]
		before := readSeconds(t, e, df)
		data := map[string]interface{}{df.field: v}
		for k, x := range df.with {
			data[k] = x
		}
		_, status, err := e.do(t, logical.UpdateOperation, df.path, data)
		parsed, perr := parseutil.ParseDurationSecond(v)
		want := time.Duration(int64(parsed/time.Second)) * time.Second
		switch {
		case status == http.StatusBadRequest:
			if perr == nil && want >= df.min && want <= df.max && (want != 0 || df.zero >= 0) {
				t.Fatalf("%s=%q (%v) refused although in bounds", df.field, v, want)
			}
			if got := readSeconds(t, e, df); got != before {
				t.Fatalf("%s=%q refused but changed it: %v -> %v", df.field, v, before, got)
			}
			return
		case status != http.StatusOK || err != nil:
			t.Fatalf("%s=%q: status %d, %v", df.field, v, status, err)
		case perr != nil:
			t.Fatalf("%s=%q accepted, but it does not parse: %v", df.field, v, perr)
		}
		if want == 0 && df.zero >= 0 {
			parsed = df.zero
		}
		// The framework rounds through float64 seconds: within a second of what was said.
		if got := readSeconds(t, e, df); got-parsed >= time.Second || parsed-got >= time.Second || got < df.min || got > df.max {
			t.Fatalf("%s=%q accepted as %v, want %v within %v-%v", df.field, v, got, parsed, df.min, df.max)
		}
	})
}

// readSeconds reads a duration field back.
func readSeconds(t *testing.T, e *env, df durationField) time.Duration {
	t.Helper()
	resp, status, err := e.do(t, logical.ReadOperation, df.path, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("read %s: %d %v", df.path, status, err)
	}
	n, err := parseutil.ParseInt(resp.Data[df.field])
	if err != nil {
		t.Fatalf("read %s: %s = %v: %v", df.path, df.field, resp.Data[df.field], err)
	}
	return time.Duration(n) * time.Second
}
