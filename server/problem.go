package server

import (
	"errors"
	"strconv"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
)

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type      string               `json:"type"`
	Title     string               `json:"title"`
	Status    int                  `json:"status"`
	Detail    string               `json:"detail,omitempty"`
	Instance  string               `json:"instance,omitempty"`
	RequestID string               `json:"request_id,omitempty"`
	Errors    []apiperf.FieldError `json:"errors,omitempty"`
}

const problemContentType = "application/problem+json"

// statusOf is the one place error codes become HTTP statuses.
func statusOf(code string) int {
	switch code {
	case apiperf.EINVALID, apiperf.EMISMATCH:
		return fasthttp.StatusUnprocessableEntity
	case apiperf.ENOTFOUND:
		return fasthttp.StatusNotFound
	case apiperf.ECONFLICT, apiperf.EINPROGRESS:
		return fasthttp.StatusConflict
	case apiperf.EPRECONDITION:
		return fasthttp.StatusPreconditionFailed
	case apiperf.EUNAVAILABLE:
		return fasthttp.StatusServiceUnavailable
	case apiperf.EUNAUTHORIZED:
		return fasthttp.StatusUnauthorized
	}
	return fasthttp.StatusInternalServerError
}

// writeError answers with the problem for err. Internal errors are logged
// with the request id and reach the client as a bare 500.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, err error) {
	code := apiperf.ErrorCode(err)
	status := statusOf(code)
	p := Problem{Status: status, Detail: apiperf.ErrorMessage(err)}
	var ae *apiperf.Error
	if errors.As(err, &ae) {
		p.Errors = ae.Fields
	}
	switch {
	case status >= 500:
		s.log.Error("request failed", "request_id", requestID(ctx), "method", string(ctx.Method()),
			"path", string(ctx.Path()), "status", status, "error", err)
		if status == fasthttp.StatusInternalServerError {
			p.Detail = "internal error; quote the request id when reporting it"
		}
		if status == fasthttp.StatusServiceUnavailable {
			ctx.Response.Header.Set("Retry-After", "1")
		}
	case status == fasthttp.StatusUnauthorized:
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="api-perf"`)
	}
	s.writeProblem(ctx, p)
}

// problem answers with a problem of the given status and detail.
func (s *Server) problem(ctx *fasthttp.RequestCtx, status int, detail string) {
	s.writeProblem(ctx, Problem{Status: status, Detail: detail})
}

func (s *Server) writeProblem(ctx *fasthttp.RequestCtx, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = fasthttp.StatusMessage(p.Status)
	}
	p.Instance = string(ctx.Path())
	p.RequestID = requestID(ctx)
	body, err := json.Marshal(p)
	if err != nil { // cannot happen for this type; keep the status anyway
		body = []byte(`{"type":"about:blank","status":` + strconv.Itoa(p.Status) + `}`)
	}
	ctx.Response.Header.SetContentType(problemContentType)
	ctx.SetStatusCode(p.Status)
	ctx.SetBody(body)
}
