// Package httperr says what failed in an outgoing HTTP request in words that never quote the
// URL: net/http's errors carry the whole request URL, which for a webhook or a health check may
// hold a credential in its path, query or user info.
package httperr

import (
	"context"
	"errors"
	"net"
	"net/url"
	"syscall"
)

// Cause returns what failed: "timeout", "canceled" or "connection refused" when it is one of
// those, else the error inside net/http's *url.Error (which alone quotes the URL).
func Cause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return errors.New("timeout")
	case errors.Is(err, context.Canceled):
		return errors.New("canceled")
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	}
	return err
}
