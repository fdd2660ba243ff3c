package server

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
)

// healthz is liveness: the process answers. It touches no dependency, so
// a database outage never gets healthy pods restarted.
func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType(contentTypeJSON)
	ctx.SetBodyString(`{"status":"ok"}`)
}

type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// readyz is readiness: every dependency answers within a short deadline.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := readiness{Status: "ok", Checks: make(map[string]string, len(s.cfg.Ready))}
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(s.cfg.Ready))
	for _, chk := range s.cfg.Ready {
		go func() { results <- result{chk.Name, chk.Ping(c)} }()
	}
	for range s.cfg.Ready {
		r := <-results
		out.Checks[r.name] = "ok"
		if r.err != nil {
			out.Status = "unavailable"
			out.Checks[r.name] = "unavailable"
			s.log.Warn("readiness check failed", "check", r.name, "error", r.err)
		}
	}
	status := fasthttp.StatusOK
	if out.Status != "ok" {
		status = fasthttp.StatusServiceUnavailable
		setRetryAfter(ctx, time.Second)
	}
	s.writeJSON(ctx, status, out)
}
