"""Reading the process's flush-to-zero setting, which torch can set but not report.

``torch.set_flush_denormal(True)`` sets the CPU's flush-to-zero and denormals-are-zero
modes for the calling thread. A library that turns them on for a training call must put
back what it found; :func:`flushing` tells what that was, by multiplying a subnormal
number: with denormals-are-zero on, the product is exactly zero.
"""

from __future__ import annotations

import torch

_SUBNORMAL = 1e-40  # below float32's smallest normal, 1.18e-38


def flushing() -> bool:
    """True when subnormal float32 numbers are flushed to zero in this thread."""
    return bool((torch.tensor([_SUBNORMAL], dtype=torch.float32) * 1.0)[0] == 0)
