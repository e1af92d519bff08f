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
