// Command demo-consumer is the demo service that consumes a rotated PostgreSQL credential: it reads
// rotation/creds/$ROTATION_ROLE from Vault once at start (as a real service would, see README "Consumers and health
// checks") and serves a health endpoint that proves the credential it started with still logs in. Restarting it is how
// it picks up a new secret. It consumes a token role too (creds with a value and no username): it then holds the token
// it read and needs no database, so /health answers 200 as long as it read one.
//
// Environment:
//
//	VAULT_ADDR, VAULT_TOKEN  Vault server and token (read by the Vault API client)
//	ROTATION_ROLE            role to read (required)
//	ROTATION_MOUNT           mount path of the plugin (default "rotation")
//	LISTEN                   listen address (default 127.0.0.1:3000)
//	HEALTH_QUERY             query /health runs (default "SELECT 1")
//	IGNORE_SIGTERM           "1": a service slow to stop, which only SIGKILL ends (shows stop timeouts at work)
//
// Endpoints:
//
//	/         200 "ok <username> v<version>" while the process is up (liveness; no database)
//	/health   200 only if a fresh connection with the credential read at start runs HEALTH_QUERY now, else 503
//	          (a token role: 200 when a token was read at start)
//	/version  {"username": ..., "version": N} (username "" for a token role)
//
// `demo-consumer -check URL` GETs URL once and exits 0 on a 2xx answer, 1 otherwise (a Docker health check command;
// the image has no curl). The password (or token) is never logged nor served.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
)

const (
	credsRetryFor  = 10 * time.Second
	healthTimeout  = 3 * time.Second
	shutdownWithin = 5 * time.Second
)

// creds is what the consumer read at start. connURL holds the password, token the token: never log or serve them.
// A token role's creds have a token and no username or connURL.
type creds struct {
	username string
	version  int64
	connURL  string
	token    string
}

type server struct {
	role        string
	healthQuery string
	creds       *creds // nil when reading failed
	credsErr    error  // why creds is nil
}

func main() {
	check := flag.String("check", "", "GET `URL` once; exit 0 on 2xx, 1 otherwise (container health check)")
	flag.Parse()
	if *check != "" {
		os.Exit(runCheck(*check))
	}
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("demo-consumer: ")

	role := os.Getenv("ROTATION_ROLE")
	mount := strings.Trim(envOr("ROTATION_MOUNT", "rotation"), "/")
	listen := envOr("LISTEN", "127.0.0.1:3000")
	s := &server{role: role, healthQuery: envOr("HEALTH_QUERY", "SELECT 1")}

	stopSignals := []os.Signal{syscall.SIGTERM, os.Interrupt}
	if os.Getenv("IGNORE_SIGTERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
		stopSignals = []os.Signal{os.Interrupt}
	}
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()

	if role == "" {
		s.credsErr = errors.New("ROTATION_ROLE is not set")
	} else {
		s.creds, s.credsErr = readCredsRetry(ctx, mount+"/creds/"+role, credsRetryFor)
	}
	if s.creds != nil {
		log.Printf("started with %s version %d", s.creds.username, s.creds.version)
	} else {
		log.Printf("started without credentials: %v (/health answers 503)", s.credsErr)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/health", s.health)
	mux.HandleFunc("/version", s.versionHandler)
	mux.HandleFunc("/", s.root)
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("listening on %s", listen)
	select {
	case err := <-errc:
		log.Fatalf("listen: %v", err)
	case <-ctx.Done():
	}
	log.Printf("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownWithin)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Printf("shutdown: %v", err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func runCheck(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "check %s: %v\n", url, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(os.Stderr, "check %s: %s\n", url, resp.Status)
		return 1
	}
	return 0
}

// readCredsRetry reads path until it succeeds, ctx ends or retryFor has passed; it returns the last error.
func readCredsRetry(ctx context.Context, path string, retryFor time.Duration) (*creds, error) {
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault client config: %w", cfg.Error)
	}
	cfg.Timeout = 5 * time.Second
	cfg.MaxRetries = 0
	client, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	deadline := time.Now().Add(retryFor)
	for {
		c, err := readCreds(ctx, client, path)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("reading %s for %s: %w", path, retryFor, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reading %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func readCreds(ctx context.Context, client *vault.Client, path string) (*creds, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sec, err := client.Logical().ReadWithContext(rctx, path)
	if err != nil {
		return nil, err
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("%s: no such secret", path)
	}
	c := &creds{}
	var ok bool
	if tok, _ := sec.Data["value"].(string); tok != "" && sec.Data["username"] == nil {
		c.token = tok // a token role
	} else {
		if c.username, ok = sec.Data["username"].(string); !ok || c.username == "" {
			return nil, fmt.Errorf("%s: no username", path)
		}
		if c.connURL, ok = sec.Data["connection_url"].(string); !ok || c.connURL == "" {
			return nil, fmt.Errorf("%s: no connection_url", path)
		}
	}
	switch v := sec.Data["version"].(type) {
	case json.Number:
		if c.version, err = v.Int64(); err != nil {
			return nil, fmt.Errorf("%s: version %q: %v", path, v, err)
		}
	case float64:
		c.version = int64(v)
	default:
		return nil, fmt.Errorf("%s: no version", path)
	}
	return c, nil
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	if s.creds == nil {
		http.Error(w, "unhealthy: no credentials: "+s.credsErr.Error(), http.StatusServiceUnavailable)
		return
	}
	if s.creds.token != "" {
		fmt.Fprintf(w, "healthy token v%d\n", s.creds.version)
		return
	}
	if err := s.probe(r.Context()); err != nil {
		http.Error(w, fmt.Sprintf("unhealthy: %s version %d: %v", s.creds.username, s.creds.version, err), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "healthy %s v%d\n", s.creds.username, s.creds.version)
}

// probe opens a fresh connection with the credential read at start and runs the health query.
func (s *server) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.creds.connURL)
	if err != nil {
		return redact(err, s.creds.connURL)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, s.healthQuery)
	return redact(err, s.creds.connURL)
}

// redact keeps the password out of an error text (pgx errors name the host and user, not the password, but a parse
// error of the URL may quote it).
func redact(err error, connURL string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if pw := passwordOf(connURL); pw != "" && strings.Contains(msg, pw) {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	if strings.Contains(msg, connURL) {
		msg = strings.ReplaceAll(msg, connURL, "<connection_url>")
	}
	return errors.New(msg)
}

func passwordOf(connURL string) string {
	cfg, err := pgx.ParseConfig(connURL)
	if err != nil {
		return ""
	}
	return cfg.Password
}

func (s *server) root(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if s.creds == nil {
		fmt.Fprintf(w, "ok (no credentials: %v)\n", s.credsErr)
		return
	}
	fmt.Fprintf(w, "ok %s v%d\n", s.creds.username, s.creds.version)
}

func (s *server) versionHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	out := map[string]any{"username": "", "version": 0}
	if s.creds != nil {
		out["username"], out["version"] = s.creds.username, s.creds.version
	} else {
		out["error"] = s.credsErr.Error()
	}
	_ = json.NewEncoder(w).Encode(out)
}
