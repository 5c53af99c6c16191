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
			Labels:     map[string]string{"dsn": "x" + pw + "y", "other": "nothing"},
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
