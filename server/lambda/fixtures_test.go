package lambda_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// The event fixtures are the ones aws-lambda-go ships in events/testdata:
// AWS's own samples, read from the module cache rather than copied here.

var fixtures struct {
	once sync.Once
	dir  string
	err  error
}

// fixture returns the bytes of events/testdata/name of the aws-lambda-go
// module the build uses. It fails the test when the module is not in the
// module cache, since every test of this package depends on it.
func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	fixtures.once.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-json", "github.com/aws/aws-lambda-go").Output()
		if err != nil {
			fixtures.err = err
			return
		}
		var m struct{ Dir string }
		if fixtures.err = json.Unmarshal(out, &m); fixtures.err == nil {
			fixtures.dir = filepath.Join(m.Dir, "events", "testdata")
		}
	})
	if fixtures.err != nil || fixtures.dir == "" {
		tb.Fatalf("cannot locate github.com/aws/aws-lambda-go in the module cache (run go mod download): %v", fixtures.err)
	}
	b, err := os.ReadFile(filepath.Join(fixtures.dir, name))
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	return b
}

// seen is what a handler saw of a request, copied out of the fasthttp
// context before the handler returns: the context and its byte slices belong
// to the adapter's pool afterwards.
type seen struct {
	Method       string
	Path         string // decoded, as routers match it
	PathOriginal string
	Query        string
	Args         map[string][]string
	Headers      map[string][]string // by canonical name, in arrival order
	Cookie       string
	Host         string
	Body         []byte
	RemoteIP     string
	RemoteAddr   string
	RequestID    string
	ContentLen   int
}

// recorder returns a handler that records each request into *got and answers
// with a small JSON body.
func recorder(got *seen) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		*got = seen{
			Method:       string(ctx.Method()),
			Path:         string(ctx.Path()),
			PathOriginal: string(ctx.URI().PathOriginal()),
			Query:        string(ctx.QueryArgs().QueryString()),
			Args:         map[string][]string{},
			Headers:      map[string][]string{},
			Cookie:       string(ctx.Request.Header.Peek("Cookie")),
			Host:         string(ctx.Host()),
			Body:         append([]byte(nil), ctx.PostBody()...),
			RemoteIP:     ctx.RemoteIP().String(),
			RemoteAddr:   ctx.RemoteAddr().String(),
			RequestID:    string(ctx.Request.Header.Peek("X-Request-Id")),
			ContentLen:   ctx.Request.Header.ContentLength(),
		}
		for k, v := range ctx.QueryArgs().All() {
			got.Args[string(k)] = append(got.Args[string(k)], string(v))
		}
		for k, v := range ctx.Request.Header.All() {
			key := string(k)
			got.Headers[key] = append(got.Headers[key], string(v))
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"ok":true}`)
	}
}
