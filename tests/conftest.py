"""Shared test settings: one intra-op thread, and the independent references on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# As `reglab run` does: MKL's small-matrix kernels then give a member the same bits
# wherever its slice lies in memory (see reglab/cli.py). Before torch is imported.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # for `import references`


@pytest.fixture(autouse=True, scope="session")
def one_intra_op_thread():
    """Tiny tensors gain nothing from intra-op threads, and lose much when another process
    holds a core (OpenMP workers spin); the previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def two_threads():
    """Two intra-op threads for one test (where a result must not depend on the count)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
