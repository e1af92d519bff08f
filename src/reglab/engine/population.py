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
from reglab.engine.epoch import EpochSums, add, train_epoch
from reglab.engine.member import Member, plan
from reglab.engine.rng import SeedStreams
from reglab.engine.state import PopulationState
from reglab.engine.step import forward, weight_penalties
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
        for name in self.metric_names:  # fails early on unknown names
            metrics_module.resolve(name, (1,), (1, 2), where="Population: 'metrics'")
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
        self.metrics: dict[str, Any] = {}
        self.augment = None
        self.stop_requested: set[int] = set()
        #: during fit: (the epoch's running sums, samples seen), for per-batch logs
        self.epoch_progress: tuple[Any, int] | None = None
        self._parked: dict[int, dict] = {}  # members out of the stacked tensors during fit
        self._diverged: dict[int, tuple[int, int]] = {}  # member id -> (epoch, step)

    @property
    def size(self) -> int:
        return len(self.plan.seeds)

    # -- training -----------------------------------------------------------------
    def fit(self, x, y, batch_size: int = 32, epochs: int = 1, validation_data=None,
            shuffle: bool = True, sample_weight=None, initial_epoch: int = 0,
            observers: Sequence[Any] = (), eval_batch_size: int | None = None,
            augment=None) -> PopulationResult:
        """Trains every member; returns a new :class:`PopulationResult` for this call.

        ``augment`` is an optional :class:`reglab.augment.AffineSpec` applied to
        each training batch (ImageDataGenerator semantics), per seed. Observers may
        define ``on_train_begin(population)``, ``on_epoch_begin(epoch)``,
        ``on_train_batch_begin(step)``, ``on_train_batch_end(step)`` (where
        :meth:`running_logs` gives the epoch's logs so far), ``on_epoch_end(epoch,
        logs_by_member)`` and
        ``on_train_end()``, and stop members through ``population.stop_requested``.
        Members that diverged in an earlier call stay frozen.
        """
        started = time.perf_counter()
        batch_size = data_module.check_count("fit", "batch_size", batch_size)
        data_module.check_count("fit", "epochs", epochs, minimum=0)
        train = data_module.prepare(self, x, y, sample_weight, "fit")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ConfigError("fit: 'validation_data' must be a tuple (x_val, y_val) or "
                                  f"(x_val, y_val, sample_weight). Got {type(validation_data).__name__}.")
            val = data_module.prepare(self, *validation_data, *([None] * (3 - len(validation_data))),
                                      "fit: validation_data")
        self.metrics = self._resolve_metrics(train.y)
        self.augment = augment
        self._restore_all()
        self.results = [MemberResult(i, name, seed) for i, (name, seed) in
                        enumerate(zip(self.plan.names, self.plan.seeds))]
        stoppers = {i: EarlyStoppingState.start(rule)
                    for i, rule in enumerate(self.plan.early_stopping) if rule is not None}
        for member_id, at in self._diverged.items():
            result = self.results[member_id]
            result.status, result.diverged_at = "diverged", at
        self._park(list(self._diverged), {})
        self.stop_requested.clear()
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
                sums = train_epoch(self, train, batch_size, shuffle, epoch, stoppers, observers)
                if sums is None:
                    break
                logs = sums.logs(self.state.member_ids, train.x.shape[0])
                if val is not None:
                    for member_id, val_logs in self._evaluate(
                            self.state, val, eval_batch_size or max(batch_size, 1024)).items():
                        logs[member_id].update({f"val_{k}": v for k, v in val_logs.items()})
                stop_now = self._end_epoch(epoch, logs, stoppers, time.perf_counter() - epoch_start)
                for obs in observers:
                    _call(obs, "on_epoch_end", epoch, logs)
                stop_now |= {m for m in self.stop_requested if m in self.state.member_ids}
                self._park([m for m in self.state.member_ids if m in stop_now], stoppers)
            for member_id in self.state.member_ids:
                self.results[member_id].status = "done"
            self._park(list(self.state.member_ids), stoppers)
        finally:
            if flush:
                torch.set_flush_denormal(False)
            self._restore_all()
        for obs in observers:
            _call(obs, "on_train_end")
        return PopulationResult(self.results, time.perf_counter() - started)

    def running_logs(self) -> dict[int, dict[str, float]]:
        """The current epoch's logs so far, per member (synchronizes with the device)."""
        if self.epoch_progress is None or self.epoch_progress[1] == 0:
            return {}
        sums, seen = self.epoch_progress
        return sums.logs(self.state.member_ids, seen)

    def diverge(self, finite: torch.Tensor, epoch: int, step: int, stoppers) -> None:
        """Freezes the members whose loss is not finite (their last weights, or their best
        snapshot when they restore best weights) and records where they diverged."""
        for p in (~finite).nonzero().flatten().tolist():
            member_id = self.state.member_ids[p]
            self._diverged[member_id] = (epoch, step)
            result = self.results[member_id]
            result.status, result.diverged_at = "diverged", (epoch, step)
            stopper = stoppers.get(member_id)
            parked = self.state.extract(member_id, use_snapshot=bool(stopper and stopper.restores))
            self._parked[member_id] = parked
            result.weights = parked["weights"]

    def _end_epoch(self, epoch, logs, stoppers, elapsed):
        stop, snapshot_positions = set(), []
        for p, member_id in enumerate(self.state.member_ids):
            self.state.member_epochs[member_id] += 1
            result, member_logs = self.results[member_id], logs.get(member_id, {})
            for name, value in member_logs.items():
                result.history.setdefault(name, []).append(value)
            result.epochs_run += 1
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

    def _park(self, member_ids, stoppers):
        """Copies members out (best weights where they restore them) and drops them from
        the stacked tensors."""
        if not member_ids:
            return
        for member_id in member_ids:
            stopper = stoppers.get(member_id)
            parked = self.state.extract(member_id, use_snapshot=bool(stopper and stopper.restores))
            self._parked[member_id] = parked
            self.results[member_id].weights = parked["weights"]
        self.state.keep([p for p, m in enumerate(self.state.member_ids) if m not in member_ids])

    def _restore_all(self):
        """Puts parked members back, so that every member can be evaluated or trained again."""
        if self._parked:
            self.state = self.state.merged(self._parked)
            self._parked.clear()

    def _full_state(self) -> PopulationState:
        """Every member's current weights, without disturbing a fit in progress."""
        return self.state.merged(self._parked, with_optimizer=False) if self._parked else self.state

    def _resolve_metrics(self, y: torch.Tensor) -> dict[str, Any]:
        return {name: metrics_module.resolve(name, tuple(y.shape), (1, *self.plan.output_shape),
                                             "Population: 'metrics'")
                for name in self.metric_names}

    # -- inference ----------------------------------------------------------------
    def _evaluate(self, state, data, batch_size):
        sums = EpochSums(self, state.size)
        with torch.no_grad():
            weights_penalty = add(*weight_penalties(state))
            for lo in range(0, data.x.shape[0], batch_size):
                xb, yb = data.x[lo:lo + batch_size], data.y[lo:lo + batch_size].unsqueeze(0)
                wb = None if data.sample_weight is None else \
                    data.sample_weight[lo:lo + batch_size].unsqueeze(0)
                y_pred, activity = forward(state, xb, False)
                data_loss = losses_module.reduce_mean(self.loss.per_sample(yb, y_pred), wb)
                sums.add(yb, y_pred, data_loss, add(weights_penalty, activity), wb, xb.shape[0])
        return sums.logs(state.member_ids, data.x.shape[0])

    def evaluate(self, x, y, batch_size: int = 1024, sample_weight=None) -> list[dict[str, float]]:
        """Each member's loss (penalties included, as Keras) and metrics, in inference mode.

        Safe to call while ``fit`` runs (from an observer): it reads, never changes, training.
        """
        batch_size = data_module.check_count("evaluate", "batch_size", batch_size)
        data = data_module.prepare(self, x, y, sample_weight, "evaluate")
        metrics, self.metrics = self.metrics, self._resolve_metrics(data.y)
        try:
            by_member = self._evaluate(self._full_state(), data, batch_size)
        finally:
            self.metrics = metrics or self.metrics
        return [by_member[m] for m in sorted(by_member)]

    def predict(self, x, batch_size: int = 1024) -> np.ndarray:
        """``(P, N, ...)`` outputs in inference mode (no dropout, moving statistics)."""
        batch_size = data_module.check_count("predict", "batch_size", batch_size)
        data = data_module.prepare(self, x, None, None, "predict")
        state = self._full_state()
        outputs = []
        with torch.no_grad():
            for lo in range(0, data.x.shape[0], batch_size):
                outputs.append(forward(state, data.x[lo:lo + batch_size], False)[0])
        return torch.cat(outputs, dim=1).cpu().numpy()

    def member_weights(self, member_id: int) -> dict[tuple[int, str], torch.Tensor]:
        """One member's current weights, keyed by (layer index, weight name), Keras layout."""
        if not isinstance(member_id, int) or not 0 <= member_id < self.size:
            raise ConfigError(f"Population.member_weights: 'member_id' must be an int in "
                              f"[0, {self.size - 1}]. Got {member_id!r}.")
        if member_id in self._parked:
            return {k: t.clone() for k, t in self._parked[member_id]["weights"].items()}
        return self.state.member_weights(member_id)


def _call(observer, hook, *args):
    method = getattr(observer, hook, None)
    if method is not None:
        method(*args)
