// Package testenv starts the real stack for integration tests: a throwaway PostgreSQL 15 cluster, a Vault server
// (dev mode or file storage) and the plugin binary, all on 127.0.0.1 only.
//
// Binaries:
//   - Vault: $VAULT_BIN, else the output of bootstrap/build-vault.sh (vault on PATH >= 1.15, else the pinned build);
//     make test sets it to the pinned build with the web UI. VaultUIBinary: $VAULT_UI_BIN, else
//     bootstrap/build-vault-ui.sh.
//   - Plugin: built once per test binary from ./cmd/vault-plugin-rotation (per build-tag set); $ROTATION_PLUGIN_DIR
//     points PluginBinary at a prebuilt directory instead.
//   - PostgreSQL: bootstrap/postgres.sh (PostgreSQL 15 in /usr/lib/postgresql/15/bin, or $PGBIN).
//
// Docker: the engine at $DOCKER_HOST (docker.go), and a second dockerd on TCP with TLS that a test starts itself
// (StartDockerd, dockerd.go).
//
// Every process is stopped by t.Cleanup. Call Main from TestMain to also remove the plugin build directories.
package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/version"
)

// PluginName is the catalog name of the plugin and the name of its binary.
const PluginName = "vault-plugin-rotation"

// PluginVersion is the version the harness registers the plugin with: internal/version's, which the plugin reports
// itself (Vault refuses to run a plugin whose reported version differs from the registered one).
var PluginVersion = version.Version

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// RepoRoot returns the module root (the nearest parent directory of the working directory holding go.mod with this module).
func RepoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
				strings.Contains(string(b), "module github.com/vault-plugin-rotation/vault-plugin-rotation\n") {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("testenv: no go.mod of github.com/vault-plugin-rotation/vault-plugin-rotation above the working directory")
				return
			}
			dir = parent
		}
	})
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return rootDir
}

type pluginBuild struct {
	once     sync.Once
	dir, sha string
	err      error
}

var (
	pluginMu     sync.Mutex
	pluginBuilds = map[string]*pluginBuild{}
)

// PluginBinary returns the directory holding the plugin binary (named vault-plugin-rotation) and its sha256 (hex).
// It is built once per test binary; $ROTATION_PLUGIN_DIR selects a prebuilt directory instead.
func PluginBinary(t testing.TB) (dir, sha256hex string) {
	t.Helper()
	if d := os.Getenv("ROTATION_PLUGIN_DIR"); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := FileSHA256(filepath.Join(abs, PluginName))
		if err != nil {
			t.Fatalf("testenv: ROTATION_PLUGIN_DIR: %v", err)
		}
		return abs, sum
	}
	return PluginBinaryTags(t, "")
}

// PluginBinaryTags is PluginBinary built with `go build -tags TAGS` (e.g. "failpoints"). Each distinct tag set is built
// once per test binary into its own directory.
func PluginBinaryTags(t testing.TB, tags string) (dir, sha256hex string) {
	t.Helper()
	dir, sum, err := BuildPlugin(RepoRoot(t), tags)
	if err != nil {
		t.Fatal(err)
	}
	return dir, sum
}

// PluginBinaryVersion is PluginBinaryTags stamped with another version (as `make release` stamps a release's:
// -ldflags -X internal/version.stamped=VERSION): a second build of the plugin, with its own sha256, that reports
// version to Vault. Each distinct tag set and version is built once per test binary.
func PluginBinaryVersion(t testing.TB, tags, version string) (dir, sha256hex string) {
	t.Helper()
	dir, sum, err := buildPlugin(RepoRoot(t), tags, version)
	if err != nil {
		t.Fatal(err)
	}
	return dir, sum
}

// BuildPlugin is the non-fatal form of PluginBinaryTags (cached per tag set, errors included).
func BuildPlugin(repoRoot, tags string) (dir, sha256hex string, err error) {
	return buildPlugin(repoRoot, tags, "")
}

// versionPackage is where the version a release build is stamped with lives.
const versionPackage = "github.com/vault-plugin-rotation/vault-plugin-rotation/internal/version"

// buildPlugin builds the plugin with build tags and, unless version is "", stamped with version.
func buildPlugin(repoRoot, tags, version string) (dir, sha256hex string, err error) {
	key := tags + "\x00" + version
	pluginMu.Lock()
	b := pluginBuilds[key]
	if b == nil {
		b = &pluginBuild{}
		pluginBuilds[key] = b
	}
	pluginMu.Unlock()
	b.once.Do(func() {
		d, err := os.MkdirTemp("", "testenv-plugin-")
		if err != nil {
			b.err = err
			return
		}
		if err := os.Chmod(d, 0o755); err != nil {
			b.err = err
			return
		}
		args := []string{"build", "-o", filepath.Join(d, PluginName)}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		if version != "" {
			args = append(args, "-ldflags", "-X "+versionPackage+".stamped="+version)
		}
		args = append(args, "./cmd/vault-plugin-rotation")
		cmd := exec.Command(goBin(), args...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(d)
			b.err = fmt.Errorf("testenv: go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		sum, err := FileSHA256(filepath.Join(d, PluginName))
		if err != nil {
			b.err = err
			return
		}
		b.dir, b.sha = d, sum
	})
	return b.dir, b.sha, b.err
}

var (
	tempMu   sync.Mutex
	tempDirs []string
)

// registerTempDir has Main remove dir after the tests.
func registerTempDir(dir string) {
	tempMu.Lock()
	defer tempMu.Unlock()
	tempDirs = append(tempDirs, dir)
}

// Main runs the tests and then removes the plugin build directories (and the demo consumer's). Use it from TestMain:
// func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	pluginMu.Lock()
	for _, b := range pluginBuilds {
		if b.dir != "" {
			os.RemoveAll(b.dir)
		}
	}
	pluginMu.Unlock()
	tempMu.Lock()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	tempMu.Unlock()
	os.Exit(code)
}

func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		return p
	}
	return "/usr/local/go/bin/go"
}

// FileSHA256 returns the hex sha256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freePortPair returns p such that p and p+1 are both free on 127.0.0.1 (Vault's dev server puts its cluster listener on p+1).
func freePortPair(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := FreePort(t)
		if p >= 65535 {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("testenv: no pair of free ports")
	return 0
}

// sharedTempDir makes a fresh directory under the system temp dir, mode 0755 so that the postgres user can traverse it
// (t.TempDir is 0700), removed at cleanup.
func sharedTempDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
