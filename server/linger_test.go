package server_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A client still sending when the server answers a transport error and
// closes reads that answer: the server closes in stages (lingering) rather
// than resetting the connection under it. Before, net/http's client saw
// "write: broken pipe" or "connection reset" instead of some of the 431s
// and 413s.
func TestTransportErrors_AnsweredWhileTheClientStillSends(t *testing.T) {
	db := openStore(t, "sqlite", "")
	cfg := docConfig()
	cfg.MaxBodySize = 1 << 10
	ts := startServer(t, db, cfg)
	bigHeader := strings.Repeat("a", 256<<10)
	bigBody := strings.Repeat("b", 512<<10)
	for i := range 20 {
		// A fresh connection for each: the server closes it after the answer.
		c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
		req, _ := http.NewRequest("GET", ts.URL+"/products/1", nil)
		req.Header.Set("X-Big", bigHeader)
		if res, err := c.Do(req); err != nil {
			t.Fatalf("request %d with 256 KiB of headers: %v", i, err)
		} else if res.Body.Close(); res.StatusCode != 431 {
			t.Fatalf("request %d with 256 KiB of headers: %d, want 431", i, res.StatusCode)
		}
		req, _ = http.NewRequest("POST", ts.URL+"/products", strings.NewReader(bigBody))
		req.Header.Set("Content-Type", "application/json")
		if res, err := c.Do(req); err != nil {
			t.Fatalf("request %d with a 512 KiB body: %v", i, err)
		} else if res.Body.Close(); res.StatusCode != 413 {
			t.Fatalf("request %d with a 512 KiB body: %d, want 413", i, res.StatusCode)
		}
	}
}

// Shutdown returns only once the connections closing in stages have
// closed: its caller exits next, and the exit would reset a connection
// still lingering, under an answer its client may not have read yet.
func TestShutdown_WaitsForLingeringConnections(t *testing.T) {
	ts := startServer(t, openStore(t, "sqlite", ""), docConfig())
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	// Headers over the limit, and then the client neither sends nor closes:
	// the server's side lingers for the whole lingerTime.
	go io.WriteString(conn, "GET /products/1 HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n") //nolint:errcheck
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 431 {
		t.Fatalf("status %d, want 431", res.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := ts.Srv.ClientConns(netip.MustParseAddr("127.0.0.1")); n != 0 {
		t.Fatalf("Shutdown returned with %d connection still open", n)
	}
}
