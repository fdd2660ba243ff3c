package main

import (
	"context"
	"log/slog"

	awslambda "github.com/aws/aws-lambda-go/lambda"
	"github.com/valyala/fasthttp"

	"github.com/api-perf/api-perf/server/lambda"
)

// serveLambda runs the Lambda runtime loop, handing every HTTP event to h
// in process.
func serveLambda(ctx context.Context, h fasthttp.RequestHandler, stripPrefix string, logger *slog.Logger) error {
	handler := lambda.NewHandler(h, lambda.Options{StripPrefix: stripPrefix, Logger: logger})
	awslambda.StartWithOptions(handler, awslambda.WithContext(ctx))
	return nil
}
