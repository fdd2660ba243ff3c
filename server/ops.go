package server

import (
	"context"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// healthz is liveness: the process answers. It touches no dependency, so
// a database outage never gets healthy pods restarted. /livez is the same.
func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType(contentTypeJSON)
	ctx.SetBodyString(`{"status":"ok"}`)
}

type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// readyTTL is how long a readiness result is reused. Probes are
// unauthenticated and unlimited; reusing the result bounds the pings a
// flood of them causes to one round per dependency per readyTTL.
const readyTTL = time.Second

// readyCache holds the last readiness result. Its mutex is held while the
// checks run, so concurrent probes wait for the one round in flight rather
// than start their own.
type readyCache struct {
	mu     sync.Mutex
	at     time.Time
	status int
	out    readiness
}

// readyz is readiness: every dependency answers within a short deadline.
// A failing optional check leaves the service ready, "degraded".
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	c := &s.ready
	c.mu.Lock()
	if c.at.IsZero() || time.Since(c.at) >= readyTTL {
		c.status, c.out = s.checkReadiness(s.callContext(ctx))
		c.at = time.Now()
	}
	status, out := c.status, c.out
	c.mu.Unlock()
	if status != fasthttp.StatusOK {
		setRetryAfter(ctx, time.Second)
	}
	s.writeJSON(ctx, status, out)
}

// checkReadiness runs every check at once under one deadline, within the
// budget of the probe that runs the round (parent).
func (s *Server) checkReadiness(parent context.Context) (int, readiness) {
	c, cancel := context.WithTimeout(parent, 2*time.Second)
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
	if unavailable {
		out.Status = "unavailable"
		return fasthttp.StatusServiceUnavailable, out
	}
	return fasthttp.StatusOK, out
}
