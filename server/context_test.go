package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/server/lambda"
	"github.com/api-perf/api-perf/storage"
)

// seenStore is the real store, remembering the context of each product
// read; with hold set, a list read first waits for its context to end, so
// that what the store then answers is what a request past its budget gets.
type seenStore struct {
	*storage.DB
	hold bool
	// entered, when set, receives once a held call has begun waiting.
	entered chan struct{}
	mu      sync.Mutex
	seen    []callSeen
}

// callSeen is what a store call could tell of its context.
type callSeen struct {
	deadline    time.Time
	hasDeadline bool
	value       any
	err         error // the context's error once the call ended
}

type testValueKey struct{}

// backstop bounds a held call whose context never ends, so that a
// regression fails the test instead of hanging it.
const backstop = 10 * time.Second

var errNeverEnded = errors.New("the request's context never ended")

func (s *seenStore) record(ctx context.Context) {
	d, ok := ctx.Deadline()
	s.mu.Lock()
	s.seen = append(s.seen, callSeen{deadline: d, hasDeadline: ok, value: ctx.Value(testValueKey{}), err: ctx.Err()})
	s.mu.Unlock()
}

func (s *seenStore) calls() []callSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]callSeen(nil), s.seen...)
}

func (s *seenStore) Product(ctx context.Context, id int64) (*apiperf.Product, error) {
	s.record(ctx)
	return s.DB.Product(ctx, id)
}

func (s *seenStore) Products(ctx context.Context, page apiperf.Page) ([]apiperf.Product, error) {
	if s.hold {
		if s.entered != nil {
			s.entered <- struct{}{}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backstop):
			return nil, errNeverEnded
		}
	}
	items, err := s.DB.Products(ctx, page)
	s.record(ctx)
	return items, err
}

// v2Event is an HTTP API (payload 2.0) GET event for path.
func v2Event(path string) []byte {
	return []byte(`{"version":"2.0","routeKey":"$default","rawPath":"` + path + `","rawQueryString":"",` +
		`"headers":{"host":"api.example.com"},"requestContext":{"stage":"$default",` +
		`"http":{"method":"GET","path":"` + path + `","sourceIp":"192.0.2.1"}},"isBase64Encoded":false}`)
}

// TestServer_CallContext_LambdaDeadline serves a Lambda event whose
// invocation ends sooner than the request budget: the store call sees the
// invocation's deadline, and its values, as the production wiring
// (lambda.InvocationContext) hands them over.
func TestServer_CallContext_LambdaDeadline(t *testing.T) {
	db := openStore(t, "sqlite", "")
	if _, err := db.CreateProduct(context.Background(), apiperf.ProductInput{Name: "A", Price: 100, Stock: 1}); err != nil {
		t.Fatal(err)
	}
	store := &seenStore{DB: db}
	srv := newServer(t, server.Config{Products: store, Orders: db, AccessLog: "off",
		RequestTimeout: time.Hour, Invocation: lambda.InvocationContext})
	h := lambda.NewHandler(srv.Handler(), lambda.Options{})

	deadline := time.Now().Add(30 * time.Second)
	ictx, cancel := context.WithDeadline(context.WithValue(context.Background(), testValueKey{}, "invocation"), deadline)
	defer cancel()
	out, err := h.Invoke(ictx, v2Event("/products/1"))
	if err != nil {
		t.Fatal(err)
	}
	calls := store.calls()
	if len(calls) != 1 {
		t.Fatalf("%d store calls, want 1; response %s", len(calls), out)
	}
	c := calls[0]
	if !c.hasDeadline || !c.deadline.Equal(deadline) {
		t.Errorf("the store saw deadline %v (%v), want the invocation's %v", c.deadline, c.hasDeadline, deadline)
	}
	if c.value != "invocation" {
		t.Errorf("the store saw value %v, want the invocation's", c.value)
	}
	if c.err != nil {
		t.Errorf("the store's context had ended: %v", c.err)
	}
}

// TestServer_CallContext_RequestTimeout: a store call observes the
// request's budget. Its deadline is the request's start plus
// RequestTimeout, and a list read held past it gets the real store's
// answer to an expired context, which the client sees as a 503.
func TestServer_CallContext_RequestTimeout(t *testing.T) {
	const budget = 300 * time.Millisecond
	db := openStore(t, "sqlite", "")
	store := &seenStore{DB: db}

	t.Run("DeadlineReachesTheStore", func(t *testing.T) {
		ts := startServer(t, db, server.Config{Products: store, RequestTimeout: budget})
		before := time.Now()
		ts.do(t, "GET", "/products/1", "").want(t, 404)
		after := time.Now()
		calls := store.calls()
		if len(calls) != 1 {
			t.Fatalf("%d store calls, want 1", len(calls))
		}
		c := calls[0]
		if !c.hasDeadline || c.deadline.Before(before.Add(budget)) || c.deadline.After(after.Add(budget)) {
			t.Errorf("the store saw deadline %v (%v), want the request's start plus %v, between %v and %v",
				c.deadline, c.hasDeadline, budget, before.Add(budget), after.Add(budget))
		}
	})

	t.Run("PastTheBudget", func(t *testing.T) {
		held := &seenStore{DB: db, hold: true}
		ts := startServer(t, db, server.Config{Products: held, RequestTimeout: budget})
		r := ts.do(t, "GET", "/products", "").want(t, 503)
		if r.Header.Get("Retry-After") == "" {
			t.Error("a 503 without Retry-After")
		}
		calls := held.calls()
		if len(calls) != 1 || !errors.Is(calls[0].err, context.DeadlineExceeded) {
			t.Fatalf("store calls %+v, want one whose context passed its deadline", calls)
		}
	})
}

// TestServer_CallContext_Shutdown: a request with a budget it has not
// spent is still cancelled when Shutdown's drain runs out.
func TestServer_CallContext_Shutdown(t *testing.T) {
	db := openStore(t, "sqlite", "")
	held := &seenStore{DB: db, hold: true, entered: make(chan struct{}, 1)}
	ts := startServer(t, db, server.Config{Products: held, RequestTimeout: time.Hour})
	done := make(chan int, 1)
	go func() {
		res, err := client.Get(ts.URL + "/products")
		if err != nil {
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	// Shutdown's drain waits for the held request, which ends only when
	// the drain's budget runs out and the server cancels it.
	<-held.entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if status := <-done; status != 503 {
		t.Errorf("the cancelled request was answered %d, want 503", status)
	}
	calls := held.calls()
	if len(calls) != 1 || !errors.Is(calls[0].err, context.Canceled) {
		t.Fatalf("store calls %+v, want one whose context was cancelled", calls)
	}
}

// panickyStore panics on every product read.
type panickyStore struct{ *storage.DB }

func (panickyStore) Product(context.Context, int64) (*apiperf.Product, error) { panic("boom") }

// TestLambda_Panic: on Lambda a panic is answered and logged by the
// server's own recovery, as behind the listener: one log record with the
// stack, and the 500 problem that quotes the request id.
func TestLambda_Panic(t *testing.T) {
	db := openStore(t, "sqlite", "")
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := newServer(t, server.Config{Products: panickyStore{db}, Orders: db, AccessLog: "off", Logger: logger,
		Invocation: lambda.InvocationContext})
	h := lambda.NewHandler(srv.Handler(), lambda.Options{Logger: srv.FastHTTPLogger()})

	out, err := h.Invoke(context.Background(), v2Event("/products/1"))
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		StatusCode int
		Headers    map[string]string
		Body       string
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 500 || resp.Headers["Content-Type"] != "application/problem+json" {
		t.Fatalf("status %d, Content-Type %q, want the server's 500 problem; body %s",
			resp.StatusCode, resp.Headers["Content-Type"], resp.Body)
	}
	var problem map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &problem); err != nil {
		t.Fatal(err)
	}
	rid := resp.Headers["X-Request-Id"]
	if rid == "" || problem["request_id"] != rid {
		t.Errorf("the problem quotes request id %v, the response header %q", problem["request_id"], rid)
	}
	if n := strings.Count(logs.String(), `"msg":"panic in handler"`); n != 1 {
		t.Errorf("%d panic records, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), rid) {
		t.Errorf("the panic record does not quote the request id %s:\n%s", rid, logs.String())
	}

	// fasthttp's own lines are the server's, at Debug.
	logs.Reset()
	srv.FastHTTPLogger().Printf("a %s line", "fasthttp")
	if !strings.Contains(logs.String(), `"level":"DEBUG"`) || !strings.Contains(logs.String(), "a fasthttp line") {
		t.Errorf("fasthttp's line was logged as %s", logs.String())
	}
}
