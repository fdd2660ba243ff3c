package server

import (
	"errors"
	"strconv"
	"time"

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
	case apiperf.EPRECONDREQUIRED:
		return fasthttp.StatusPreconditionRequired
	case apiperf.EUNAVAILABLE:
		return fasthttp.StatusServiceUnavailable
	case apiperf.EUNAUTHORIZED:
		return fasthttp.StatusUnauthorized
	}
	return fasthttp.StatusInternalServerError
}

// problemOf is the problem for err, with what a client may see of it.
func problemOf(err error) Problem {
	status := statusOf(apiperf.ErrorCode(err))
	p := Problem{Status: status, Detail: apiperf.ErrorMessage(err)}
	var ae *apiperf.Error
	if errors.As(err, &ae) {
		p.Errors = ae.Fields
	}
	if status == fasthttp.StatusInternalServerError {
		p.Detail = "internal error; quote the request id when reporting it"
	}
	return p
}

// writeError answers with the problem for err. Internal errors are logged
// with the request id and reach the client as a bare 500. Answers a client
// should retry (503, and 409 for a key still being processed) carry
// Retry-After.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, err error) {
	p := problemOf(err)
	switch {
	case p.Status >= 500:
		s.log.Error("request failed", "request_id", requestID(ctx), "method", string(ctx.Method()),
			"path", string(ctx.Path()), "status", p.Status, "error", err)
		if p.Status == fasthttp.StatusServiceUnavailable {
			setRetryAfter(ctx, time.Second)
		}
	case apiperf.ErrorCode(err) == apiperf.EINPROGRESS:
		setRetryAfter(ctx, time.Second)
	case p.Status == fasthttp.StatusUnauthorized:
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="api-perf"`)
	}
	s.writeProblem(ctx, p)
}

// problem answers with a problem of the given status and detail.
func (s *Server) problem(ctx *fasthttp.RequestCtx, status int, detail string) {
	s.writeProblem(ctx, Problem{Status: status, Detail: detail})
}

func (s *Server) writeProblem(ctx *fasthttp.RequestCtx, p Problem) {
	ctx.Response.Header.SetContentType(problemContentType)
	ctx.SetStatusCode(p.Status)
	ctx.SetBody(problemBody(p, string(ctx.Path()), requestID(ctx)))
}

// problemBody is the JSON of p for the request at path with id rid.
func problemBody(p Problem, path, rid string) []byte {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = fasthttp.StatusMessage(p.Status)
	}
	p.Instance = path
	p.RequestID = rid
	body, err := json.Marshal(p)
	if err != nil { // cannot happen for this type; keep the status anyway
		body = []byte(`{"type":"about:blank","status":` + strconv.Itoa(p.Status) + `}`)
	}
	return body
}
