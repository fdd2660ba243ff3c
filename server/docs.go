package server

import (
	_ "embed"

	"github.com/valyala/fasthttp"
)

//go:embed openapi.json
var openAPIDocument []byte

func (s *Server) openAPI(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType(contentTypeJSON)
	ctx.Response.SetBodyRaw(openAPIDocument)
}

// The documentation pages load their assets from a CDN, as FastAPI's do,
// so the binary carries no JavaScript bundle. The document's URL is
// relative so the pages work behind a path prefix (an API Gateway stage).
const swaggerPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>api-perf — Swagger UI</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>`

const redocPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>api-perf — ReDoc</title></head>
<body><redoc spec-url="openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body></html>`

func (s *Server) swaggerUI(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/html; charset=utf-8")
	ctx.SetBodyString(swaggerPage)
}

func (s *Server) redoc(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/html; charset=utf-8")
	ctx.SetBodyString(redocPage)
}
