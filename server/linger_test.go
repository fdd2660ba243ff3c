package server_test

import (
	"net"
	"net/http"
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
