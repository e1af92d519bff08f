"""reglab.utils.threads.in_one_thread: one intra-op thread inside, the count put back after.

torch keeps the count per Python thread once the thread has used it (OpenMP's and MKL's
thread-local settings), so a population training in one thread does not change the threads
of another's products (tested here, as the engine relies on it)."""

from __future__ import annotations

import threading

import pytest
import torch

from reglab.utils.threads import in_one_thread


def test_one_thread_inside_and_the_count_put_back(two_threads):
    assert in_one_thread(torch.get_num_threads) == 1
    assert torch.get_num_threads() == 2


def test_the_count_is_put_back_when_the_call_raises(two_threads):
    def fails():
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        in_one_thread(fails)
    assert torch.get_num_threads() == 2


def test_a_call_in_another_python_thread_leaves_this_ones_count(two_threads):
    """A (another Python thread) is inside its call while B (this test's thread) works:
    B keeps its two threads, its own call gets one and puts two back, and A's restore after
    B's call does not touch B's count."""
    assert torch.get_num_threads() == 2  # B's count, set by the fixture
    a_inside, b_done = threading.Event(), threading.Event()
    seen = {}

    def a_work():
        a_inside.set()
        assert b_done.wait(5)
        return torch.get_num_threads()

    def run_a():
        torch.set_num_threads(2)
        seen["a inside"] = in_one_thread(a_work)
        seen["a after"] = torch.get_num_threads()

    a = threading.Thread(target=run_a)
    a.start()
    assert a_inside.wait(5)
    seen["b while a is inside"] = torch.get_num_threads()
    seen["b inside"] = in_one_thread(torch.get_num_threads)
    seen["b after"] = torch.get_num_threads()
    b_done.set()
    a.join(10)
    assert seen == {"a inside": 1, "a after": 2, "b while a is inside": 2, "b inside": 1,
                    "b after": 2}
    assert torch.get_num_threads() == 2
