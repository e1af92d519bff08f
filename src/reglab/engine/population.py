"""``Population``: train P models of one structure at once, each as it would train alone.

Example:
    >>> import numpy as np
    >>> from reglab.layers import Dense
    >>> from reglab.regularizers import l2
    >>> members = [Member([Dense(4, activation="relu", input_shape=(3,),
    ...                          kernel_regularizer=l2(s)), Dense(2, activation="softmax")],
    ...                   optimizer="adam", seed=0) for s in (0.0, 0.01)]
    >>> x, y = np.random.rand(16, 3).astype("float32"), np.arange(16) % 2
    >>> result = Population(members).fit(x, y, batch_size=8, epochs=2)
    >>> [len(r.history["loss"]) for r in result.members]
    [2, 2]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reglab import losses as losses_module
from reglab import metrics as metrics_module
from reglab.engine import allocator
from reglab.engine import data as data_module
from reglab.engine.early_stopping import EarlyStoppingState
from reglab.engine.member import Member, plan
from reglab.engine.rng import SeedStreams
from reglab.engine.state import PopulationState
from reglab.engine.step import apply_update, forward, weight_penalties
from reglab.errors import ConfigError


@dataclass
class MemberResult:
    """What one member's training produced."""

    index: int
    name: str
    seed: int
    status: str = "running"  # 'done', 'stopped_early' or 'diverged'
    epochs_run: int = 0
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    diverged_at: tuple[int, int] | None = None  # (epoch, step)
    history: dict[str, list[float]] = field(default_factory=dict)
    weights: dict[tuple[int, str], torch.Tensor] | None = None
    wall_time: float = 0.0


@dataclass
class PopulationResult:
    members: list[MemberResult]
    wall_time: float

    def __getitem__(self, index: int) -> MemberResult:
        return self.members[index]


class Population:
    """A population of models that differ in values only.

    Args:
        members: the :class:`Member` models; they must share one structure.
        loss: a Keras loss name or a :class:`reglab.losses.Loss`.
        metrics: metric names, as Keras's ``compile(metrics=...)``.
        device: 'cpu' or 'cuda'.
        dtype: torch.float32 (default) or torch.float64.
        flush_denormal: flush subnormal floats to zero while training on the CPU (Adam's
            second moments fill with them, and they are slow); off after training.
        keep_freed_memory: on Linux, tell glibc to keep freed memory for reuse instead of
            returning it to the system after every step (see :mod:`reglab.engine.allocator`).
    """

    def __init__(self, members: Sequence[Member], loss: Any = "sparse_categorical_crossentropy",
                 metrics: Sequence[str] = ("accuracy",), device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, flush_denormal: bool = True,
                 keep_freed_memory: bool = True):
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"Population: 'dtype' must be torch.float32 or torch.float64. "
                              f"Got {dtype!r}.")
        self.plan = plan(members)
        self.loss = losses_module.get(loss, where="Population: 'loss'")
        self.metric_names = list(metrics)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("Population: 'device' is 'cuda' but torch sees no CUDA device. "
                              "Use device='cpu'.")
        self.dtype = dtype
        self.flush_denormal = flush_denormal
        if keep_freed_memory and self.device.type == "cpu":
            allocator.keep_freed_memory()
        self.state = PopulationState(self.plan, dtype, self.device)
        self.streams = SeedStreams(self.device)
        self.results = [MemberResult(i, name, seed) for i, (name, seed) in
                        enumerate(zip(self.plan.names, self.plan.seeds))]
        self._parked: dict[int, dict] = {}
        self.stop_requested: set[int] = set()

    @property
    def size(self) -> int:
        return len(self.plan.seeds)

    # -- training -----------------------------------------------------------------
    def fit(self, x, y, batch_size: int = 32, epochs: int = 1, validation_data=None,
            shuffle: bool = True, sample_weight=None, initial_epoch: int = 0,
            observers: Sequence[Any] = (), eval_batch_size: int | None = None,
            augment=None) -> PopulationResult:
        """Trains every member; returns a :class:`PopulationResult`.

        ``augment`` is an optional :class:`reglab.augment.AffineSpec` applied to
        each training batch (ImageDataGenerator semantics), per seed.
        """
        started = time.perf_counter()
        train = data_module.prepare(self, x, y, sample_weight, "fit")
        val = (data_module.prepare(self, *validation_data[:2], None, "fit: validation_data")
               if validation_data is not None else None)
        batch_size = data_module.check_count("fit", "batch_size", batch_size)
        data_module.check_count("fit", "epochs", epochs, minimum=0)
        self.metrics = {name: metrics_module.resolve(name, tuple(train.y.shape),
                                                     (1, *self.plan.output_shape), "compile")
                        for name in self.metric_names}
        self._restore_all()
        self.stop_requested.clear()
        stoppers = {i: EarlyStoppingState.start(rule, tuple(self.metric_names))
                    for i, rule in enumerate(self.plan.early_stopping) if rule is not None}
        for r in self.results:
            r.status = "running"
        flush = self.flush_denormal and self.device.type == "cpu"
        if flush:
            torch.set_flush_denormal(True)
        try:
            for obs in observers:
                _call(obs, "on_train_begin", self)
            for epoch in range(initial_epoch, epochs):
                if self.state.size == 0:
                    break
                for obs in observers:
                    _call(obs, "on_epoch_begin", epoch)
                epoch_start = time.perf_counter()
                logs = self._train_epoch(train, batch_size, shuffle, epoch, observers, augment)
                if val is not None:
                    for member_id, val_logs in self._evaluate(
                            val, eval_batch_size or max(batch_size, 1024)).items():
                        logs[member_id].update({f"val_{k}": v for k, v in val_logs.items()})
                elapsed = time.perf_counter() - epoch_start
                stop_now = self._end_epoch(epoch, logs, stoppers, elapsed)
                for obs in observers:
                    _call(obs, "on_epoch_end", epoch, logs)
                stop_now |= {m for m in self.stop_requested if m in self.state.member_ids}
                self._park([m for m in self.state.member_ids if m in stop_now], stoppers)
            for member_id in list(self.state.member_ids):
                self.results[member_id].status = "done"
            self._park(list(self.state.member_ids), stoppers)
        finally:
            if flush:
                torch.set_flush_denormal(False)
            self._restore_all()
        for obs in observers:
            _call(obs, "on_train_end")
        return PopulationResult(self.results, time.perf_counter() - started)

    def _train_epoch(self, train, batch_size, shuffle, epoch, observers, augment):
        state = self.state
        n = train.x.shape[0]
        seeds = sorted(set(state.seeds))
        if shuffle:
            order = self.streams.permutations(seeds, n)  # (S, N)
        else:
            order = torch.arange(n, device=self.device).expand(len(seeds), n)
        seed_rows = {s: i for i, s in enumerate(seeds)}
        layout = SeedLayout(self, seed_rows)
        totals = None
        for step, lo in enumerate(range(0, n, batch_size)):
            index = order[:, lo:lo + batch_size]  # (S, b)
            if layout.order_rows is not None:
                index = index[layout.order_rows]
            xb, yb, wb = data_module.batch(self, train, index, layout, augment)
            y_pred, activity = forward(state, xb, True, layout.random_for)
            data_loss = losses_module.reduce_mean(self.loss.per_sample(yb, y_pred), wb)
            penalty_value, custom = weight_penalties(state)
            _add(_add(data_loss, custom), activity).sum().backward()
            with torch.no_grad():
                penalty = _add(_add(penalty_value, custom), activity)
                penalty = torch.zeros_like(data_loss) if penalty is None else penalty.detach()
                data_loss = data_loss.detach()
                count = index.shape[1]
                stats = torch.stack([data_loss * count, penalty * count,
                                     *(m(yb, y_pred.detach()).sum(dim=-1)
                                       for m in self.metrics.values())])  # (K, P)
            finite = torch.isfinite(data_loss + penalty)
            if not bool(finite.all()):
                self._diverge(finite, epoch, step)
                keep = finite.nonzero().flatten()
                stats = stats.index_select(1, keep)
                totals = None if totals is None else totals.index_select(1, keep)
                state.keep(keep.tolist())
                if state.size == 0:
                    break
                layout = SeedLayout(self, seed_rows)
            apply_update(state)
            totals = stats if totals is None else totals.add_(stats)
            for obs in observers:
                _call(obs, "on_train_batch_end", step)
        if state.size == 0 or totals is None:
            return {}
        return self._logs(totals, n)

    def _diverge(self, finite, epoch, step):
        for p in (~finite).nonzero().flatten().tolist():
            member_id = self.state.member_ids[p]
            result = self.results[member_id]
            result.status, result.diverged_at = "diverged", (epoch, step)
            self._parked[member_id] = self._extract(member_id, use_snapshot=False)

    def _end_epoch(self, epoch, logs, stoppers, elapsed):
        stop, snapshot_positions = set(), []
        for p, member_id in enumerate(self.state.member_ids):
            result, member_logs = self.results[member_id], logs.get(member_id, {})
            for name, value in member_logs.items():
                result.history.setdefault(name, []).append(value)
            result.epochs_run = epoch + 1
            result.wall_time += elapsed
            stopper = stoppers.get(member_id)
            if stopper is None:
                continue
            take, halt = stopper.update(epoch, member_logs)
            result.best_epoch = stopper.best_epoch
            if take:
                snapshot_positions.append(p)
            if halt:
                result.status, result.stopped_epoch = "stopped_early", epoch
                stop.add(member_id)
        self.state.snapshot(snapshot_positions)
        return stop

    def _extract(self, member_id, use_snapshot):
        state = self.state
        p = state.position(member_id)
        return {
            "weights": state.member_weights(member_id, use_snapshot=use_snapshot),
            "optimizer": {k: {n: t[p].detach().clone() for n, t in s.items()}
                          for k, s in state.optimizer_state.items()},
        }

    def _park(self, member_ids, stoppers):
        if not member_ids:
            return
        for member_id in member_ids:
            stopper = stoppers.get(member_id)
            parked = self._extract(member_id, use_snapshot=bool(stopper and stopper.restores))
            self._parked[member_id] = parked
            self.results[member_id].weights = parked["weights"]
        self.state.keep([p for p, m in enumerate(self.state.member_ids) if m not in member_ids])

    def _restore_all(self):
        """Puts parked members back, so that every member can be evaluated or trained again."""
        if not self._parked:
            return
        state = self.state
        present = {m: state.position(m) for m in state.member_ids}
        everyone = sorted(set(present) | set(self._parked))
        with torch.no_grad():
            for key, w in list(state.weights.items()):
                rows = [w[present[m]].detach() if m in present else
                        self._parked[m]["weights"][key].to(self.device) for m in everyone]
                state.weights[key] = torch.stack(rows).requires_grad_(w.requires_grad)
            for key, opt_state in state.optimizer_state.items():
                for name, t in opt_state.items():
                    rows = [t[present[m]] if m in present else
                            self._parked[m]["optimizer"][key][name].to(self.device)
                            for m in everyone]
                    opt_state[name] = torch.stack(rows)
        state.member_ids = everyone
        state.snapshots = None
        state.refresh_values()
        for m in everyone:
            if m in self._parked and self.results[m].weights is None:
                self.results[m].weights = self._parked[m]["weights"]
        self._parked.clear()

    # -- inference ----------------------------------------------------------------
    def _evaluate(self, data, batch_size):
        state = self.state
        sums = None
        with torch.no_grad():
            weights_penalty = _add(*weight_penalties(state))
            for lo in range(0, data.x.shape[0], batch_size):
                xb, yb = data.x[lo:lo + batch_size], data.y[lo:lo + batch_size]
                y_pred, activity = forward(state, xb, False)
                data_loss = losses_module.reduce_mean(self.loss.per_sample(yb, y_pred))
                penalty = _add(weights_penalty, activity)
                if penalty is None:
                    penalty = torch.zeros_like(data_loss)
                stats = torch.stack([data_loss * xb.shape[0], penalty * xb.shape[0],
                                     *(m(yb, y_pred).sum(dim=-1) for m in self.metrics.values())])
                sums = stats if sums is None else sums.add_(stats)
        return self._logs(sums, data.x.shape[0])

    def _logs(self, sums: torch.Tensor, count: int) -> dict[int, dict[str, float]]:
        """Per-member logs from summed ``[data_loss, penalty, *metrics]`` rows, as Keras names them."""
        means = (sums / count).cpu().numpy()
        logs = {}
        for p, member_id in enumerate(self.state.member_ids):
            data_loss, penalty = float(means[0, p]), float(means[1, p])
            logs[member_id] = {"loss": data_loss + penalty, "data_loss": data_loss,
                               "penalty": penalty}
            logs[member_id].update({name: float(means[2 + k, p])
                                    for k, name in enumerate(self.metrics)})
        return logs

    def evaluate(self, x, y, batch_size: int = 1024) -> list[dict[str, float]]:
        """Each member's loss (penalties included, as Keras) and metrics, in inference mode."""
        self._restore_all()
        data = data_module.prepare(self, x, y, None, "evaluate")
        self.metrics = {name: metrics_module.resolve(name, tuple(data.y.shape),
                                                     (1, *self.plan.output_shape), "compile")
                        for name in self.metric_names}
        by_member = self._evaluate(data, batch_size)
        return [by_member[m] for m in sorted(by_member)]

    def predict(self, x, batch_size: int = 1024) -> np.ndarray:
        """``(P, N, ...)`` outputs in inference mode (no dropout, moving statistics)."""
        self._restore_all()
        data = data_module.prepare(self, x, None, None, "predict")
        outputs = []
        with torch.no_grad():
            for lo in range(0, data.x.shape[0], batch_size):
                outputs.append(forward(self.state, data.x[lo:lo + batch_size], False)[0])
        return torch.cat(outputs, dim=1).cpu().numpy()

    def member_weights(self, member_id: int) -> dict[tuple[int, str], torch.Tensor]:
        """One member's current weights, keyed by (layer index, weight name), Keras layout."""
        self._restore_all()
        return self.state.member_weights(member_id)


def _add(a, b):
    """``a + b`` where either may be None (a term that is absent)."""
    if a is None:
        return b
    return a if b is None else a + b


class SeedLayout:
    """The distinct seeds of the members still training, and how members map onto them."""

    def __init__(self, population: Population, seed_rows: dict[int, int]):
        state, streams, dtype = population.state, population.streams, population.dtype
        self.seeds = sorted(set(state.seeds))
        rows = [seed_rows[s] for s in self.seeds]
        self.order_rows = None if rows == list(range(len(seed_rows))) else rows
        self.member_rows = None
        if len(self.seeds) > 1:
            where = {s: i for i, s in enumerate(self.seeds)}
            self.member_rows = torch.tensor([where[s] for s in state.seeds],
                                            device=population.device)
        seeds, member_rows = self.seeds, self.member_rows

        def random_for(name):
            def random(kind, shape):
                draws = streams.draw(seeds, f"noise/{name}", kind, shape, dtype)
                return draws if member_rows is None else draws.index_select(0, member_rows)
            return random

        self.random_for = random_for


def _call(observer, hook, *args):
    method = getattr(observer, hook, None)
    if method is not None:
        method(*args)
