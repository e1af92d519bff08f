"""A call in one of torch's intra-op threads.

torch splits some CPU kernels between its threads by the size of the whole tensor (a
softmax's rows, MKL's batched GEMM by the batch's total work), so with two threads a lone
member's work may be cut in two where a population's is not, and rounded otherwise. The
calls whose bits must not depend on the number of members run in one thread.

torch keeps the count per Python thread once that thread has used it (OpenMP's and MKL's
thread-local settings), so such a call in one Python thread leaves the products of a
population training in another at their own count (tests/unit/utils/test_threads.py). Only a
Python thread that first uses torch during such a call starts at one thread: torch gives a
new thread the count last set in any.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def in_one_thread(fn: Callable[..., T], *args) -> T:
    """``fn(*args)`` with torch's intra-op threads set to one (restored after; with one
    thread already, just the call)."""
    threads = torch.get_num_threads()
    if threads == 1:
        return fn(*args)
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)
