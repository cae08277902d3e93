"""Independent batches on every core at once.

Each inference session runs on one thread (:func:`facesuite.config.onnx_session`); the cores are
used by running whole batches side by side instead: detection, alignment, routing and embedding
of one batch on each of :func:`~facesuite.config.inference_threads` threads. On this project's
2-core benchmark that kept both cores busy (1.9 cores of CPU time per second against 1.5 with one
two-threaded session per network), because the NumPy and OpenCV stages between the networks run
on one core only; steady-state faces/s rose 1.4x (``benchmarks/speed.py``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from facesuite.config import inference_threads

Item = TypeVar("Item")
Result = TypeVar("Result")

# Held while a model that loads on first use is built: two batches must not build it twice, and
# a distortion model folder the user trained is exported to ONNX on its first use, which PyTorch's
# exporter cannot do on two threads (the shipped networks are ONNX files already).
model_loading = threading.RLock()

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_on_worker = threading.local()


def _mark_worker() -> None:
    _on_worker.active = True


def _shared_pool() -> ThreadPoolExecutor:
    # One pool for the process, so its threads (and their per-thread detection-cache connections)
    # live as long as the process, however many calls a server answers.
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(inference_threads(), thread_name_prefix="facesuite", initializer=_mark_worker)
        return _pool


def ordered_map(work: Callable[[Item], Result], items: Sequence[Item]) -> Iterator[Result]:
    """``work(item)`` for each item, yielded in order, up to :func:`inference_threads` at once.

    Runs in the calling thread when there is one item or one thread, and when called from a
    worker (a batch's own inner batches): waiting there on the same pool could deadlock it. The
    first exception is raised when its result is due; the queued items after it are cancelled.
    """
    workers = inference_threads()
    if workers <= 1 or len(items) <= 1 or getattr(_on_worker, "active", False):
        for item in items:
            yield work(item)
        return
    pool = _shared_pool()
    # One item per thread in flight and one more, ready for the first thread to finish: each
    # holds a batch of decoded images (up to 16 x 50 MB at io.MAX_SIDE), so no more than that.
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
