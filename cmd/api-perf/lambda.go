package main

import (
	"context"
	"log/slog"

	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/server/lambda"
	awslambda "github.com/aws/aws-lambda-go/lambda"
)

// serveLambda serves Lambda HTTP events with srv's handler, in process,
// until ctx ends. The handler recovers and logs as it does behind the
// listener, and fasthttp's lines go to the server's logger at the same
// level.
//
// The aws-lambda-go loop never returns: it exits the process itself when the
// Runtime API fails. It therefore runs on its own goroutine with a context
// that ctx's cancellation does not reach (a cancelled loop would exit with
// status 1 before the caller's deferred closes run), and serveLambda returns
// when ctx ends, so the caller closes its pools as after an HTTP drain.
// Lambda only sends SIGTERM at shutdown to functions with an extension;
// WithEnableSIGTERM registers an empty internal one for that.
//
// stripPrefix is the base path of a custom domain mapping (LAMBDA_STRIP_PREFIX);
// a named HTTP API stage is stripped too, so the routes match as they are.
// With tracing (tp not nil), each invocation's spans are exported before it
// answers (see tracer.flushing).
func serveLambda(ctx context.Context, srv *server.Server, tp *tracer, stripPrefix string, logger *slog.Logger) error {
	handler := lambda.NewHandler(tp.flushing(srv.Handler()), lambda.Options{
		StripPrefix: stripPrefix,
		StripStage:  true,
		Logger:      srv.FastHTTPLogger(),
	})
	go awslambda.StartWithOptions(handler,
		awslambda.WithContext(context.WithoutCancel(ctx)),
		awslambda.WithEnableSIGTERM())
	<-ctx.Done()
	logger.Info("Lambda environment shutting down")
	return nil
}
