"""``/docs``: Swagger UI over ``/openapi.json``, served from files vendored in the package (operators run offline,
so nothing comes from a CDN; see ``static/swagger-ui/README.md`` for the version and licence)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import Response, get
from litestar.params import FromPath

from gateway.errors import RouteNotFound

STATIC = Path(__file__).parent / "static"
SWAGGER_UI = STATIC / "swagger-ui"
# The only files served: a fixed table, so no request path ever reaches the file system.
ASSETS = {
    "swagger-ui-bundle.js": (SWAGGER_UI / "swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": (SWAGGER_UI / "swagger-ui.css", "text/css; charset=utf-8"),
    "favicon-32x32.png": (SWAGGER_UI / "favicon-32x32.png", "image/png"),
    "LICENSE": (SWAGGER_UI / "LICENSE", "text/plain; charset=utf-8"),
    "docs.js": (STATIC / "docs.js", "text/javascript; charset=utf-8"),
}


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


@get("/docs", media_type="text/html")
async def api_docs() -> Response[bytes]:
    """The interactive API page."""
    return Response(_read(STATIC / "docs.html"), media_type="text/html; charset=utf-8")


@get("/docs/assets/{name:str}")
async def api_docs_asset(name: FromPath[str]) -> Response[bytes]:
    """A script, stylesheet or image of the API page."""
    asset = ASSETS.get(name)
    if asset is None:
        raise RouteNotFound(f"No asset `{name}`.", param="name")
    path, media_type = asset
    return Response(_read(path), media_type=media_type, headers={"cache-control": "public, max-age=3600"})
