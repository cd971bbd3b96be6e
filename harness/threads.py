"""Cap a case's CPU threads (torch intra-op, BLAS and OpenMP pools) for the duration of the case.

WHY: on a small machine, numpy's OpenBLAS threads, faiss's OpenMP threads and torch's own pool spin against
each other and turn sub-millisecond calls into tens of milliseconds. A suite's `threads` setting makes the
thread count part of what is measured, and restores the previous limits afterwards (inline cases share a process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """Within the block, use at most `threads` CPU threads; 0 leaves every library at its default."""
    if threads <= 0:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # torch's own pool is capped; BLAS/OpenMP pools of other libraries keep their size
            yield
        else:
            with threadpool_limits(limits=threads):
                yield
    finally:
        torch.set_num_threads(previous)
