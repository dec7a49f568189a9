"""Read the inputs of a cache build in worker processes, in order, with bounded memory.

The cache is written by one ``Dataset.from_generator`` generator in the calling process; only the
reading (decompressing volumes, normalising, resizing, quantising, compressing slices) is spread over
``processes`` workers, each on one thread. So the cache is the same whatever the number of processes,
and a bad file surfaces in the calling process as the :class:`~mtl_hf.data.DataError` that names it
(``skip_bad`` included), exactly as in a one-process build. At most ``2 x processes`` inputs are in
flight: memory is bounded by a few patients, whatever the size of the data set.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from .errors import DataError

T = TypeVar("T")
R = TypeVar("R")


def read_in_order(read: Callable[[T], R], items: Sequence[T], processes: int) -> Iterator[R | DataError]:
    """``read(item)`` for each item in order; a :class:`DataError` raised by ``read`` is returned,
    not raised, so the caller decides (stop, or skip with ``skip_bad``). ``read`` must be picklable (a
    module-level function or a ``functools.partial`` of one)."""
    if processes <= 1 or len(items) <= 1:
        with one_thread():
            for item in items:
                yield _guarded(read, item)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    pool = context.Pool(processes, initializer=_worker_init)
    try:
        pending: deque[Any] = deque()
        queue = iter(items)
        for item in queue:
            pending.append(pool.apply_async(_guarded, (read, item)))
            if len(pending) >= 2 * processes:
                break
        while pending:
            value = pending.popleft().get()
            for item in queue:  # one more in flight for each one done
                pending.append(pool.apply_async(_guarded, (read, item)))
                break
            yield value
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _guarded(read: Callable[[T], R], item: T) -> R | DataError:
    try:
        return read(item)
    except DataError as exc:
        return exc


def _worker_init() -> None:
    one_thread().__enter__()  # for the worker's whole life


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Work on one core (restored afterwards): with several build processes, threaded numerical
    libraries would otherwise oversubscribe the machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        limits: Any = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(threads)
