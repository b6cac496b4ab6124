"""Make the next batches in a background thread while the model computes on the current one.

One producer thread runs a batch iterator and hands its items over through a bounded queue (`depth` items ahead,
so memory stays bounded: depth + 2 batches exist at once, see `training.batches.TrainBatches`). A thread is enough: indexing the
uint8 cache, BatchAugment's tensor ops and the host-to-device copy all run in PyTorch kernels that release the GIL.

What the consumer sees is exactly what the iterator yields, in order: the items must not depend on *when* they are
made (the training batches are pure functions of (seed, epoch, step, rank)), so prefetching changes timing only.

Shutdown is explicit: `close()` (or leaving the `with` block) stops the producer at its next item and joins it,
whether the consumer finished, broke off early, or is unwinding from an exception, SIGTERM or KeyboardInterrupt.
An exception in the producer reaches the consumer as the same exception object (type, message and the producer's
traceback), at the position where the failed item would have been.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

POLL_S = 0.05  # how often a producer blocked on a full queue looks whether it was told to stop


class _End:
    """The iterator is exhausted."""


class _Failed:
    """The iterator raised `error`."""

    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher(Generic[T]):
    """Iterates over `source` in a background thread, at most `depth` items ahead of the consumer."""

    def __init__(self, source: Iterator[T], depth: int = 1, name: str = "alexnet-prefetch"):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        # daemon: a consumer that never calls close() (a bug) must still not keep the interpreter alive at exit.
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Blocks while the queue is full; False when told to stop meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item) or self._stop.is_set():
                    return
            self._put(_End())
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(_Failed(e))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:  # a generator's own finally blocks run here, in the thread that ran it
                close()

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self.close()
            raise StopIteration
        if isinstance(item, _Failed):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stops the producer (it finishes the item it is making) and waits for its thread to end."""
        self._done = True
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue; what it made is dropped
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
