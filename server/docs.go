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
// so the binary carries no JavaScript bundle. Each asset is pinned to an
// exact version and carries Subresource Integrity: the browser refuses a
// file whose SHA-384 is not the one computed here from the npm package's
// file (jsDelivr serves npm files byte for byte), so a compromised CDN or
// package release cannot run script on the API's origin. To upgrade, take
// the new version's files from `npm pack` and recompute:
// openssl dgst -sha384 -binary FILE | base64. The document's URL is
// relative so the pages work behind a path prefix (an API Gateway stage).
const swaggerPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>api-perf — Swagger UI</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui.css"
 integrity="sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I" crossorigin="anonymous"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui-bundle.js"
 integrity="sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9" crossorigin="anonymous"></script>
<script>window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>`

const redocPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>api-perf — ReDoc</title></head>
<body><redoc spec-url="openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2.5.4/bundles/redoc.standalone.js"
 integrity="sha384-w447zOpYfw/1Tv/5AK9NfHTlQIqE3RVR6KY62jCyy9zNDgO64cMwGGP1Fj0zJVf5" crossorigin="anonymous"></script>
</body></html>`

func (s *Server) swaggerUI(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/html; charset=utf-8")
	ctx.SetBodyString(swaggerPage)
}

func (s *Server) redoc(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/html; charset=utf-8")
	ctx.SetBodyString(redocPage)
}
