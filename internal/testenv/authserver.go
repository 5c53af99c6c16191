package testenv

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// AuthServer is a FAKE PostgreSQL server: it speaks the startup protocol, asks every client
// for the authentication a test gives it (a cleartext password, an MD5 hash, or none), and
// records every byte a client sends after the request. Real PostgreSQL is not made into one on
// demand (a server that asks a password in clear is a misconfiguration, or an attacker), and
// the test needs to see what reached it.
type AuthServer struct {
	ln  net.Listener
	ask pgproto3.BackendMessage

	mu       sync.Mutex
	received bytes.Buffer
	asked    int
}

// StartAuthServer listens on 127.0.0.1; Cleanup closes it.
func StartAuthServer(t testing.TB, ask pgproto3.BackendMessage) *AuthServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &AuthServer{ln: ln, ask: ask}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *AuthServer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(s.ask)
	if err := be.Flush(); err != nil {
		return
	}
	s.mu.Lock()
	s.asked++
	s.mu.Unlock()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		s.mu.Lock()
		s.received.Write(buf[:n])
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Addr is host:port.
func (s *AuthServer) Addr() string { return s.ln.Addr().String() }

// URLTemplate is a connection_url for the plugin (sslmode=disable: the fake speaks no TLS).
func (s *AuthServer) URLTemplate() string {
	return "postgres://{{username}}:{{password}}@" + s.Addr() + "/postgres?sslmode=disable"
}

// Got returns how many clients were asked to authenticate and every byte they sent after.
func (s *AuthServer) Got() (asked int, received []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked, append([]byte(nil), s.received.Bytes()...)
}
