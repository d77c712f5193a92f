"""The HTTP application: routes, the token check, JSON, the event stream and the dashboard.

The only module that imports Starlette. Handlers are thin: parse and validate,
check the token where the route needs it, ask the view (or queue a request for
the daemon's main loop and await its answer), and hand the result to a document
builder in :mod:`agentq.api.routes`. The whole app sits behind
:class:`agentq.api.security.Guard` (Host check, body cap, security headers).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agentq.api import routes as docs
from agentq.api import sse
from agentq.api.metrics import CONTENT_TYPE, Metrics
from agentq.api.security import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    Guard,
    allowed_hosts,
    token_matches,
)
from agentq.api.view import Answer, DaemonView, Request
from agentq.core.errors import AgentqError

#: How long a request waits for the main loop's answer (a swap may take a while).
ANSWER_TIMEOUT = 30.0
#: Event streams served at once (each is one long request).
MAX_STREAMS = 16
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
}

Handler = Callable[[HttpRequest], Awaitable[Response]]


def _json(doc: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(doc, status_code=status)


def _error(status: int, message: str) -> JSONResponse:
    return _json({"ok": False, "message": message}, status)


class Api:
    """The routes, bound to one view, one token and one metrics registry."""

    def __init__(self, view: DaemonView, token: str, metrics: Metrics) -> None:
        self.view = view
        self._token = token
        self._metrics = metrics
        self._lag = view.loop_lag
        self._streams = 0
        self._bell: sse.Bell | None = None
        self.stopping = threading.Event()
        self._assets = {
            path: (resources.files("agentq.api").joinpath("static", name).read_bytes(), kind)
            for path, (name, kind) in _STATIC.items()
        }

    # -- helpers ----------------------------------------------------------------------------

    def _authorized(self, request: HttpRequest) -> bool:
        return token_matches(request.headers.get("authorization"), self._token)

    async def _wait(self, request: Request) -> Answer:
        """Queue ``request`` for the main loop and wait (without a thread) for its answer."""
        future = self.view.request(request)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), ANSWER_TIMEOUT)
        except TimeoutError:
            future.cancel()  # not yet taken by the loop: it never will be
            return Answer(False, f"the daemon did not answer within {ANSWER_TIMEOUT:g}s", 504)

    async def _ask(self, request: Request) -> Response:
        answer = await self._wait(request)
        return _json(answer.to_dict(), answer.status)

    # -- read-only routes -------------------------------------------------------------------

    async def healthz(self, request: HttpRequest) -> Response:
        doc = docs.health_doc(self.view.snapshot(), self._lag(), time.time())
        return _json(doc, 200 if doc["ok"] else 503)

    async def watchdog(self, request: HttpRequest) -> Response:
        return _json(docs.watchdog_doc(self.view.snapshot(), self._lag(), time.time()))

    async def tasks(self, request: HttpRequest) -> Response:
        q = request.query_params
        project = q.get("project") or None
        if project is not None:
            docs.check_project(project, self.view.snapshot().projects)
        state, limit = docs.parse_state(q.get("state")), docs.parse_limit(q.get("limit"))
        cursor = q.get("cursor") or None
        try:
            page = await run_in_threadpool(self.view.tasks, project, state, limit, cursor)
        except ValueError as exc:
            raise docs.BadRequest(str(exc)) from exc
        return _json(docs.tasks_doc(page, time.time()))

    async def task(self, request: HttpRequest) -> Response:
        if not self._authorized(request):
            return _error(401, "this shows a task's body: send Authorization: Bearer <token>")
        project, name = self._target(request)
        detail = await run_in_threadpool(self.view.task, project, name)
        if detail is None:
            return _error(404, f"no task {name!r} in {project!r}")
        return _json(docs.task_doc(detail, time.time()))

    async def sessions(self, request: HttpRequest) -> Response:
        panes = None
        if request.query_params.get("pane") not in (None, "", "0"):
            if not self._authorized(request):
                return _error(401, "pane lines need the token: send Authorization: Bearer <token>")
            answer = await self._wait(Request("panes"))
            if not answer.ok:
                return _json(answer.to_dict(), answer.status)
            panes = answer.data.get("panes", {})
        return _json(docs.sessions_doc(self.view.snapshot(), time.time(), panes))

    async def status(self, request: HttpRequest) -> Response:
        return _json(docs.status_doc(self.view.snapshot(), time.time()))

    async def accounts(self, request: HttpRequest) -> Response:
        return _json(docs.accounts_doc(self.view.snapshot()))

    async def delegated(self, request: HttpRequest) -> Response:
        page = await run_in_threadpool(self.view.tasks, None, "delegated", docs.MAX_LIMIT, None)
        return _json(docs.delegated_doc(self.view.snapshot(), page, time.time()))

    async def metrics(self, request: HttpRequest) -> Response:
        body = await run_in_threadpool(self._metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    async def events(self, request: HttpRequest) -> Response:
        if self._streams >= MAX_STREAMS:
            return _error(503, f"too many event streams (at most {MAX_STREAMS})")
        if self._bell is None:
            self._bell = sse.Bell(self.view, asyncio.get_running_loop())
        bell = self._bell
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")

        async def counted() -> Any:
            self._streams += 1
            try:
                async for chunk in sse.stream(self.view, bell, last, self.stopping):
                    yield chunk
            finally:
                self._streams -= 1

        headers = {"x-accel-buffering": "no"}
        return StreamingResponse(counted(), media_type="text/event-stream", headers=headers)

    async def static(self, request: HttpRequest) -> Response:
        body, kind = self._assets[request.url.path]
        return Response(body, media_type=kind)

    # -- mutations --------------------------------------------------------------------------

    async def submit(self, request: HttpRequest) -> Response:
        if not self._authorized(request):
            return _error(401, "submitting needs the token: send Authorization: Bearer <token>")
        doc = await _json_body(request)
        project = docs.check_project(str(doc.get("project", "")), self.view.snapshot().projects)
        text, name = doc.get("text"), doc.get("name")
        if not isinstance(text, str) or not text.strip():
            raise docs.BadRequest("text: the task's markdown (frontmatter optional) is required")
        if name is not None:
            name = docs.check_name(str(name))
        try:
            entry = await run_in_threadpool(self.view.submit, project, text, name)
        except AgentqError as exc:
            raise docs.BadRequest(str(exc)) from exc
        return _json({"ok": True, **entry.to_dict(time.time())}, 201)

    async def retry(self, request: HttpRequest) -> Response:
        return await self._on_task(request, "retry")

    async def cancel(self, request: HttpRequest) -> Response:
        return await self._on_task(request, "cancel")

    async def _on_task(self, request: HttpRequest, action: Any) -> Response:
        if not self._authorized(request):
            return _error(401, f"{action} needs the token: send Authorization: Bearer <token>")
        project, name = self._target(request)
        return await self._ask(Request(action, project=project, name=name))

    async def swap(self, request: HttpRequest) -> Response:
        if not self._authorized(request):
            return _error(401, "swap needs the token: send Authorization: Bearer <token>")
        doc = await _json_body(request, allow_empty=True)
        if doc.get("clear"):
            return await self._ask(Request("clear"))
        to = doc.get("to")
        if to is not None and not isinstance(to, str):
            raise docs.BadRequest("to: an account name")
        return await self._ask(Request("swap", to=to or None))

    async def reload(self, request: HttpRequest) -> Response:
        if not self._authorized(request):
            return _error(401, "reload needs the token: send Authorization: Bearer <token>")
        return await self._ask(Request("reload"))

    def _target(self, request: HttpRequest) -> tuple[str, str]:
        params = request.path_params
        project = docs.check_project(str(params["project"]), self.view.snapshot().projects)
        return project, docs.check_name(str(params["name"]))


async def _json_body(request: HttpRequest, allow_empty: bool = False) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip() and allow_empty:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise docs.BadRequest("the body must be a JSON object") from exc
    if not isinstance(doc, dict):
        raise docs.BadRequest("the body must be a JSON object")
    return doc


def _guarded(handler: Handler) -> Handler:
    """Turn a bad parameter, an oversized or a too slow body into its JSON answer."""

    async def run(request: HttpRequest) -> Response:
        try:
            return await handler(request)
        except docs.BadRequest as exc:
            return _error(exc.status, str(exc))
        except BodyTooLarge:
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        except TimeoutError:
            return _error(408, "request body too slow")

    return run


def build_app(
    view: DaemonView,
    token: str,
    metrics: Metrics,
    listen: tuple[str, int],
    allowed_hosts_extra: list[str] | None = None,
) -> tuple[Guard, Api]:
    """The guarded ASGI app and its route object (whose ``stopping`` ends event streams)."""
    api = Api(view, token, metrics)
    get, post = ["GET"], ["POST"]
    table: list[tuple[str, Handler, list[str]]] = [
        ("/healthz", api.healthz, get),
        ("/watchdog/status", api.watchdog, get),
        ("/metrics", api.metrics, get),
        ("/api/tasks", api.tasks, get),
        ("/api/tasks", api.submit, post),
        ("/api/tasks/{project}/{name}", api.task, get),
        ("/api/tasks/{project}/{name}/retry", api.retry, post),
        ("/api/tasks/{project}/{name}/cancel", api.cancel, post),
        ("/api/status", api.status, get),
        ("/api/sessions", api.sessions, get),
        ("/api/accounts", api.accounts, get),
        ("/api/delegated/status", api.delegated, get),
        ("/api/events", api.events, get),
        ("/api/swap", api.swap, post),
        ("/api/reload", api.reload, post),
        *((path, api.static, get) for path in _STATIC),
    ]
    merged: dict[str, dict[str, Handler]] = {}
    for path, handler, methods in table:
        for method in methods:
            merged.setdefault(path, {})[method] = _guarded(handler)
    app = Starlette(routes=[_route(path, handlers) for path, handlers in merged.items()])
    hosts = allowed_hosts(listen, allowed_hosts_extra or [])
    return Guard(app, hosts), api


def _route(path: str, handlers: dict[str, Handler]) -> Route:
    async def dispatch(request: HttpRequest) -> Response:
        handler = handlers.get(request.method) or handlers["GET"]  # HEAD is answered as GET
        return await handler(request)

    methods = sorted(handlers)
    return Route(path, dispatch, methods=methods)
