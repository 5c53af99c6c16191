package httperr

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The causes never quote the URL, whose path and query here stand for a credential.
func TestCauseNeverQuotesTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close() // accepts (backlog) and never answers: timeout

	client := &http.Client{Timeout: 200 * time.Millisecond}
	for want, target := range map[string]string{
		"connection refused": "http://" + addr + "/hook/SECRETPATH?token=SECRETQUERY",
		"timeout":            "http://" + silent.Addr().String() + "/hook/SECRETPATH?token=SECRETQUERY",
	} {
		_, err := client.Get(target)
		if err == nil {
			t.Fatalf("%s: no error", want)
		}
		got := Cause(err).Error()
		if got != want || strings.Contains(got, "SECRET") {
			t.Errorf("Cause = %q, want %q", got, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/SECRETPATH", nil)
	if _, err := http.DefaultClient.Do(req); Cause(err).Error() != "canceled" {
		t.Errorf("Cause of a cancelled request = %v", Cause(err))
	}
}
