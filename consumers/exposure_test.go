package consumers

import (
	"net/url"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
)

func TestNeedlesScan(t *testing.T) {
	const pw = "Xk9$pL2/q@w#7"
	var n Needles
	n.Add(pw, 3)
	n.Add("short", 4) // too short to look for
	info := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{Name: "/api-1"},
		Config: &container.Config{
			Env:        []string{"PATH=/bin", "DB_PASSWORD=" + pw, "DATABASE_URL=postgres://app:" + url.QueryEscape(pw) + "@db:5432/app", "NOTE=short"},
			Entrypoint: []string{"/app"},
			Cmd:        []string{"--db-password", pw},
			Labels:     map[string]string{"dsn": "key=" + pw + ";", "glued": "x" + pw + "y", "other": "nothing"},
		},
	}
	found := n.Scan(info)
	var where []string
	for _, f := range found {
		if f.Container != "api-1" || f.Tag != 3 {
			t.Fatalf("finding %+v", f)
		}
		where = append(where, f.Where)
		if strings.Contains(f.Where, pw) {
			t.Fatal("a finding quotes the value")
		}
	}
	want := []string{`environment variable "DB_PASSWORD"`, `environment variable "DATABASE_URL"`, "command argument 2", `label "dsn"`}
	if strings.Join(where, "|") != strings.Join(want, "|") {
		t.Fatalf("found in %q, want %q", where, want)
	}
	if got := (&Needles{}).Scan(info); got != nil {
		t.Fatalf("nothing to look for found %v", got)
	}
}

// TestNeedlesWholeTokensOnly: a value chosen by a role writer must not tell, one character at a
// time, what another container holds: a prefix of a longer token is no match.
func TestNeedlesWholeTokensOnly(t *testing.T) {
	held := "postgres://app:Zq9xK2mW8@db:5432/app"
	info := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{Name: "/victim"},
		Config:            &container.Config{Env: []string{"DATABASE_URL=" + held}},
	}
	for guess, want := range map[string]bool{
		"postgres://app:Z":         false, // a prefix: the next character is a letter
		"postgres://app:Zq9xK2mW":  false,
		"postgres://app:Zq9xK2mW8": true,  // the whole token up to '@'
		"Zq9xK2mW8":                false, // shorter than minNeedleLen
	} {
		var n Needles
		n.Add(guess, 1)
		if got := len(n.Scan(info)) > 0; got != want {
			t.Errorf("%q found = %v, want %v", guess, got, want)
		}
	}
	// A container with no name part (a malformed answer) is skipped, not a panic.
	var n Needles
	n.Add("postgres://app:Zq9xK2mW8", 1)
	if got := n.Scan(container.InspectResponse{Config: &container.Config{Env: []string{"A=" + held}}}); got != nil {
		t.Fatalf("%v", got)
	}
}

// BenchmarkNeedlesScan: a 4 KiB value against 1 MiB of labels is one linear pass.
func BenchmarkNeedlesScan(b *testing.B) {
	var n Needles
	n.Add(strings.Repeat("k", 4096), 1)
	info := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{Name: "/big"},
		Config:            &container.Config{Labels: map[string]string{"big": strings.Repeat("a", 1<<20)}},
	}
	for b.Loop() {
		n.Scan(info)
	}
}
