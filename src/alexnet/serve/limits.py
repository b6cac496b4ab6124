"""What a server allows (Limits), the refusal it answers past them (Refused), and the bounded worker that runs
inference in threads within them (Bounded). Shared by the app factory and the routes, so neither imports the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool


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
