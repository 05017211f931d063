package vigiltest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// A CutProxy forwards connections to target until it is cut: then it
// closes every connection and refuses new ones, until healed — a replica
// cut off from NATS by the network.
type CutProxy struct {
	t      testing.TB
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

// NewCutProxy starts a proxy to target; it is cut when the test ends.
func NewCutProxy(t testing.TB, target string) *CutProxy {
	t.Helper()
	p := &CutProxy{t: t, target: target}
	p.Heal()
	t.Cleanup(p.Cut)
	return p
}

// Heal takes connections again, on the same address.
func (p *CutProxy) Heal() {
	p.t.Helper()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

// Cut closes every connection and refuses new ones.
func (p *CutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Addr is the proxy's address, host:port.
func (p *CutProxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}
