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
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet.errors import AlexNetError

log = logging.getLogger("alexnet.serve")
STATIC = Path(__file__).with_name("static")
COOKIE = "alexnet_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024  # an upload larger than this is refused before it is decoded
    workers: int = 2  # inference requests running at once (model replicas per run)
    queue: int = 8  # requests waiting for a worker at most; more are answered 503 at once
    wait_s: float = 5.0  # the longest a request waits for a replica before 503
    timeout_s: float = 30.0  # the longest an inference request may take before 504


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Bounded:
    """At most `workers + queue` inference calls admitted; each in a thread, answered 504 past the timeout."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.admitted = 0

    async def __call__(self, fn: Callable[..., Any], *args: Any, admit: bool = True) -> Any:
        """`admit=False` for cheap work that needs no model (an image drawn from the dataset): timed, not counted."""
        from starlette.concurrency import run_in_threadpool

        if not admit:
            return await self._timed(run_in_threadpool(fn, *args))
        if self.admitted >= self.limits.workers + self.limits.queue:
            raise Refused(503, f"busy: {self.admitted} requests in progress; try again in a moment")
        self.admitted += 1  # the event loop is single-threaded: no lock needed around the count
        try:
            return await self._timed(run_in_threadpool(fn, *args))
        finally:
            self.admitted -= 1

    async def _timed(self, work) -> Any:
        try:
            return await asyncio.wait_for(work, timeout=self.limits.timeout_s)
        except TimeoutError:
            raise Refused(504, f"the request took longer than {self.limits.timeout_s:g} s") from None


def create_app(runs: Sequence[Any], *, token: str | None = None, limits: Limits | None = None,
               allowed_hosts: Sequence[str] = (), progress: bool = False, say: Callable[[str], None] | None = None):
    """The app for `runs` (run folders or checkpoint files, or already opened `LoadedRun`s). Each run's index is
    read from beside its checkpoint or built now (with a progress bar when `progress`)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    from alexnet.inspect.loaded import Busy, UnknownImage
    from alexnet.serve.api import build_router

    limits = limits or Limits()
    served = open_runs(runs, limits, progress, say)
    app = FastAPI(title="alexnet serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runs = served
    app.state.limits = limits
    app.state.bounded = Bounded(limits)
    app.state.token = token
    hosts = LOOPBACK_HOSTS | set(allowed_hosts)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is None:
            host = _hostname(request.headers.get("host", ""))
            if host not in hosts:
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

    @app.middleware("http")
    async def cap_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error(400, "bad Content-Length")
            if int(length) > limits.max_upload_bytes:
                return error(413, f"upload too large: {int(length):,} bytes > limit {limits.max_upload_bytes:,}")
        return await call_next(request)

    @app.exception_handler(Refused)
    async def refused(_request, e: Refused):
        return error(e.status, e.message)

    @app.exception_handler(UnknownImage)
    async def unknown(_request, e: UnknownImage):
        return error(404, str(e))

    @app.exception_handler(Busy)
    async def busy(_request, e: Busy):
        return error(503, str(e))

    @app.exception_handler(AlexNetError)
    async def bad_input(_request, e: AlexNetError):
        return error(400, str(e))

    @app.exception_handler(HTTPException)
    async def http_error(_request, e: HTTPException):
        return error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(400, f"bad request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def crashed(_request, e: Exception):
        log.exception("request failed")
        return error(500, f"internal error ({type(e).__name__}); the server is still running")

    app.include_router(build_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

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
    import re

    from alexnet.inspect.index import load_index
    from alexnet.inspect.loaded import LoadedRun, open_run
    from alexnet.serve.state import ServedRun

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
    import socket

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
        import threading
        import time

        import uvicorn

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
