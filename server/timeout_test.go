package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/api-perf/api-perf/server"
)

// The connection timeouts, over raw sockets. The server sets its deadlines
// lazily (server/deadline.go): a later deadline is only recorded while the
// socket keeps the earlier one, and is armed when that one passes. These
// tests check both halves: no connection is cut before the timeout the
// server was configured with, and none outlives it by much.
const (
	readTimeout  = 400 * time.Millisecond
	idleTimeout  = 1200 * time.Millisecond
	writeTimeout = 400 * time.Millisecond
	// slack is how late a cut may come on a busy machine under -race.
	slack = 2 * time.Second
)

func timeoutServer(t *testing.T) string {
	t.Helper()
	ts := startServer(t, openStore(t, "sqlite", ""), server.Config{
		ReadTimeout: readTimeout, IdleTimeout: idleTimeout, WriteTimeout: writeTimeout})
	return strings.TrimPrefix(ts.URL, "http://")
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A backstop only: every wait below is expected to end well before.
	conn.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck
	return conn
}

// roundTrip sends one complete GET /healthz and reads its answer.
func roundTrip(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	req, err := http.NewRequest("GET", "http://"+conn.RemoteAddr().String()+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkResponse(t, req, res, body)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

// expectCut waits for the server to give up on a request whose headers
// never end, and checks it did so between min and min+slack after since:
// with a 408 problem on a new connection, by closing a kept-alive one
// (fasthttp answers nothing when a kept-alive connection's next request
// stalls).
func expectCut(t *testing.T, br *bufio.Reader, since time.Time, min time.Duration, keptAlive bool) {
	t.Helper()
	res, err := http.ReadResponse(br, nil)
	took := time.Since(since)
	switch {
	case keptAlive:
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("after %v: %v, want the connection closed", took, err)
		}
	case err != nil:
		t.Fatalf("after %v: %v", took, err)
	default:
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		checkUnrouted(t, res, body)
		if res.StatusCode != http.StatusRequestTimeout || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("after %v: status %d, %q", took, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if took < min-20*time.Millisecond || took > min+slack {
		t.Fatalf("cut after %v, want about %v", took, min)
	}
}

func TestTimeouts_SlowHeaders(t *testing.T) {
	addr := timeoutServer(t)

	t.Run("new connection", func(t *testing.T) {
		// The server arms the read timeout when it accepts, so the clock
		// starts before the dial: the cut cannot come before start+timeout.
		start := time.Now()
		conn := dial(t, addr)
		fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		expectCut(t, bufio.NewReader(conn), start, readTimeout, false)
	})

	// The case laziness could get wrong: the socket still holds the
	// deadline the first request armed, which passes long before the
	// second request's read timeout. The second request must get its full
	// read timeout all the same.
	t.Run("kept-alive connection", func(t *testing.T) {
		conn := dial(t, addr)
		br := bufio.NewReader(conn)
		roundTrip(t, conn, br)
		time.Sleep(readTimeout * 3 / 4)
		start := time.Now()
		fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		expectCut(t, br, start, readTimeout, true)
	})
}

// TestTimeouts_Idle: a kept-alive connection may stay quiet for the idle
// timeout (longer than the read timeout) and is closed after it.
func TestTimeouts_Idle(t *testing.T) {
	addr := timeoutServer(t)
	conn := dial(t, addr)
	br := bufio.NewReader(conn)
	roundTrip(t, conn, br)
	time.Sleep(readTimeout * 2)
	// The idle timeout starts once the server has answered, which is after
	// this request was sent: the close cannot come before start+timeout.
	start := time.Now()
	roundTrip(t, conn, br) // still open after twice the read timeout
	_, err := br.ReadByte()
	took := time.Since(start)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: %v after %v, want EOF", err, took)
	}
	if took < idleTimeout-20*time.Millisecond || took > idleTimeout+slack {
		t.Fatalf("idle connection closed after %v, want about %v", took, idleTimeout)
	}
}

// TestTimeouts_Write: a client that pipelines requests and stops reading
// leaves the server blocked in a write; the write timeout ends the
// connection instead of the server holding it forever.
func TestTimeouts_Write(t *testing.T) {
	addr := timeoutServer(t)
	conn := dial(t, addr)
	conn.(*net.TCPConn).SetReadBuffer(4096) //nolint:errcheck
	const requests = 2000                   // about 150 MB of /openapi.json
	go func() {
		w := bufio.NewWriter(conn)
		for range requests {
			fmt.Fprint(w, "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
		}
		w.Flush() //nolint:errcheck // the server may already have hung up
	}()
	time.Sleep(writeTimeout * 4)
	// Now read everything there is: a server that gave up sent far less
	// than all the answers, then closed.
	got, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was still open 30s later, after %d bytes", got)
	}
	body := int64(73_000)
	if got >= requests*body/2 {
		t.Fatalf("read %d bytes: the server wrote on instead of timing out", got)
	}
	t.Logf("the server gave up after %d bytes (%v)", got, err)
}

// trickle writes b one byte every interval until it is all written or the
// server hangs up, and returns how many bytes went out.
func trickle(conn net.Conn, b string, interval time.Duration) int {
	for i := range len(b) {
		if _, err := conn.Write([]byte{b[i]}); err != nil {
			return i
		}
		time.Sleep(interval)
	}
	return len(b)
}

// TestTimeouts_Slowloris: a client that trickles its headers or its body, a
// byte at a time and each byte in time for any per-read deadline, is cut
// when the read timeout for the whole request passes, with a 408, and its
// request never reaches a handler (the body's product is not created).
func TestTimeouts_Slowloris(t *testing.T) {
	ts := startServer(t, openStore(t, "sqlite", ""), server.Config{
		ReadTimeout: readTimeout, IdleTimeout: idleTimeout, WriteTimeout: writeTimeout})
	addr := strings.TrimPrefix(ts.URL, "http://")
	const body = `{"name":"slow","price":1}`
	for _, tc := range []struct{ name, req string }{
		{"headers", "POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Padding: " +
			strings.Repeat("a", 200) + "\r\n\r\n"},
		{"body", "POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
			fmt.Sprint(len(body)+200) + "\r\n\r\n" + body + strings.Repeat(" ", 200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			conn := dial(t, addr)
			sent := make(chan int, 1)
			go func() { sent <- trickle(conn, tc.req, 10*time.Millisecond) }()
			expectCut(t, bufio.NewReader(conn), start, readTimeout, false)
			conn.Close()
			if n := <-sent; n == len(tc.req) {
				t.Fatalf("the whole request (%d bytes) went out before the cut", n)
			}
			if n := ts.count(t, "products"); n != 0 {
				t.Fatalf("a trickled request created %d products", n)
			}
		})
	}
}
