package cache

import (
	"context"
	"time"

	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// tracedClient makes every command sent through Do, DoMulti, DoCache and
// DoMultiCache (Lua scripts' EVALSHA included) a client span: db.system.name
// "redis", db.operation.name the command, server.address the node. Command
// arguments are not recorded: they hold product bodies.
//
// It plays the part of rueidisotel, whose published versions do not build
// against this rueidis; the spans follow the same conventions.
type tracedClient struct {
	rueidis.Client
	tracer trace.Tracer
	attrs  []attribute.KeyValue
}

func newTracedClient(c rueidis.Client, tp trace.TracerProvider, addrs []string) *tracedClient {
	attrs := []attribute.KeyValue{
		semconv.DBSystemNameRedis,
		attribute.String("db.system", "redis"),
	}
	if len(addrs) == 1 {
		attrs = append(attrs, semconv.ServerAddress(addrs[0]))
	}
	return &tracedClient{Client: c, tracer: tp.Tracer("github.com/api-perf/api-perf/cache"), attrs: attrs}
}

func (c *tracedClient) start(ctx context.Context, name string, batch int) (context.Context, trace.Span) {
	attrs := make([]attribute.KeyValue, 0, len(c.attrs)+2)
	attrs = append(attrs, c.attrs...)
	attrs = append(attrs, semconv.DBOperationName(name))
	spanName := name
	if batch > 1 {
		attrs = append(attrs, semconv.DBOperationBatchSize(batch))
		spanName = "BATCH " + name
	}
	return c.tracer.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// end marks span failed by err; a nil reply (missing key) is an answer.
func end(span trace.Span, err error) {
	if err != nil && !rueidis.IsRedisNil(err) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func firstName(cmds []string) string {
	if len(cmds) == 0 {
		return "redis"
	}
	return cmds[0]
}

func (c *tracedClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	ctx, span := c.start(ctx, firstName(cmd.Commands()), 1)
	resp := c.Client.Do(ctx, cmd)
	end(span, resp.Error())
	return resp
}

func (c *tracedClient) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	name := "redis"
	if len(multi) > 0 {
		name = firstName(multi[0].Commands())
	}
	ctx, span := c.start(ctx, name, len(multi))
	resps := c.Client.DoMulti(ctx, multi...)
	end(span, firstError(resps))
	return resps
}

func (c *tracedClient) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	ctx, span := c.start(ctx, firstName(cmd.Commands()), 1)
	resp := c.Client.DoCache(ctx, cmd, ttl)
	// A client-side hit never left the process; the span says so.
	span.SetAttributes(attribute.Bool("db.redis.client_cache_hit", resp.IsCacheHit()))
	end(span, resp.Error())
	return resp
}

func (c *tracedClient) DoMultiCache(ctx context.Context, multi ...rueidis.CacheableTTL) []rueidis.RedisResult {
	name := "redis"
	if len(multi) > 0 {
		name = firstName(multi[0].Cmd.Commands())
	}
	ctx, span := c.start(ctx, name, len(multi))
	resps := c.Client.DoMultiCache(ctx, multi...)
	end(span, firstError(resps))
	return resps
}

// Nodes returns the nodes' clients, each traced too (the limiter loads its
// script on every node through them).
func (c *tracedClient) Nodes() map[string]rueidis.Client {
	nodes := c.Client.Nodes()
	for addr, n := range nodes {
		nodes[addr] = &tracedClient{Client: n, tracer: c.tracer, attrs: append(c.attrs[:2:2], semconv.ServerAddress(addr))}
	}
	return nodes
}

func firstError(resps []rueidis.RedisResult) error {
	for _, r := range resps {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return err
		}
	}
	return nil
}

// traced reports whether c traces its commands, so that the cache gives
// its calls the request's span as their parent.
func traced(c rueidis.Client) bool {
	if tc, ok := c.(*trackedClient); ok {
		c = tc.Client
	}
	_, ok := c.(*tracedClient)
	return ok
}

// callCtx is the context of a Redis call made for a caller with ctx: the
// cache's shared deadline (see deadlines), carrying the caller's span when
// the client traces, so that the call's span is a child of the request's.
func (r *Redis) callCtx(ctx context.Context) context.Context {
	d := r.dl.get()
	if !r.traced {
		return d
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return trace.ContextWithSpanContext(d, sc)
	}
	return d
}
