"""The app factory: one FastAPI app for one or more runs, safe by default.

- Loopback only unless asked; any other host needs a token (`secrets.token_urlsafe`, printed in the URL). The token
  is accepted as `?token=` (the page then keeps it in a same-site, HTTP-only cookie), an `X-Alexnet-Token` header
  or `Authorization: Bearer`, compared with `secrets.compare_digest`, on every request, static files included.
- Without a token the Host header must name the loopback (a page elsewhere cannot reach the app through DNS
  rebinding).
- Request bodies are capped before anything is decoded: the Content-Length header, then the bytes as they stream.
- Inference runs in worker threads, at most `workers` at a time (one model replica each) plus a short queue; past
  that the answer is 503 at once, and a request that runs past `timeout_s` is answered 504. Every error is JSON
  ({"error": message}); the server stays up.

The host and token checks are HTTP middleware, not a route dependency: they must also guard the static files (a
mounted app, which route dependencies do not reach) and paths that match no route, and set the cookie on the page.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from alexnet.errors import AlexNetError
from alexnet.inspect.index import load_index
from alexnet.inspect.loaded import Busy, LoadedRun, UnknownImage, open_run
from alexnet.serve.api import router
from alexnet.serve.limits import Bounded, Limits, Refused
from alexnet.serve.state import ServedRun

__all__ = ["STATIC", "Background", "Bounded", "Limits", "Refused", "create_app", "listen", "open_runs"]

log = logging.getLogger("alexnet.serve")
STATIC = Path(__file__).with_name("static")
COOKIE = "alexnet_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _invalid(e: RequestValidationError) -> tuple[int, str]:
    first = e.errors()[0] if e.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return 400, f"bad request: {where}: {first.get('msg', 'invalid')}"


def _crashed(e: Exception) -> tuple[int, str]:
    log.exception("request failed")
    return 500, f"internal error ({type(e).__name__}); the server is still running"


# Exception type -> (status, message) of its JSON answer. Starlette picks the entry of the nearest class in the
# exception's MRO: UnknownImage and Busy before AlexNetError, Exception last.
ERRORS: dict[type[Exception], Callable[[Any], tuple[int, str]]] = {
    Refused: lambda e: (e.status, e.message),
    UnknownImage: lambda e: (404, str(e)),
    Busy: lambda e: (503, str(e)),
    AlexNetError: lambda e: (400, str(e)),
    HTTPException: lambda e: (e.status_code, str(e.detail)),
    RequestValidationError: _invalid,
    Exception: _crashed,
}


def _handler(answer: Callable[[Any], tuple[int, str]]):
    async def handle(_request: Request, e: Exception) -> JSONResponse:
        return error(*answer(e))

    return handle


async def guard(request: Request, call_next):
    """Without a token: the loopback (and the allowed hosts) only. With one: the token on every request."""
    token = request.app.state.token
    if token is None:
        host = _hostname(request.headers.get("host", ""))
        if host not in request.app.state.hosts:
            return error(403, f"host {host!r} refused: without a token the app answers only on the loopback")
        return await call_next(request)
    given = _token_of(request)
    if given is None:
        return error(401, "this server needs its token: open the URL it printed (…/?token=...)")
    if not secrets.compare_digest(given.encode(), token.encode()):
        return error(403, "wrong token")
    response = await call_next(request)
    if request.query_params.get("token"):
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


async def cap_body(request: Request, call_next):
    """A body whose Content-Length is over the limit is refused before it is read (the routes count the rest)."""
    limit = request.app.state.limits.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            return error(400, "bad Content-Length")
        if int(length) > limit:
            return error(413, f"upload too large: {int(length):,} bytes > limit {limit:,}")
    return await call_next(request)


page_router = APIRouter()


@page_router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


def create_app(runs: Sequence[Any], *, token: str | None = None, limits: Limits | None = None,
               allowed_hosts: Sequence[str] = (), progress: bool = False, say: Callable[[str], None] | None = None):
    """The app for `runs` (run folders or checkpoint files, or already opened `LoadedRun`s). Each run's index is
    read from beside its checkpoint or built now (with a progress bar when `progress`)."""
    limits = limits or Limits()
    app = FastAPI(title="alexnet serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runs = open_runs(runs, limits, progress, say)
    app.state.limits = limits
    app.state.bounded = Bounded(limits)
    app.state.token = token
    app.state.hosts = LOOPBACK_HOSTS | set(allowed_hosts)
    for middleware in (guard, cap_body):  # the last added runs first: the size check comes before the token check
        app.middleware("http")(middleware)
    for kind, answer in ERRORS.items():
        app.add_exception_handler(kind, _handler(answer))
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(page_router)
    return app


def _hostname(header: str) -> str:
    """The host part of a Host header: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "[::1]"."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _token_of(request) -> str | None:
    auth = request.headers.get("authorization", "")
    for value in (request.query_params.get("token"), request.headers.get("x-alexnet-token"),
                  auth[7:] if auth.lower().startswith("bearer ") else None, request.cookies.get(COOKIE)):
        if value:
            return value
    return None


def open_runs(runs: Sequence[Any], limits: Limits, progress: bool, say: Callable[[str], None] | None):
    """{id: ServedRun}: ids are the run folders' names, made unique with -2, -3, ..."""
    served: dict[str, ServedRun] = {}
    for item in runs:
        run = item if isinstance(item, LoadedRun) else open_run(item, replicas=limits.workers)
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", run.name).strip("-.") or "run"
        rid, n = base, 1
        while rid in served:
            n += 1
            rid = f"{base}-{n}"
        index, problem = None, run.data_problem
        if run.bundle is not None:
            try:
                index, problem = load_index(run, progress=progress, say=say), None
            except AlexNetError as e:
                problem = str(e)
        served[rid] = ServedRun(rid, run, index, problem)
    return served


def listen(host: str, port: int):
    """A bound socket for uvicorn (port 0: a free one), or AlexNetError naming the address and the cause."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise AlexNetError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port (0: any free "
                           "one)") from None
    return sock


class Background:
    """The app served by uvicorn in a daemon thread (a notebook, the tests, the benchmark): `.url`, `.stop()`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn  # here, not at the top: an app without a server (FastAPI's TestClient) needs no uvicorn

        self.app = app
        sock = listen(host, port)
        self.port = sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AlexNetError(f"the server on {self.url} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
