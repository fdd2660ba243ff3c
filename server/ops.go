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
// A failing optional check leaves the service ready, "degraded".
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	c, cancel := context.WithTimeout(s.callContext(ctx), 2*time.Second)
	defer cancel()
	out := readiness{Status: "ok", Checks: make(map[string]string, len(s.cfg.Ready))}
	type result struct {
		chk Check
		err error
	}
	results := make(chan result, len(s.cfg.Ready))
	for _, chk := range s.cfg.Ready {
		go func() { results <- result{chk, chk.Ping(c)} }()
	}
	unavailable := false
	for range s.cfg.Ready {
		r := <-results
		out.Checks[r.chk.Name] = "ok"
		switch {
		case r.err == nil:
		case r.chk.Optional:
			out.Checks[r.chk.Name] = "degraded"
			if out.Status == "ok" {
				out.Status = "degraded"
			}
			s.log.Warn("readiness check degraded", "check", r.chk.Name, "error", r.err)
		default:
			unavailable = true
			out.Checks[r.chk.Name] = "unavailable"
			s.log.Warn("readiness check failed", "check", r.chk.Name, "error", r.err)
		}
	}
	status := fasthttp.StatusOK
	if unavailable {
		out.Status = "unavailable"
		status = fasthttp.StatusServiceUnavailable
		setRetryAfter(ctx, time.Second)
	}
	s.writeJSON(ctx, status, out)
}
