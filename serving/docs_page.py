"""The API's docs page (Swagger UI) without third-party calls.

BentoML 1.4 serves `/` from `_bentoml_impl/server/main-openapi.html`, which loads Google Tag
Manager (GTM-WNPGWRM): a reviewer opening the docs of an internal model would call Google. This
middleware answers `/` and `/docs` with a page of its own that uses only BentoML's bundled Swagger
UI files (`/static_content/...`, served by BentoML from the package), with Swagger's online spec
validator off (it fetches a badge from validator.swagger.io), and a Content-Security-Policy that
lets the browser load and connect to this server alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PAGE_PATHS = frozenset({"/", "/docs"})
SCRIPT_PATH = "/docs-init.js"

PAGE = b"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>API docs</title>
    <link rel="stylesheet" type="text/css" href="/static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="/static_content/index.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="/static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="/docs-init.js" charset="UTF-8"></script>
  </body>
</html>
"""

SCRIPT = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
};
"""

# Swagger UI sets inline styles; everything else comes from this server only.
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; frame-src 'none'; object-src 'none'"
)


class DocsPage:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("GET", "HEAD")
            or (path not in PAGE_PATHS and path != SCRIPT_PATH)
        ):
            await self.app(scope, receive, send)
            return
        body, kind = (SCRIPT, b"text/javascript") if path == SCRIPT_PATH else (PAGE, b"text/html")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", kind + b"; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"content-security-policy", CSP),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
