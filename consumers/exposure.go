package consumers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"
)

// A secret written into a container's definition (docker run -e PASSWORD=..., a command-line
// flag, a label) is not read again at a restart: rotating it breaks that container, whatever the
// plugin restarts (README "Finding forgotten services"). These find such copies without keeping
// the secrets themselves: each is held as its length, a rolling hash and its SHA-256; a window of
// a container's strings whose rolling hash matches is confirmed by SHA-256, compared in constant
// time.
//
// A copy counts only as a whole token: the characters on either side of it (if any) are not
// letters or digits. A role writer chooses some values (an imported token, a supplied one); were a
// prefix enough, a role whose value is "postgres://app:X" would tell, one character at a time,
// what another container's DATABASE_URL holds.

// minNeedleLen is the shortest value looked for: shorter ones would match by chance, or confirm
// a guess of a short secret too cheaply.
const minNeedleLen = 12

// maxScanBytes bounds what is scanned of one container (its environment, command and labels).
const maxScanBytes = 1 << 20

// Needles are the secret values to look for, by hash.
type Needles struct{ items []needle }

type needle struct {
	n   int
	rk  uint64 // rolling hash of the value (rabinKarp)
	sum [sha256.Size]byte
	tag int // what the caller knows the value as (a version)
}

// rkBase is the rolling hash's multiplier (arithmetic mod 2^64).
const rkBase = 1099511628211

// rabinKarp is the rolling hash of s.
func rabinKarp(s string) uint64 {
	var h uint64
	for i := 0; i < len(s); i++ {
		h = h*rkBase + uint64(s[i])
	}
	return h
}

// Add looks for value (and its URL-escaped form, as in a connection URL), known to the caller as
// tag. Values shorter than minNeedleLen are not looked for.
func (n *Needles) Add(value string, tag int) {
	for _, v := range []string{value, url.QueryEscape(value), strings.ReplaceAll(url.QueryEscape(value), "+", "%20")} {
		if len(v) < minNeedleLen {
			continue
		}
		sum := sha256.Sum256([]byte(v))
		dup := false
		for _, x := range n.items {
			if x.n == len(v) && x.sum == sum && x.tag == tag {
				dup = true
			}
		}
		if !dup {
			n.items = append(n.items, needle{n: len(v), rk: rabinKarp(v), sum: sum, tag: tag})
		}
	}
}

// Empty reports whether there is nothing to look for.
func (n *Needles) Empty() bool { return n == nil || len(n.items) == 0 }

// Finding is a place in a container that holds a value looked for.
type Finding struct {
	Container string // its name
	Endpoint  string // the docker_hosts endpoint ("" = docker_host)
	Where     string // "environment variable DB_PASSWORD", "command argument 3", "label app.dsn"
	Tag       int    // the needle's tag (a version)
}

// Scan returns where in info's environment, command and labels the needles occur.
func (n *Needles) Scan(info container.InspectResponse) []Finding {
	if n.Empty() || info.Config == nil || info.ContainerJSONBase == nil {
		return nil
	}
	name := strings.TrimPrefix(info.Name, "/")
	var out []Finding
	budget := maxScanBytes
	look := func(where, s string) {
		if budget <= 0 {
			return
		}
		if len(s) > budget {
			s = s[:budget]
		}
		budget -= len(s)
		for _, tag := range n.find(s) {
			out = append(out, Finding{Container: name, Where: where, Tag: tag})
		}
	}
	for _, kv := range info.Config.Env {
		key, value, _ := strings.Cut(kv, "=")
		look("environment variable "+printable(key), value)
	}
	args := append(append([]string{}, info.Config.Entrypoint...), info.Config.Cmd...)
	for i, a := range args {
		look(fmt.Sprintf("command argument %d", i), a)
	}
	keys := make([]string, 0, len(info.Config.Labels))
	for k := range info.Config.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		look("label "+printable(k), info.Config.Labels[k])
	}
	return out
}

// find returns the tags of the needles that occur in s as whole tokens: one pass of a rolling
// hash per needle (linear in s), a SHA-256 to confirm.
func (n *Needles) find(s string) []int {
	var tags []int
	for _, x := range n.items {
		if x.n > len(s) || containsTag(tags, x.tag) {
			continue
		}
		var pow uint64 = 1 // rkBase^(n-1)
		for i := 1; i < x.n; i++ {
			pow *= rkBase
		}
		h := rabinKarp(s[:x.n])
		for i := 0; ; i++ {
			if h == x.rk && delimited(s, i, i+x.n) {
				sum := sha256.Sum256([]byte(s[i : i+x.n]))
				if subtle.ConstantTimeCompare(sum[:], x.sum[:]) == 1 {
					tags = append(tags, x.tag)
					break
				}
			}
			if i+x.n >= len(s) {
				break
			}
			h = (h-uint64(s[i])*pow)*rkBase + uint64(s[i+x.n])
		}
	}
	return tags
}

// delimited reports whether s[i:j] stands alone: no letter or digit right before or after it.
func delimited(s string, i, j int) bool {
	alnum := func(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }
	return (i == 0 || !alnum(s[i-1])) && (j == len(s) || !alnum(s[j]))
}

func containsTag(tags []int, t int) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// printable keeps a variable or label name readable and bounded in an error.
func printable(s string) string {
	if len(s) > 128 {
		s = s[:128]
	}
	return fmt.Sprintf("%q", s)
}

// Exposed returns where the inspected containers of a consumer hold a needle.
func Exposed(c Consumer, infos []container.InspectResponse, n *Needles) []Finding {
	var out []Finding
	for _, info := range infos {
		for _, f := range n.Scan(info) {
			f.Endpoint = c.Endpoint()
			out = append(out, f)
		}
	}
	return out
}

// ScanEngine inspects every container of env's engine (at most limit) and returns where they
// hold a needle: the inventory of where a secret is, listed as a consumer or not.
func ScanEngine(ctx context.Context, env Env, endpoint string, n *Needles, limit int) ([]Finding, bool, error) {
	api, err := env.api()
	if err != nil {
		return nil, false, err
	}
	call, cancel := context.WithTimeout(ctx, env.callTimeout())
	list, err := api.ContainerList(call, container.ListOptions{All: true})
	cancel()
	if err != nil {
		return nil, false, env.apiError(ctx, "list containers", env.callTimeout(), err)
	}
	truncated := len(list) > limit
	if truncated {
		list = list[:limit]
	}
	var out []Finding
	for _, c := range list {
		if err := ctx.Err(); err != nil {
			return out, true, err
		}
		info, err := env.inspect(ctx, c.ID)
		if err != nil {
			continue // gone meanwhile
		}
		for _, f := range n.Scan(info) {
			f.Endpoint = endpoint
			out = append(out, f)
		}
	}
	return out, truncated, nil
}
