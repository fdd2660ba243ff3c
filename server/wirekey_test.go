package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/api-perf/api-perf/server"
)

// TestIdempotencyKey_ControlBytesOnTheWire sends keys holding control
// bytes as raw bytes, the way a hostile client would, rather than through a
// client library that refuses to send them. Whichever layer refuses the
// key, the answer is a 400 problem and no order is placed.
func TestIdempotencyKey_ControlBytesOnTheWire(t *testing.T) {
	ts := startServer(t, openStore(t, "sqlite", ""), server.Config{})
	addr := strings.TrimPrefix(ts.URL, "http://")
	ts.do(t, "POST", "/products", `{"name":"p","price":1,"stock":10}`).want(t, http.StatusCreated)
	body := `{"product_id":1,"quantity":1}`
	for _, key := range []string{"a\x00b", "a\x7fb", "a\x01b", "a\x1bb", "a\tb", "\x80"} {
		conn := dial(t, addr)
		fmt.Fprintf(conn, "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
			key, len(body), body)
		req, _ := http.NewRequest("POST", ts.URL+"/orders", nil)
		res, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("key %q: %d %s %s, want a 400 problem", key, res.StatusCode, res.Header.Get("Content-Type"), b)
		}
		t.Logf("key %q: %s", key, b)
	}
	if n := ts.count(t, "orders"); n != 0 {
		t.Fatalf("%d orders placed, want none", n)
	}
}
