"""How a study's populations are cut for several workers (reglab.study.sharding)."""

import itertools
import random

import pytest

from reglab.study import sharding
from reglab.study.plan import PopulationSpec, RunSpec
from reglab.study.sharding import shard_counts


def makespan(sizes, counts, workers):
    """An independent reference of the estimate: every assignment of the shards to the
    workers tried, the jobs' order not assumed (so it is a lower bound of any order's)."""
    costs = []
    for size, count in zip(sizes, counts):
        base, extra = divmod(size, count)
        costs += [base + (i < extra) + sharding.SHARD_OVERHEAD for i in range(count)]
    best = float("inf")
    for assignment in itertools.product(range(workers), repeat=len(costs)):
        loads = [0.0] * workers
        for worker, cost in zip(assignment, costs):
            loads[worker] += cost
        best = min(best, max(loads))
    return best


def test_a_lone_population_is_cut_into_one_shard_per_worker():
    assert shard_counts([12], 2) == [2]
    assert shard_counts([12], 3) == [3]
    assert shard_counts([4], 8) == [4]  # no shard without a run
    assert shard_counts([1], 2) == [1]


def test_one_worker_cuts_nothing():
    assert shard_counts([75, 5, 5], 1) == [1, 1, 1]
    assert shard_counts([], 4) == []


def test_small_populations_beside_a_large_one_stay_whole():
    # the tutorial study on two workers: the large population in two, each small one whole
    assert shard_counts([75, 5, 5], 2) == [2, 1, 1]
    assert shard_counts([5, 75, 5], 2) == [1, 2, 1]


def test_two_equal_populations_on_four_workers_are_both_cut():
    # one cut alone does not help (the other population stays the longest job): both do
    assert shard_counts([6, 6], 4) == [2, 2]


def test_never_worse_than_cutting_all_or_nothing_and_close_to_the_best_cut():
    rng = random.Random(7)
    for _ in range(300):
        workers = rng.randint(2, 3)
        sizes = [rng.choice([1, 2, 3, 5, 8, 13, 40]) for _ in range(rng.randint(1, 3))]
        counts = shard_counts(sizes, workers)
        assert all(1 <= c <= min(workers, s) for c, s in zip(counts, sizes)), (sizes, counts)
        ours = sharding._makespan(sizes, counts, workers)
        every = [min(workers, s) for s in sizes]
        assert ours <= sharding._makespan(sizes, every, workers), (sizes, workers, counts)
        assert ours <= sharding._makespan(sizes, [1] * len(sizes), workers)
        best = min(makespan(sizes, list(k), workers)
                   for k in itertools.product(*[range(1, min(workers, s) + 1) for s in sizes]))
        assert ours <= 1.25 * best, (sizes, workers, counts, ours, best)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_cut_keeps_every_run_once_in_seed_order_in_shards_within_one_run(count):
    runs = tuple(RunSpec(variant, (), seed, {}) for variant in ("a", "b") for seed in (2, 0, 1))
    shards = sharding.cut(PopulationSpec("key", runs), count)
    assert len(shards) == min(count, len(runs))
    assert all(shard.key == "key" for shard in shards)
    flat = [run for shard in shards for run in shard.runs]
    assert sorted(flat, key=lambda r: r.run_id) == sorted(runs, key=lambda r: r.run_id)
    assert [run.seed for run in flat] == sorted(run.seed for run in runs)
    sizes = [len(shard.runs) for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_a_part_marked_whole_is_not_cut():
    assert shard_counts([30, 4], 2) == [2, 2]
    assert shard_counts([30, 4], 2, whole=[True, False]) == [1, 1]
    assert shard_counts([4, 30], 2, whole=[False, True]) == [1, 1]


# -- a killed study's jobs go on as they were cut --------------------------------------------

class _TwoWorkers:
    """The cutting of a DaskExecutor of two workers, without a cluster."""

    def shards(self, populations, device="cpu", whole=None):
        from reglab.study.dask_executor import DaskExecutor

        executor = DaskExecutor.__new__(DaskExecutor)
        executor._slots = lambda resources: 2
        return executor.shards(populations, device, whole)


def _plan(tmp_path):
    import numpy as np

    from reglab.study.runner import prepare_study

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x_train=rng.random((64, 8), dtype=np.float32),
             y_train=rng.integers(0, 3, 64), x_test=rng.random((16, 8), dtype=np.float32),
             y_test=rng.integers(0, 3, 16))
    study = tmp_path / "study.toml"
    study.write_text("""
name = "cuts"
seeds = 3
[data]
dataset = "data.npz"
[model]
input_shape = [8]
layers = [{ type = "Dense", units = 4, activation = "softmax" }]
[training]
optimizer = "adam"
loss = "sparse_categorical_crossentropy"
epochs = 2
batch_size = 32
[variants.base]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = 0.01 }
[variants.drop]
dropout = 0.1
[variants.big]
kernel_regularizer = { type = "L2", l2 = { log = [1e-4, 1e-2], n = 3 } }
""")
    return prepare_study(study)


def test_a_shard_with_a_checkpoint_goes_on_as_it_was_cut_and_the_rest_is_cut_anew(tmp_path):
    from types import SimpleNamespace

    from reglab.study import checkpoints
    from reglab.study.runner import _cut

    plan = _plan(tmp_path)
    store = SimpleNamespace(directory=tmp_path / "out")
    (population,) = plan.populations  # one structure: 15 runs (3 twins) in one population
    fresh = _cut(store, plan, _TwoWorkers(), "cpu", set())
    assert [len(shard.runs) for _, shard in fresh] == [8, 7]
    first, second = (shard for _, shard in fresh)
    # killed after the first shard finished and the second saved a checkpoint: the second
    # would be cut in two if it were cut anew (it is all that is left)
    path = checkpoints.path_for(store.directory, second.key, [r.run_id for r in second.runs])
    checkpoints.save(path, [r.run_id for r in second.runs], {"epoch": 1}, [], "fp")
    done = {run.run_id for run in first.runs}
    resumed = _cut(store, plan, _TwoWorkers(), "cpu", done)
    assert [shard.runs for _, shard in resumed] == [second.runs]
    # without the checkpoint, the same runs are cut for the two workers
    checkpoints.remove(path)
    assert [len(shard.runs) for _, shard in _cut(store, plan, _TwoWorkers(), "cpu", done)] \
        == [4, 3]


def test_a_checkpoint_is_not_kept_when_one_of_its_runs_is_done_or_it_is_not_this_populations(
        tmp_path):
    from types import SimpleNamespace

    from reglab.study import checkpoints
    from reglab.study.runner import _cut

    plan = _plan(tmp_path)
    store = SimpleNamespace(directory=tmp_path / "out")
    runs = sorted(plan.populations[0].runs, key=lambda run: run.seed)
    ids = [run.run_id for run in runs[:4]]
    checkpoints.save(checkpoints.path_for(store.directory, "another-population", ids),
                     ids, {}, [], "fp")
    kept = checkpoints.path_for(store.directory, plan.populations[0].key, ids)
    checkpoints.save(kept, ids, {}, [], "fp")
    shards = _cut(store, plan, _TwoWorkers(), "cpu", {ids[0]})
    assert all(list(shard.runs) != runs[:4] for _, shard in shards)
    assert sorted(r.run_id for _, shard in shards for r in shard.runs) == \
        sorted(r.run_id for r in runs[1:])
    shards = _cut(store, plan, _TwoWorkers(), "cpu", set())
    assert [list(shard.runs) for _, shard in shards][0] == runs[:4]  # kept, first
    assert [len(shard.runs) for _, shard in shards] == [4, 11]  # the rest: 11 + 4 < 2 x 8
