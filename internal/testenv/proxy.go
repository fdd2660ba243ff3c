package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on a loopback port in front of a real service, so a
// test can take the service away and bring it back without touching it:
// Down refuses connections and cuts open ones, Blackhole accepts but never
// answers (a hung server), Up restores traffic on the same port.
type Proxy struct {
	tb     testing.TB
	target string
	addr   string

	mu        sync.Mutex
	ln        net.Listener
	conns     map[net.Conn]struct{}
	blackhole bool
}

// NewProxy starts a proxy to target; it stops when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p := &Proxy{tb: tb, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	tb.Cleanup(p.Down)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) handle(c net.Conn) {
	if !p.track(c) {
		return
	}
	p.mu.Lock()
	hole := p.blackhole
	p.mu.Unlock()
	if hole {
		io.Copy(io.Discard, c) //nolint:errcheck // swallow until cut
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(up) {
		c.Close()
		return
	}
	go func() { io.Copy(up, c); up.Close() }() //nolint:errcheck
	io.Copy(c, up)                             //nolint:errcheck
	c.Close()
}

// Down closes the listener and cuts every open connection.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

// Blackhole cuts open connections, then accepts new ones and never answers.
func (p *Proxy) Blackhole() {
	p.Down()
	p.mu.Lock()
	p.blackhole = true
	p.mu.Unlock()
	p.listen()
}

// Up serves traffic again on the same port.
func (p *Proxy) Up() {
	p.Down()
	p.mu.Lock()
	p.blackhole = false
	p.mu.Unlock()
	p.listen()
}

func (p *Proxy) listen() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.tb.Fatalf("proxy cannot listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
