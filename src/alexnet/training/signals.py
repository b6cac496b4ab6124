"""SIGTERM and SIGINT during training: the loop finishes its step, saves checkpoints/last.pt and stops, so that a
killed job (a scheduler's preemption, Ctrl-C) resumes exactly; a second Ctrl-C stops at once."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import torch

from alexnet.errors import AlexNetError
from alexnet.runtime import distributed
from alexnet.runtime.distributed import DistInfo


class RunInterrupted(AlexNetError):
    """SIGTERM or SIGINT: the current step was finished and checkpoints/last.pt written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopFlag:
    """SIGTERM/SIGINT set a flag; the loop finishes its step, saves and stops. A second SIGINT stops at once."""

    def __init__(self):
        self.signum = 0
        self.previous: dict[int, Any] = {}  # the handlers to put back

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum, frame):
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def install(self) -> None:
        """Catch SIGTERM/SIGINT until `restore()` (only the main thread may install signal handlers)."""
        import threading

        if threading.current_thread() is threading.main_thread() and not self.previous:
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    @contextlib.contextmanager
    def installed(self):
        self.install()
        try:
            yield self
        finally:
            self.restore()

    def agreed(self, device: torch.device, info: DistInfo) -> bool:
        """True on every rank when any rank was signalled (ranks must stop at the same step)."""
        if not info.enabled:  # nothing to agree on; and no tensor, whose .item() would wait for the GPU
            return bool(self.signum)
        flag = torch.tensor([float(self.signum)], device=device)
        distributed.all_reduce_sum(flag)
        if flag.item() and not self.signum:
            self.signum = signal.SIGTERM
        return bool(flag.item())
