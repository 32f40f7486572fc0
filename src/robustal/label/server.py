"""The labeling page: a Starlette app over a `LabelProject`, served by uvicorn (``robustal label serve``).

One image at a time with the class buttons (templates/index.html, static/label.js); the page talks
to a small JSON API:

- ``GET /api/next``: leases the next item to this annotator (``{"item": null}``: nothing to ask now)
- ``GET /api/items/{id}``, ``GET /api/items/{id}/image`` (PNG): an item by its integer id only
- ``POST /api/items/{id}/label`` ``{"label": k}`` (a past item: relabel), ``POST /api/items/{id}/skip``
- ``POST /api/undo``: undoes this annotator's latest label or skip
- ``GET /api/history``: this annotator's latest items; ``GET /api/progress``: counts and rounds

Safety: no path from a request reaches the filesystem (images are read by the project from its
cache by id; static files through Starlette's `StaticFiles`). The server binds 127.0.0.1 by default;
a network address needs a token, which every request must then carry (a cookie set by the first
visit of ``/?token=...``, or ``Authorization: Bearer ...``). Without a token, the Host header must
name a loopback address (a web page that rebinds its own domain to 127.0.0.1 must not read the
API). A POST must send JSON (a cross-site form cannot) and, when the browser names its origin,
come from this page's origin; no request another site's page makes (``Sec-Fetch-Site:
cross-site``) reaches the API.

The project is called from the event loop's thread only (async endpoints, no thread pool): its
calls are short SQLite transactions, and one thread keeps them in one order.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from robustal.errors import ConfigError, RobustALError

if TYPE_CHECKING:
    from robustal.label.project import Item, LabelProject

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "robustal_token"
ANNOTATOR_COOKIE = "robustal_annotator"
ANNOTATOR_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_TOKEN_LENGTH = 16
MAX_BODY_BYTES = 4096  # the API's bodies are a few bytes: {"label": 3}
MAX_ITEM_ID = 2**63 - 1  # SQLite's largest rowid; a longer number in the URL is no item
MAX_HISTORY = 100
ITEM_FIELDS = ("id", "role", "round", "rank", "score", "label", "skipped")  # what the page is told of an item
TOKEN_HINT = "e.g. --token $(python -c 'import secrets; print(secrets.token_urlsafe())')"
# the page's own files only: no inline script or style, no other origin, not framed by another site
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an IP address, IPv6 with or without brackets) is this machine only."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(host: str, port: int, token: str | None) -> None:
    """`ConfigError` unless serving on `host`:`port` is safe: a network address needs a token."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port number: pass 1..65535 (e.g. 8000)")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"--host {host} makes the labeling page reachable from the network: pass --token too "
            f"({TOKEN_HINT}), or keep the default --host 127.0.0.1"
        )
    check_token(token)


def check_token(token: str | None) -> None:
    """`ConfigError` for a token short enough to guess."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"--token is {len(token)} characters long: use at least {MIN_TOKEN_LENGTH} ({TOKEN_HINT})")


def host_name(host_header: str) -> str:
    """The name or address of a Host header, without its port (``[::1]:8000`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def error(status: int, message: str) -> JSONResponse:
    """A JSON error response: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


class Guard(BaseHTTPMiddleware):
    """Checks every request (host, token, cross-site POSTs) and names its annotator."""

    def __init__(self, app, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        if self.token is not None and "token" in request.query_params:
            # the first visit of the printed URL: keep the token in a cookie, drop it from the address bar
            target = request.url.remove_query_params("token")
            path = "/" + target.path.lstrip("/")  # never //other.site: a redirect elsewhere
            response: Response = RedirectResponse(path + (f"?{target.query}" if target.query else ""), 303)
            # lax, not strict: a link clicked on another site opens the page (its POSTs stay refused)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="lax")
            return response
        try:
            annotator, new = self.annotator(request)
        except ValueError as bad:
            return error(400, str(bad))
        request.state.annotator = annotator
        response = await call_next(request)
        if new:
            response.set_cookie(ANNOTATOR_COOKIE, annotator, max_age=365 * 24 * 3600, httponly=True, samesite="lax")
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def refusal(self, request: Request) -> Response | None:
        """The error response for a request that must not reach the app, or None."""
        if self.token is None:
            host = host_name(request.headers.get("host", ""))
            if not is_loopback(host):
                return error(
                    403,
                    f"the Host header names {host!r}, not this machine: open the page at http://127.0.0.1 "
                    "(serving a network address needs --host and --token)",
                )
        elif not self.has_token(request):
            return error(401, "this page needs its token: open the address `robustal label serve` printed (…/?token=…)")
        if request.url.path.startswith("/api/") and request.headers.get("sec-fetch-site") == "cross-site":
            # another site's <img> or script: even a GET leases an item (browsers name the site)
            return error(403, "another site cannot use this page's API")
        if request.method == "POST":
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != "application/json":
                return error(415, "send the request body as JSON (Content-Type: application/json)")
            origin = request.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
                return error(403, f"a request from another site ({origin}) cannot change labels")
        return None

    def has_token(self, request: Request) -> bool:
        """Whether the request carries the token (query, Bearer header or cookie)."""
        authorization = request.headers.get("authorization", "")
        offered = [
            request.query_params.get("token"),
            authorization[7:] if authorization.lower().startswith("bearer ") else None,
            request.cookies.get(TOKEN_COOKIE),
        ]
        expected = self.token.encode()
        return any(value is not None and hmac.compare_digest(value.encode(), expected) for value in offered)

    @staticmethod
    def annotator(request: Request) -> tuple[str, bool]:
        """The annotator's id and whether the cookie must be (re)set: ``?annotator=``, else the
        cookie, else a new random id. `ValueError` for a chosen id that is not a short plain name."""
        chosen = request.query_params.get("annotator")
        if chosen is not None:
            if not ANNOTATOR_NAME.fullmatch(chosen):
                raise ValueError(f"?annotator= takes 1 to 64 letters, digits or _ . @ -; got {chosen!r}")
            return chosen, chosen != request.cookies.get(ANNOTATOR_COOKIE)
        cookie = request.cookies.get(ANNOTATOR_COOKIE, "")
        if ANNOTATOR_NAME.fullmatch(cookie):
            return cookie, False
        return f"annotator-{secrets.token_hex(4)}", True


def create_app(project: LabelProject, token: str | None = None) -> Starlette:
    """The labeling web app over `project`; with `token`, every request must carry it."""
    check_token(token)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)

    def item_json(item: Item) -> dict[str, Any]:
        # not the file's path: it is the annotator's business only through the image (a name like
        # cat_001.jpg would suggest a label), and it is no address to fetch anything from
        shown = {name: getattr(item, name) for name in ITEM_FIELDS}
        shown["label_name"] = None if item.label is None else project.classes[item.label]
        shown["image"] = f"/api/items/{item.id}/image"
        return shown

    def progress_json() -> dict[str, Any]:
        return asdict(project.progress())

    def existing(request: Request) -> Item:
        """The item of the URL's id; 404 when there is none."""
        item_id = request.path_params["item_id"]
        try:
            if item_id > MAX_ITEM_ID:
                raise ConfigError(f"unknown item id {item_id}")
            return project.item(item_id)
        except ConfigError as unknown:
            raise HTTPException(404, str(unknown)) from None

    async def page(request: Request) -> Response:
        html = templates.get_template("index.html").render(
            project_name=project.path.name, classes=list(zip(project.classes, class_keys(project.classes))),
            annotator=request.state.annotator
        )
        return HTMLResponse(html)

    async def next_item(request: Request) -> Response:
        item = project.next_item(request.state.annotator)
        return JSONResponse({"item": None if item is None else item_json(item), "progress": progress_json()})

    async def show_item(request: Request) -> Response:
        return JSONResponse({"item": item_json(existing(request))})

    async def image(request: Request) -> Response:
        item = existing(request)
        # an item's image never changes: the browser may keep it
        return Response(project.image_png(item.id), media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    async def label(request: Request) -> Response:
        item = existing(request)
        body = await json_body(request)
        chosen = body.get("label")
        if type(chosen) is not int or not 0 <= chosen < len(project.classes):
            names = ", ".join(f"{index} {name}" for index, name in enumerate(project.classes))
            raise HTTPException(400, f'"label" must be a class number: {names}; got {json.dumps(chosen)}')
        project.label(item.id, chosen, request.state.annotator)
        started = project.maybe_start_training()
        return JSONResponse(
            {"item": item_json(project.item(item.id)), "progress": progress_json(), "training_started": started}
        )

    async def skip(request: Request) -> Response:
        item = existing(request)
        await json_body(request)
        project.skip(item.id, request.state.annotator)
        return JSONResponse({"item": item_json(project.item(item.id)), "progress": progress_json()})

    async def undo(request: Request) -> Response:
        await json_body(request)
        item = project.undo(request.state.annotator)
        return JSONResponse({"item": None if item is None else item_json(item), "progress": progress_json()})

    async def history(request: Request) -> Response:
        limit = request.query_params.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_HISTORY:
            raise HTTPException(400, f"?limit= takes a whole number from 1 to {MAX_HISTORY}; got {limit!r}")
        items = project.history(request.state.annotator, int(limit))
        return JSONResponse({"items": [item_json(item) for item in items]})

    async def progress(request: Request) -> Response:
        return JSONResponse(
            {
                "progress": progress_json(),
                "rounds": [asdict(summary) for summary in project.rounds()],
                "classes": project.classes,
            }
        )

    routes = [
        Route("/", page),
        Route("/api/next", next_item),
        Route("/api/items/{item_id:int}", show_item),
        Route("/api/items/{item_id:int}/image", image),
        Route("/api/items/{item_id:int}/label", label, methods=["POST"]),
        Route("/api/items/{item_id:int}/skip", skip, methods=["POST"]),
        Route("/api/undo", undo, methods=["POST"]),
        Route("/api/history", history),
        Route("/api/progress", progress),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404 and exc.detail == "Not Found":  # the router's: no route matched
            return error(404, f"no page at {request.url.path}: images are at /api/items/<item number>/image")
        return error(exc.status_code, exc.detail)

    handlers = {
        HTTPException: http_error,
        ConfigError: lambda request, exc: error(400, str(exc)),
        RobustALError: lambda request, exc: error(500, str(exc)),
    }
    return Starlette(routes=routes, middleware=[Middleware(Guard, token=token)], exception_handlers=handlers)


def class_keys(classes: list[str]) -> list[str | None]:
    """The key that labels each class: its own name when the classes are the digits 0, 1, ...
    in order (MNIST: key 3 is class 3), else 1-9 then 0 for the first ten classes, none beyond."""
    if classes == [str(number) for number in range(len(classes))] and len(classes) <= 10:
        return list(classes)
    return [str((index + 1) % 10) if index < 10 else None for index in range(len(classes))]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (an empty body: ``{}``); 400 or 413 for anything else."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the request body is over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        raise HTTPException(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return data


def page_url(host: str, port: int, token: str | None) -> str:
    """The address to open in a browser (with the token for the first visit)."""
    shown = f"[{host}]" if ":" in host else host
    url = URL(f"http://{shown}:{port}/")
    return str(url.include_query_params(token=token)) if token else str(url)


def serve(project_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None) -> None:
    """Serve the labeling page of the project in `project_dir` until interrupted (uvicorn)."""
    check_address(host, port, token)
    import uvicorn

    from robustal.label.project import LabelProject

    project = LabelProject.open(project_dir)
    project.maybe_start_training()  # a batch completed just before a crash trains now
    print(f"Labeling {project.path} at {page_url(host, port, token)}  (Ctrl+C stops; every label is saved)", flush=True)
    try:
        uvicorn.run(create_app(project, token), host=host, port=port, log_level="warning")
    finally:
        project.close()
