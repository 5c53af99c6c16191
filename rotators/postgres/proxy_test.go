package postgres

import (
	"io"
	"net"
	"sync"
	"testing"
)

// tcpProxy forwards connections to a PostgreSQL server, and can then refuse new connections
// (a pgx cancel request is a new connection) while the open ones keep going: a server that
// the client can no longer reach to cancel what it sent.
type tcpProxy struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, upstream string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, upstream: upstream}
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	go p.serve()
	return p
}

// addr is host:port of the proxy.
func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

// refuseNew closes the listener: new connections are refused, open ones keep forwarding.
func (p *tcpProxy) refuseNew() { _ = p.ln.Close() }

func (p *tcpProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go pipe(server, client)
		go pipe(client, server)
	}
}

// pipe copies until either side ends, then closes both.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}
