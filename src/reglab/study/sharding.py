"""How a study's populations are cut into jobs for several workers.

A population trains as one vectorized step per batch, and that step costs a fixed part
(the batch, each layer's dispatch, the optimizer's calls) besides its members' own work.
Cutting a population into shards pays the fixed part once per shard, so the cut is only
worth it where it keeps a worker busy that would otherwise wait. The rule here looks at
the whole study: starting from every population whole, it cuts the population of the
costliest shard once more (into at most one shard per worker), and keeps the cuts that gave
the workers the shortest time together, estimated with a shard costing its runs plus
:data:`SHARD_OVERHEAD` runs and the jobs handed, largest first, to the first free worker
(as the executor hands them).

For the tutorial study on two workers (75, 5 and 5 runs) that cuts the large population
in two and trains the augmentation and batch-normalization populations whole, one on each
worker, where cutting every population in two had each worker pay those two
populations' fixed costs too. A study of one population is still cut into one shard per
worker.

Members are independent inside a population, so whichever way a population is cut, each
member trains as it would alone (bit for bit).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from reglab.study.plan import PopulationSpec

#: a shard's fixed cost per step, in runs' work. Measured on the tutorial study (784-64-10,
#: batch 128, one thread per worker, Zen 3, 2026-12-01): a run of the large population
#: cost 11 s, and shards of 2 and 3 runs of the augmentation and batch-normalization
#: populations 122/147 s and 74/90 s, i.e. 72 s and 42 s fixed, 3.8-6.4 runs' work.
SHARD_OVERHEAD = 4.0


def shard_counts(sizes: Sequence[int], workers: int,
                 whole: Sequence[bool] | None = None) -> list[int]:
    """Into how many shards to cut each population of ``sizes`` runs for ``workers``
    workers (each at most ``min(workers, size)``; 1 where ``whole`` says so). Starting
    from every population whole, the population with the costliest shard among those that
    can still be cut is cut once more, again and again, until none can or ``workers`` cuts in a row did not shorten the
    estimated time (two cuts may be needed before one helps); the counts that gave the
    shortest time are kept (the fewest cuts among equals), or every population cut into one
    shard per worker where that is shorter still."""
    counts = [1] * len(sizes)
    if workers <= 1 or not sizes:
        return counts
    limits = [1 if whole is not None and whole[i] else min(workers, size)
              for i, size in enumerate(sizes)]
    best, best_counts, patience = _makespan(sizes, counts, workers), list(counts), workers
    while patience:
        cuttable = [i for i in range(len(sizes)) if counts[i] < limits[i]]
        if not cuttable:
            break
        costliest = max(cuttable, key=lambda i: (-(-sizes[i] // counts[i]), -i))  # ties: first
        counts[costliest] += 1
        time = _makespan(sizes, counts, workers)
        if time < best:
            best, best_counts, patience = time, list(counts), workers
        else:
            patience -= 1
    return limits if _makespan(sizes, limits, workers) < best else best_counts


def cut(population: PopulationSpec, count: int) -> list[PopulationSpec]:
    """``population``'s runs, in seed order, in ``count`` shards of sizes within one run of
    each other."""
    runs = sorted(population.runs, key=lambda run: run.seed)
    bounds = _bounds(len(runs), max(1, min(count, len(runs))))
    return [PopulationSpec(population.key, tuple(runs[lo:hi]))
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def _bounds(size: int, count: int) -> list[int]:
    """Where ``count`` shards of ``size`` runs start and end: sizes within one of each other."""
    return [round(i * size / count) for i in range(count + 1)]


def _shard_sizes(size: int, count: int) -> list[int]:
    bounds = _bounds(size, count)
    return [hi - lo for lo, hi in zip(bounds[:-1], bounds[1:])]


def _makespan(sizes: Sequence[int], counts: Sequence[int], workers: int) -> float:
    """When the last worker finishes: jobs largest first, each to the worker free first."""
    costs = sorted((part + SHARD_OVERHEAD for size, count in zip(sizes, counts)
                    for part in _shard_sizes(size, count)), reverse=True)
    loads = [0.0] * workers
    for cost in costs:
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)
