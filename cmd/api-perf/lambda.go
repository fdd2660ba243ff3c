package main

import (
	"context"
	"log/slog"

	awslambda "github.com/aws/aws-lambda-go/lambda"
	"github.com/valyala/fasthttp"

	"github.com/api-perf/api-perf/server/lambda"
)

// serveLambda serves Lambda HTTP events with h, in process, until ctx ends.
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
func serveLambda(ctx context.Context, h fasthttp.RequestHandler, stripPrefix string, logger *slog.Logger) error {
	handler := lambda.NewHandler(h, lambda.Options{
		StripPrefix: stripPrefix,
		StripStage:  true,
		Logger:      logger,
	})
	go awslambda.StartWithOptions(handler,
		awslambda.WithContext(context.WithoutCancel(ctx)),
		awslambda.WithEnableSIGTERM())
	<-ctx.Done()
	logger.Info("Lambda environment shutting down")
	return nil
}
