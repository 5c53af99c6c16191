// Command fuzzcorpus writes the committed corpus files that every fuzz target shares: every
// byte value, 64 KiB inputs, option-like strings ("-oProxyCommand=", "--"), newlines, NUL and
// invalid UTF-8, each placed where the target reads user input. Add a new target to targets.
//
//	go run ./scripts/fuzzcorpus .
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type target struct {
	dir, name string
	// args renders one corpus entry from an interesting string.
	args func(s string) []string
}

func q(s string) string { return "string(" + strconv.Quote(s) + ")" }

func main() {
	root := os.Args[1]
	var all []byte
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	inputs := map[string]string{
		"every-byte":      string(all),
		"huge":            strings.Repeat("A", 64<<10),
		"huge-lines":      strings.Repeat("a b\n", 4<<10),
		"option-proxycmd": "-oProxyCommand=sh -c id",
		"option-dashdash": "--",
		"option-dash":     "-",
		"newlines":        "a\nb\r\nc\n",
		"nul":             "a\x00b",
		"only-nul":        "\x00",
		"empty":           "",
		"invalid-utf8":    "\xff\xfe\xc0\x80",
	}
	targets := []target{
		{"backend", "FuzzValidateRoleName", func(s string) []string { return []string{q(s)} }},
		{"backend", "FuzzRotationSchedule", func(s string) []string { return []string{q(s), "int64(0)"} }},
		{"backend", "FuzzNotifyURL", func(s string) []string { return []string{q("https"), q(s), q(s)} }},
		{"consumers", "FuzzParse", func(s string) []string { return []string{q("docker:" + s)} }},
		{"consumers", "FuzzParseHealthCheck", func(s string) []string { return []string{q("http://" + s)} }},
		{"rotators/postgres", "FuzzConnectionURL", func(s string) []string {
			return []string{q("postgres://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable"), q(s), q(s)}
		}},
		{"rotators/ssh", "FuzzImportPrivateKey", func(s string) []string { return []string{q(s)} }},
		{"rotators/ssh", "FuzzHostKeys", func(s string) []string { return []string{q(s)} }},
		{"rotators/jwt", "FuzzImportPrivateKey", func(s string) []string { return []string{q("ES256"), q(s)} }},
		{"paths", "FuzzDurations", func(s string) []string { return []string{"byte('\\x00')", q(s)} }},
	}
	for _, t := range targets {
		dir := filepath.Join(root, t.dir, "testdata", "fuzz", t.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			panic(err)
		}
		for name, s := range inputs {
			body := "go test fuzz v1\n" + strings.Join(t.args(s), "\n") + "\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				panic(err)
			}
		}
		fmt.Println(dir)
	}
}
