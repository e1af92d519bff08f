"""A Ctrl-C while the local Dask cluster starts (its workers start with SIGINT blocked, so
that a terminal's Ctrl-C reaches the driver alone) is raised once the start ends, and the
cluster is closed: ignored there, it was lost, and the study ran to its end."""

from __future__ import annotations

import os
import signal
import time

import pytest

pytest.importorskip("distributed")

from reglab.study import dask_executor  # noqa: E402


class _StartedWhileInterrupted:
    """Stands for LocalCluster: Ctrl-C (or ``signum``) comes while it starts; records that it
    was closed."""

    instances: list = []
    signum = signal.SIGINT

    def __init__(self, **kwargs):
        self.closed = False
        self.blocked_during_start = signal.pthread_sigmask(signal.SIG_BLOCK, set())
        os.kill(os.getpid(), self.signum)
        time.sleep(0.05)  # the signal is delivered within this, were it not held
        _StartedWhileInterrupted.instances.append(self)

    def close(self):
        self.closed = True


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks here")
def test_a_ctrl_c_while_the_cluster_starts_is_raised_after_it_and_closes_it(monkeypatch):
    import distributed

    monkeypatch.setattr(distributed, "LocalCluster", _StartedWhileInterrupted)
    _StartedWhileInterrupted.instances.clear()
    with pytest.raises(KeyboardInterrupt):
        dask_executor.DaskExecutor(workers=2)
    (cluster,) = _StartedWhileInterrupted.instances
    assert cluster.closed
    assert signal.SIGINT in cluster.blocked_during_start  # what the workers inherit
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_without_a_ctrl_c_the_block_changes_nothing():
    before = signal.getsignal(signal.SIGINT)
    with dask_executor._sigint_held():
        pass
    assert signal.getsignal(signal.SIGINT) is before
    if hasattr(signal, "pthread_sigmask"):
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


class _StartedWhileTerminated(_StartedWhileInterrupted):
    signum = signal.SIGTERM


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks here")
def test_a_sigterm_while_the_cluster_starts_ends_it_once_started_as_the_cli_raises_it(
        monkeypatch):
    # the CLI raises SIGTERM as Terminated; raised mid-start, the half-started cluster
    # failed its own close at exit with a traceback
    import distributed

    from reglab.utils.interrupts import Terminated, terminate_as_interrupt

    monkeypatch.setattr(distributed, "LocalCluster", _StartedWhileTerminated)
    _StartedWhileInterrupted.instances.clear()
    with terminate_as_interrupt(), pytest.raises(Terminated):
        dask_executor.DaskExecutor(workers=2)
    (cluster,) = _StartedWhileInterrupted.instances
    assert cluster.closed
    assert signal.SIGTERM not in cluster.blocked_during_start  # the workers still answer it
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    from reglab.utils import interrupts

    assert interrupts._received is None  # not noted beyond the block: a later failure is
    # not re-raised as this SIGTERM
