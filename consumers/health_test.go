package consumers

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A health target's answer is the target's to fill: the error and the results say what failed
// (the status code) and never echo any part of the body.
func TestHealthErrorNeverEchoesTheBody(t *testing.T) {
	const marker = "BODY-MARKER-7f3a"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(marker + " stack trace, password=" + marker))
	}))
	defer srv.Close()
	checks, err := ParseHealthChecks([]string{srv.URL + "/health"})
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunHealthChecks(context.Background(), checks, 600*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("error %v, want the status code", err)
	}
	text, _ := json.Marshal(results)
	if strings.Contains(err.Error(), marker) || strings.Contains(string(text), marker) {
		t.Fatalf("the body is echoed: %v %s", err, text)
	}
	if !strings.Contains(results[0].Error, "HTTP 500") {
		t.Fatalf("result %+v", results[0])
	}
}

// What failed, in words: a refused connection, over tcp:// and http://.
func TestHealthErrorSaysConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	checks, err := ParseHealthChecks([]string{"tcp://" + addr, "http://" + addr + "/health"})
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunHealthChecks(context.Background(), checks, 300*time.Millisecond, nil)
	if err == nil {
		t.Fatal("healthy")
	}
	for _, r := range results {
		if !strings.HasSuffix(r.Error, ": connection refused") {
			t.Fatalf("result %+v", r)
		}
	}
}

// More probes than the bound never run at once: three rotations' checks (15 in all) against one
// counting server share a limiter of 4, and all pass.
func TestHealthProbesInFlightAreBounded(t *testing.T) {
	const bound = 4
	var inFlight, peak, total atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		total.Add(1)
		time.Sleep(30 * time.Millisecond)
		inFlight.Add(-1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	var specs []string
	for i := 0; i < 5; i++ {
		specs = append(specs, srv.URL+"/health")
	}
	checks, err := ParseHealthChecks(specs)
	if err != nil {
		t.Fatal(err)
	}
	lim := NewProbeLimiter(bound)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = RunHealthChecks(context.Background(), checks, 10*time.Second, lim)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p > bound || p < 2 {
		t.Fatalf("peak of %d probes in flight, bound %d", p, bound)
	}
	if total.Load() != 15 {
		t.Fatalf("%d probes, want 15", total.Load())
	}
}

// A probe waiting for a slot counts against its timeout: with every slot taken, the check fails
// at health_timeout, saying why, and never probed.
func TestHealthProbeWaitingForASlotCountsAgainstTheTimeout(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	lim := NewProbeLimiter(1)
	if err := lim.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer lim.release()
	checks, _ := ParseHealthChecks([]string{srv.URL})
	start := time.Now()
	results, err := RunHealthChecks(context.Background(), checks, 300*time.Millisecond, lim)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %s", took)
	}
	if err == nil || !strings.Contains(err.Error(), "not healthy after 300ms: no probe slot free") {
		t.Fatalf("error %v", err)
	}
	if hits.Load() != 0 || results[0].Attempts != 0 || results[0].Status != Unhealthy {
		t.Fatalf("results %+v, %d probes", results, hits.Load())
	}
}
