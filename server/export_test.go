package server

import (
	"net/netip"
	"testing"
)

// ClientConns is how many connections the server holds open for the
// client at a (IPv6 grouped by prefix), for tests of the caps.
func (s *Server) ClientConns(a netip.Addr) int {
	s.edge.mu.Lock()
	defer s.edge.mu.Unlock()
	return s.edge.perClient[a]
}

// mustNew is New for a test, which fails on its error.
func mustNew(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
