package backend

import (
	"strings"
	"testing"
	"time"
)

// Fuzz targets for the user input the engine parses itself (scripts/fuzz.sh runs each for a
// bounded time; their seeds and testdata/fuzz corpus run in every go test).

// FuzzValidateRoleName: an accepted name can never escape its storage key or URL path.
func FuzzValidateRoleName(f *testing.F) {
	for _, s := range []string{"app", "a.b-c_d", "..", "a/../b", "-oProxyCommand=x", "--", ".hidden", "a\nb", "a\x00b",
		"é", strings.Repeat("a", maxRoleNameLen), strings.Repeat("a", maxRoleNameLen+1), "a..b", "a%2F..%2Fb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateRoleName(name) != nil {
			return
		}
		switch {
		case strings.Contains(name, ".."), strings.ContainsAny(name, "/\\%?#\x00"), len(name) > maxRoleNameLen:
			t.Fatalf("accepted %q", name)
		case !isASCIIAlnum(name[0]):
			t.Fatalf("accepted %q, which starts with %q", name, name[0])
		}
		for i := 0; i < len(name); i++ {
			if c := name[i]; !isASCIIAlnum(c) && !strings.ContainsRune("_.-", rune(c)) {
				t.Fatalf("accepted %q holding %q", name, c)
			}
		}
	})
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// FuzzRotationSchedule: a schedule the role write accepts is a 5-field cron of at most 128
// bytes that fires, at a later minute, from any time.
func FuzzRotationSchedule(f *testing.F) {
	for _, s := range []string{"0 0 1 1,4,7,10 *", "*/5 * * * *", "0 0 30 2 *", "0 0 31 4 *", "0 0 29 2 *",
		"@every 1s", "@yearly", "TZ=Europe/Berlin 0 0 * * *", "CRON_TZ=UTC 0 0 * * *", "0 0 * * * *",
		"*/0 * * * *", "0-59/60 * * * *", "1-0 * * * *", "0 0 1 JAN-DEC MON-SUN", "0 0 ? * *",
		"- - - - -", "--", "-oProxyCommand=x * * * *", "0 0 * * *\n0 0 * * *", "0\x000 * * * *",
		strings.Repeat("1,", 70) + " * * * *", "4294967296 * * * *", "0 0 L * *"} {
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, expr string, at int64) {
		r := &Role{RotationSchedule: expr, VersionsKept: DefaultVersionsKept}
		if r.validateSchedule() != nil {
			return
		}
		if len(expr) > maxScheduleLen || len(strings.Fields(expr)) != 5 {
			t.Fatalf("accepted %q", expr)
		}
		sched, err := parseSchedule(expr)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", expr, err)
		}
		// From any time in 2000-2100 the next firing is later, on a whole minute.
		from := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(uint64(at)%(100*366*24*3600)) * time.Second)
		next := sched.Next(from)
		if !next.IsZero() && (!next.After(from) || next.Second() != 0 || next.Nanosecond() != 0) {
			t.Fatalf("%q: next after %v is %v", expr, from, next)
		}
	})
}

// FuzzNotifyURL: notify_url is write-only; neither a config read nor a refusal shows any of its
// user info, path, query or fragment, whatever surrounds them.
func FuzzNotifyURL(f *testing.F) {
	for _, s := range [][3]string{{"https", "hooks.example:8443", ""}, {"http", "127.0.0.1", "x"}, {"ftp", "h", ""},
		{"https", "", ""}, {"https", "[::1", ""}, {"https", "h%zz", ""}, {"-oProxyCommand=", "--", "\n"}, {"https", "h\x00", "\x00"},
		{"https", "h/", "#"}, {"https", "a@b", "?"}, {"HTTPS", "h", ""}} {
		f.Add(s[0], s[1], s[2])
	}
	const mark = "Zx9secret"
	f.Fuzz(func(t *testing.T, scheme, host, rest string) {
		if strings.Contains(scheme+host+rest, mark[:3]) {
			return
		}
		raw := scheme + "://" + mark + ":" + mark + "@" + host + "/" + mark + rest + "?token=" + mark + "#" + mark
		c := DefaultConfig()
		c.NotifyURL = raw
		if err := c.Validate(); err != nil {
			if strings.Contains(err.Error(), mark) {
				t.Fatalf("the refusal shows a secret part: %v", err)
			}
			return
		}
		if shown := c.ShownNotifyURL(); strings.Contains(shown, mark) {
			t.Fatalf("a config read shows %q", shown)
		}
	})
}
