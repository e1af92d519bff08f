"""How a study's populations are cut for several workers (reglab.study.sharding)."""

import itertools
import random

import pytest

from reglab.study import sharding
from reglab.study.plan import PopulationSpec, RunSpec
from reglab.study.sharding import plan_cuts, shard_cost


def population(key, runs, seeds=1, augment=False):
    """``runs`` runs spread over ``seeds`` seeds (variants ``v0``, ``v1``, ... per seed)."""
    changes = {"augment": {"rotation_range": 20}} if augment else {}
    return PopulationSpec(key, tuple(RunSpec(f"v{i // seeds}", (), i % seeds, changes)
                                     for i in range(runs)))


def counts(populations, workers, whole=None):
    return [len(shards) for shards in plan_cuts(populations, workers, whole)]


def sizes(populations, workers, whole=None):
    return [[len(s.runs) for s in shards] for shards in plan_cuts(populations, workers, whole)]


def loads(cuts, workers):
    """An independent reference of the study's time: every assignment of the shards to the
    workers tried, the jobs' order not assumed (a lower bound of any order's)."""
    costs = [shard_cost(shard.runs) for shards in cuts for shard in shards]
    best = float("inf")
    for assignment in itertools.product(range(workers), repeat=len(costs)):
        totals = [0.0] * workers
        for worker, cost in zip(assignment, costs):
            totals[worker] += cost
        best = min(best, max(totals))
    return best


def every_cut(p, workers):
    """Every way of cutting ``p`` (runs in seed order) into 1 to ``workers`` shards."""
    runs = tuple(sorted(p.runs, key=lambda run: run.seed))
    for count in range(1, min(workers, len(runs)) + 1):
        for inner in itertools.combinations(range(1, len(runs)), count - 1):
            bounds = (0, *inner, len(runs))
            yield [PopulationSpec(p.key, runs[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]


def test_a_shard_costs_its_runs_its_fixed_part_and_its_seed_groups_with_their_warp():
    assert shard_cost(population("a", 10, seeds=2).runs) == \
        sharding.SHARD_OVERHEAD + 10 + 2 * sharding.SEED_GROUP_COST
    assert shard_cost(population("a", 3, seeds=3, augment=True).runs) == \
        sharding.SHARD_OVERHEAD + 3 + 3 * (sharding.SEED_GROUP_COST + sharding.WARP_COST)
    assert shard_cost(()) == 0


def test_a_lone_population_is_cut_into_one_shard_per_worker():
    assert counts([population("a", 12)], 2) == [2]
    assert counts([population("a", 12)], 3) == [3]
    assert counts([population("a", 4)], 8) == [4]  # no shard without a run
    assert counts([population("a", 1)], 2) == [1]
    assert sizes([population("a", 12, seeds=3)], 2) == [[6, 6]]


def test_one_worker_cuts_nothing():
    tutorial = [population("a", 75, 5), population("b", 5, 5), population("c", 5, 5)]
    assert counts(tutorial, 1) == [1, 1, 1]
    assert plan_cuts([], 4) == []


def test_every_run_once_in_seed_order():
    p = PopulationSpec("key", tuple(RunSpec(v, (), seed, {}) for v in "ab" for seed in (2, 0, 1)))
    for workers in (1, 2, 3, 7):
        (shards,) = plan_cuts([p], workers)
        assert len(shards) == min(workers, 6)
        flat = [run for shard in shards for run in shard.runs]
        assert sorted(flat, key=lambda r: r.run_id) == sorted(p.runs, key=lambda r: r.run_id)
        assert [run.seed for run in flat] == sorted(run.seed for run in p.runs)
        assert all(shard.key == "key" for shard in shards)


def test_the_tutorial_study_cuts_its_large_population_unevenly_beside_the_small_ones():
    # 115 runs over 5 seeds; the augmentation and batch-normalization populations, 5 runs each
    tutorial = [population("large", 115, 5), population("augment", 5, 5, augment=True),
                population("batch_norm", 5, 5)]
    cuts = plan_cuts(tutorial, 2)
    assert [len(shards) for shards in cuts] == [2, 1, 1]  # the small populations whole
    small, large = sorted(len(shard.runs) for shard in cuts[0])
    assert small < large
    # the workers' estimated loads within a run of each other, where an even cut leaves
    # one of them waiting for the other
    total = sum(shard_cost(shard.runs) for shards in cuts for shard in shards)
    assert loads(cuts, 2) <= total / 2 + 1
    even = [sharding_even(tutorial[0], 2), *cuts[1:]]
    assert loads(cuts, 2) < loads(even, 2) - 2  # 3 runs of work: ~22 s on the Xeon
    # and so the executors' order (costliest first, to the first free worker) finds them
    assert sharding._makespan([[0, small, 115], [0, 5], [0, 5]],
                              [tuple(sorted(p.runs, key=lambda r: r.seed)) for p in tutorial],
                              2) == pytest.approx(loads(cuts, 2))


def sharding_even(p, count):
    runs = tuple(sorted(p.runs, key=lambda run: run.seed))
    bounds = [round(i * len(runs) / count) for i in range(count + 1)]
    return [PopulationSpec(p.key, runs[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]


def test_two_equal_populations_on_four_workers_are_both_cut():
    # one cut alone does not help (the other population stays the longest job): both do
    assert counts([population("a", 6), population("b", 6)], 4) == [2, 2]


def test_close_to_the_best_cut_and_never_worse_than_cutting_all_or_nothing():
    rng = random.Random(7)
    for _ in range(150):
        workers = rng.randint(2, 3)
        study = [population(str(i), rng.choice([1, 2, 3, 5, 7]), seeds=rng.randint(1, 3),
                            augment=rng.random() < 0.3)
                 for i in range(rng.randint(1, 3 if workers == 2 else 2))]
        cuts = plan_cuts(study, workers)
        ours = loads(cuts, workers)
        for p, shards in zip(study, cuts):
            assert 1 <= len(shards) <= min(workers, len(p.runs))
        assert ours <= loads([[p] for p in study], workers) + 1e-9, (study, workers)
        assert ours <= loads([sharding_even(p, workers) for p in study], workers) + 1e-9
        best = min(loads(list(choice), workers)
                   for choice in itertools.product(*[list(every_cut(p, workers)) for p in study]))
        assert ours <= 1.25 * best, (study, workers, ours, best)


def test_a_part_marked_whole_is_not_cut_and_keeps_its_order():
    a, b = population("a", 30, 3), population("b", 4, 2)
    assert counts([a, b], 2) == [2, 2]
    assert counts([a, b], 2, whole=[True, False]) == [1, 1]
    assert counts([b, a], 2, whole=[False, True]) == [1, 1]
    shuffled = PopulationSpec("a", tuple(reversed(a.runs)))
    assert plan_cuts([shuffled], 2, whole=[True])[0][0].runs == shuffled.runs


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
    assert sorted(len(shard.runs) for _, shard in _cut(store, plan, _TwoWorkers(), "cpu",
                                                         done)) == [3, 4]


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
