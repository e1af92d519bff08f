"""``DaskExecutor.choose_precision`` on a cluster at an address: measured on a worker, and a
cluster that cannot run reglab's task stops the study with reglab's own error, as a job
would (a fake client: no cluster started)."""

from __future__ import annotations

import pytest

from reglab.errors import ReglabError
from reglab.study import precision
from reglab.study.dask_executor import DaskExecutor


class _Future:
    def __init__(self, outcome):
        self.outcome = outcome
        self.released = False

    def done(self):
        return True

    def result(self):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def release(self):
        self.released = True


class _Client:
    status = "running"

    def __init__(self, outcome):
        self.outcome = outcome
        self.submitted = []
        self.future = None

    def submit(self, fn, *args, **kwargs):
        self.submitted.append((fn, args, kwargs))
        self.future = _Future(self.outcome)
        return self.future


def remote_executor(outcome, threads=3):
    executor = object.__new__(DaskExecutor)  # the attributes __init__ sets, no cluster
    executor._cluster, executor.address, executor.threads = None, "tcp://10.0.0.1:8786", threads
    executor.client = _Client(outcome)
    return executor


def test_the_choice_is_measured_by_a_worker_with_the_jobs_threads():
    chosen = precision.Choice("bfloat16", "a worker's measure")
    executor = remote_executor(chosen)
    assert executor.choose_precision("cpu") == chosen
    ((fn, args, kwargs),) = executor.client.submitted
    assert fn is precision.choose and args == ("cpu", 3) and kwargs["pure"] is False
    assert executor.client.future.released


@pytest.mark.parametrize("error", [ModuleNotFoundError("No module named 'reglab.study.precision'"),
                                   AttributeError("module has no attribute 'choose'")])
def test_workers_that_cannot_run_reglab_stop_the_study_clearly(error):
    executor = remote_executor(error)
    with pytest.raises(ReglabError, match=r"the Dask workers at tcp://10\.0\.0\.1:8786 cannot "
                                          r"train reglab's jobs .*install the same reglab"):
        executor.choose_precision("cpu")
    assert executor.client.future.released


def test_a_lost_scheduler_stops_the_study_clearly():
    executor = remote_executor(OSError("connection closed"))
    executor.client.status = "closed"
    with pytest.raises(ReglabError, match="lost the Dask scheduler at tcp://10.0.0.1:8786"):
        executor.choose_precision("cpu")


def test_another_failure_is_raised_as_it_is():
    executor = remote_executor(ValueError("odd"))
    with pytest.raises(ValueError, match="odd"):
        executor.choose_precision("cpu")
