"""How a study's populations are cut into jobs for several workers.

A population trains as one vectorized step per batch, and that step costs a fixed part
(each layer's dispatch, the optimizer's calls) besides its members' own work, and a part
per seed group (members that share a seed share a batch: it is gathered, and augmented,
once per group). Cutting a population into shards pays the fixed part once per shard, so
the cut is only worth it where it keeps a worker busy that would otherwise wait.

:func:`plan_cuts` looks at the whole study. It estimates a shard's time
(:func:`shard_cost`, in runs' work) and the study's as the jobs handed, costliest first, to
the first free worker (as the executors hand them: :func:`job_cost` orders them). Starting
from every population whole, it cuts the population of the costliest shard once more
(into at most one shard per worker), keeping the counts that gave the shortest time; then
it moves the cuts between shards, run by run, while that shortens the time, so that a
shard that shares its worker with another population's job is the shorter one.

For the tutorial study on two workers (115, 5 and 5 runs, the 5-run populations the
augmentation's and batch normalization's) that cuts the large population into shards of
72 and 43 runs and trains the small populations whole, both after the 43-run shard (the
augmentation's batches are warped seed group by seed group, which makes it the costlier),
where an even cut left one worker waiting for the other and cutting every population in
two had each worker pay the small populations' fixed costs too. A study of one population
is still cut into one shard per worker.

Members are independent inside a population, so whichever way a population is cut, each
member trains as it would alone (bit for bit).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from reglab.study.plan import PopulationSpec, RunSpec

#: A shard's fixed cost, a seed group's cost and an augmenting seed group's warp, in runs'
#: work. Measured on the tutorial study (784-64-10, batch 128, one thread per worker): a
#: run of the large population cost 11 s (Zen 3, 2026-12-01) and 7.2 s (Intel Xeon,
#: 2026-12-02); shards of 2 and 3 runs (2 and 3 seeds) of the augmentation and batch-
#: normalization populations took 122/147 s and 74/90 s on the Zen 3, and their whole
#: populations of 5 runs 136 s and 82 s on the Xeon: within 10 % of this estimate
#: (4 + 2 + 2 x 2 = 10 runs' work for 2 augmenting runs, 4 + 5 + 5 x 0.5 = 11.5 for 5 runs
#: with batch normalization, ...).
SHARD_OVERHEAD = 4.0
SEED_GROUP_COST = 0.5
WARP_COST = 1.5


def shard_cost(runs: Sequence[RunSpec]) -> float:
    """The estimated time of a job training ``runs`` (of one population), in runs' work."""
    if not runs:
        return 0.0
    groups = len({(run.seed, run.regime) for run in runs})  # members that share a batch
    warp = WARP_COST if runs[0].changes.get("augment") else 0.0
    return SHARD_OVERHEAD + len(runs) + groups * (SEED_GROUP_COST + warp)


def job_cost(population: PopulationSpec) -> float:
    """:func:`shard_cost` of a job: executors start the costliest first."""
    return shard_cost(population.runs)


def plan_cuts(populations: Sequence[PopulationSpec], workers: int,
              whole: Sequence[bool] | None = None) -> list[list[PopulationSpec]]:
    """Each population's shards for ``workers`` workers, its runs in seed order: at most
    ``min(workers, runs)`` shards, one where ``whole`` says so (its runs kept in their
    order)."""
    runs = [tuple(p.runs) if whole is not None and whole[i]
            else tuple(sorted(p.runs, key=lambda run: run.seed))
            for i, p in enumerate(populations)]
    limits = [1 if whole is not None and whole[i] else max(1, min(workers, len(r)))
              for i, r in enumerate(runs)]
    counts = _counts(runs, limits, workers)
    bounds = _balanced([_even(len(r), c) for r, c in zip(runs, counts)], runs, workers)
    return [[PopulationSpec(p.key, r[lo:hi]) for lo, hi in zip(b[:-1], b[1:])]
            for p, r, b in zip(populations, runs, bounds)]


def _counts(runs: list[tuple], limits: list[int], workers: int) -> list[int]:
    """Into how many even shards to cut each population: starting from every population
    whole, the population with the costliest shard among those that can still be cut is
    cut once more, again and again, until none can or ``workers`` cuts in a row did not
    shorten the estimated time (two cuts may be needed before one helps); the counts that
    gave the shortest time are kept (the fewest cuts among equals), or every population
    cut as far as it may where that is shorter still."""
    counts = [1] * len(runs)
    if workers <= 1 or not runs:
        return counts

    def time(counts):
        return _makespan([_even(len(r), c) for r, c in zip(runs, counts)], runs, workers)

    best, best_counts, patience = time(counts), list(counts), workers
    while patience:
        cuttable = [i for i in range(len(runs)) if counts[i] < limits[i]]
        if not cuttable:
            break
        costliest = max(cuttable, key=lambda i: (max(_shard_costs(runs[i], _even(
            len(runs[i]), counts[i]))), -i))  # ties: the first
        counts[costliest] += 1
        estimate = time(counts)
        if estimate < best:
            best, best_counts, patience = estimate, list(counts), workers
        else:
            patience -= 1
    return limits if time(limits) < best else best_counts


def _balanced(bounds: list[list[int]], runs: list[tuple], workers: int) -> list[list[int]]:
    """``bounds`` with the cuts moved, a few runs at a time and then one, while the
    estimated time gets shorter (no shard left without a run)."""
    bounds = [list(b) for b in bounds]
    best = _makespan(bounds, runs, workers)
    longest = max((len(r) for r in runs), default=0)
    step = max(1, longest // 8)
    while step:
        moved = False
        for b in bounds:
            for i in range(1, len(b) - 1):
                for delta in (step, -step):
                    if not b[i - 1] < b[i] + delta < b[i + 1]:
                        continue
                    b[i] += delta
                    estimate = _makespan(bounds, runs, workers)
                    if estimate < best - 1e-9:
                        best, moved = estimate, True
                        break
                    b[i] -= delta
        if not moved:
            step //= 2
    return bounds


def _even(size: int, count: int) -> list[int]:
    """Where ``count`` shards of ``size`` runs start and end: sizes within one of each other."""
    count = max(1, min(count, size))
    return [round(i * size / count) for i in range(count + 1)]


def _shard_costs(runs: tuple, bounds: list[int]) -> list[float]:
    return [shard_cost(runs[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _makespan(bounds: list[list[int]], runs: list[tuple], workers: int) -> float:
    """When the last worker finishes: jobs costliest first, each to the worker free first."""
    costs = sorted((cost for r, b in zip(runs, bounds) for cost in _shard_costs(r, b)),
                   reverse=True)
    loads = [0.0] * workers
    for cost in costs:
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)
