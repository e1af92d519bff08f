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
from reglab.engine import allocator, averaging, denormals, hyperparameters
from reglab.engine import data as data_module
from reglab.engine import member_state as tree
from reglab.engine.early_stopping import EarlyStoppingState
from reglab.engine.epoch import evaluate_members, observer_hooks, train_epoch
from reglab.engine.member import Member, extended, plan
from reglab.engine.member_state import copy_member, copy_rows
from reglab.engine.rng import SeedStreams
from reglab.engine.state import PopulationState
from reglab.engine.step import forward
from reglab.engine.update import build_chain
from reglab.errors import ConfigError

#: a member's state that is not its training state (member_training_state): its weights, the
#: early-stopping snapshot and rule of a fit
_NOT_TRAINING = frozenset({"weights", "best", "early_stopping"})


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
    #: the epoch's running logs to the bad batch, counted in (Keras's running means); None
    #: where the check was deferred (off the CPU), the logs then holding later batches
    diverged_logs: dict[str, float] | None = None
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
        flush_denormal: flush subnormal floats to zero while ``fit`` trains on the CPU
            (Adam's second moments fill with them, and they are slow); the process's
            setting is restored when ``fit`` returns.
        keep_freed_memory: on Linux, tell glibc to keep freed memory for reuse instead of
            returning it to the system after every step (see :mod:`reglab.engine.allocator`).
            Off by default: it is a setting of the whole process that cannot be undone, so
            it is for programs that own their process (``reglab run`` turns it on).
    """

    def __init__(self, members: Sequence[Member], loss: Any = "sparse_categorical_crossentropy",
                 metrics: Sequence[str] = ("accuracy",), device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, flush_denormal: bool = True,
                 keep_freed_memory: bool = False):
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"Population: 'dtype' must be torch.float32 or torch.float64. "
                              f"Got {dtype!r}.")
        self._members = _member_list(members)
        self.plan = plan(self._members)
        self.loss = losses_module.check_trainable(
            losses_module.resolve(loss, where="Population: 'loss'"), "Population: 'loss'")
        if isinstance(metrics, str) or (metrics is not None and not isinstance(
                metrics, (list, tuple))):
            raise ConfigError("Population: 'metrics' must be a list of metric names (as "
                              f"Keras's compile(metrics=['accuracy'])) or None. Got {metrics!r}.")
        self.metric_names = list(metrics or ())
        logged = {}
        for name in self.metric_names:  # fails early on unknown names
            metrics_module.resolve(name, (1,), (1, 2), where="Population: 'metrics'")
            label = getattr(name, "__name__", name)
            if label in logged:  # logs are keyed by name: a second would hide the first
                raise ConfigError(f"Population: 'metrics' logs each metric by its name; "
                                  f"{logged[label]!r} and {name!r} are both named {label!r}. "
                                  f"Give one another name (name=...).")
            logged[label] = name
        self.device = _device(device)
        self.dtype = dtype
        self.flush_denormal = flush_denormal
        if keep_freed_memory and self.device.type == "cpu":
            allocator.keep_freed_memory()
        self.state = PopulationState(self.plan, dtype, self.device)
        self.chain = build_chain(self.state)
        self.streams = SeedStreams(self.device)
        self.results = [MemberResult(i, name, seed) for i, (name, seed) in
                        enumerate(zip(self.plan.names, self.plan.seeds))]
        self.metrics: dict[str, Any] = {}
        self.augment = None
        self.stop_requested: set[int] = set()
        #: set by an observer's ``on_train_batch_end``: the epoch ends after that batch (for
        #: every member), and goes on to its validation and ``on_epoch_end`` over the
        #: batches trained (Keras's ``stop_training`` set in the middle of an epoch)
        self.end_epoch_requested = False
        #: during fit: (the epoch's running sums, samples seen), for per-batch logs
        self.epoch_progress: tuple[Any, int] | None = None
        #: the sums of the last pass over data: an epoch's training, or an evaluation
        #: (a validation's too); what Keras's compiled metric objects end holding
        self.last_sums = None
        self._parked: dict[int, dict] = {}  # members out of the stacked tensors during fit
        self._diverged: dict[int, tuple[int, int]] = {}  # member id -> (epoch, step)
        self._removed: set[int] = set()
        #: members whose state was freed for good (discard_members)
        self._discarded: set[int] = set()
        #: during fit: the epoch of the call at which a member added mid-call joined (its
        #: early stopping counts its own epochs from there)
        self._joined: dict[int, int] = {}
        self._epoch: int | None = None

    @property
    def size(self) -> int:
        return len(self.plan.seeds)

    # -- training -----------------------------------------------------------------
    def fit(self, x, y, batch_size: int = 32, epochs: int = 1, validation_data=None,
            shuffle: bool | str = True, sample_weight=None, initial_epoch: int = 0,
            observers: Sequence[Any] = (), eval_batch_size: int | None = None,
            augment=None, finalize: bool = True, resume: dict | None = None,
            validation_freq: int | list[int] = 1,
            batch_sizes: Sequence[int] | None = None) -> PopulationResult:
        """Trains every member; returns a new :class:`PopulationResult` for this call.

        With ``finalize`` (the default), members that average their weights (EMA, SWA) end
        the call with their averages, as Keras's ``fit`` ends; a loop that calls ``fit`` once
        per epoch passes ``finalize=False`` and calls :meth:`finalize_averages` at its end.

        ``x`` may be the :class:`reglab.engine.data.Data` that ``data.prepare`` gave for
        the arrays (checked before, ``y`` and ``sample_weight`` in it): the Keras API checks
        the data before its callbacks run.

        ``shuffle``: True (a new order of the samples each epoch, per seed), False, or
        Keras's ``'batch'`` (the batches in order, each one's samples shuffled).

        ``batch_sizes``: each epoch's batches in order, adding up to the samples of ``x``,
        for batches that are not all ``batch_size`` but one last shorter (a Python
        generator's batches as they came, a short one in the middle of an epoch).

        ``augment`` is an optional :class:`reglab.augment.AffineSpec` applied to
        each training batch (ImageDataGenerator semantics), per seed. Observers may
        define ``on_train_begin(population)``, ``on_epoch_begin(epoch)``,
        ``on_train_batch_begin(step)``, ``on_train_batch_end(step)`` (where
        :meth:`running_logs` gives the epoch's logs so far), ``on_epoch_end(epoch,
        logs_by_member)`` and
        ``on_train_end()``, and stop members through ``population.stop_requested`` (or end
        the epoch after the present batch through ``population.end_epoch_requested``).
        The validation of each epoch calls ``on_test_begin()``, ``on_test_batch_begin(step)``,
        ``on_test_batch_end(step, logs_by_member)`` and ``on_test_end(logs_by_member)``.
        Members that diverged in an earlier call stay frozen.

        ``resume``: a :meth:`checkpoint` taken at the end of an epoch of an earlier call of
        the same ``fit`` (same members and data); training goes on from the next epoch as
        if it had not stopped. Observers may define ``on_epoch_complete(epoch)``, called
        when an epoch is over and stopped members are parked: the moment to checkpoint.
        """
        started = time.perf_counter()
        batch_size = data_module.check_count("fit", "batch_size", batch_size)
        data_module.check_count("fit", "epochs", epochs, minimum=0)
        data_module.check_count("fit", "initial_epoch", initial_epoch, minimum=0)
        if eval_batch_size is not None:
            eval_batch_size = data_module.check_count("fit", "eval_batch_size", eval_batch_size)
        if not (isinstance(shuffle, (bool, np.bool_)) or isinstance(shuffle, str)
                and shuffle == "batch"):
            raise ConfigError("fit: 'shuffle' must be True, False or 'batch' (each batch's "
                              f"samples shuffled among themselves). Got {shuffle!r}.")
        observers = _observer_list("fit", observers)
        # x may come checked already (a Data from data.prepare, y and sample_weight in it)
        train = x if isinstance(x, data_module.Data) else \
            data_module.prepare(self, x, y, sample_weight, "fit")
        if batch_sizes is not None:
            batch_sizes = data_module.check_batch_sizes("fit", batch_sizes, train.x.shape[0])
        check_validation_freq(validation_freq, "Population.fit")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ConfigError("fit: 'validation_data' must be a tuple (x_val, y_val) or "
                                  f"(x_val, y_val, sample_weight). Got {type(validation_data).__name__}.")
            val = data_module.prepare(self, *validation_data, *([None] * (3 - len(validation_data))),
                                      "fit: validation_data")
        self.metrics = self._resolve_metrics(train.y[0] if train.per_member else train.y)
        self.augment = augment
        self._train, self._batch_size = train, batch_size  # for averaging's final pass
        if resume is not None:
            initial_epoch = self._resume(resume)
        else:
            self._restore_all()
            self.results = [MemberResult(i, name, seed) for i, (name, seed) in
                            enumerate(zip(self.plan.names, self.plan.seeds))]
            # Each member's early-stopping state, per fit (as Keras's callback resets it),
            # lives in the member tree with the rest of its state.
            self.state.members.scalars["early_stopping"] = [
                None if self.plan.early_stopping[m] is None
                else EarlyStoppingState.start(self.plan.early_stopping[m],
                                              compiled=self._metric_directions())
                for m in self.state.member_ids]
            self._joined = {}
            for member_id, at in self._diverged.items():
                result = self.results[member_id]
                result.status, result.diverged_at = "diverged", at
            for member_id in self._removed:
                self.results[member_id].status = "removed"
            self._park(sorted((set(self._diverged) | self._removed) - self._discarded))
        self.stop_requested.clear()
        flush = self.flush_denormal and self.device.type == "cpu"
        flushing_before = denormals.flushing() if flush else None
        if flush:
            torch.set_flush_denormal(True)
        try:
            for obs in observers:
                _call(obs, "on_train_begin", self)
            for epoch in range(initial_epoch, epochs):
                if self.state.size == 0:
                    break
                self._epoch = epoch
                for obs in observers:
                    _call(obs, "on_epoch_begin", epoch)
                epoch_start = time.perf_counter()
                self.end_epoch_requested = False
                sums = train_epoch(self, train, batch_size, shuffle, epoch, observers,
                                   batch_sizes)
                if sums is None:
                    break
                self.last_sums = sums  # (a validation after it takes its place)
                logs = sums.logs(self.state.member_ids, sums.samples)  # the batches trained
                if val is not None and validates(epoch, validation_freq):
                    eval_size = eval_batch_size or max(batch_size, 1024)
                    for obs in observers:
                        _call(obs, "on_test_begin")
                    by_member = self._evaluate(self.state, val, eval_size, observers)
                    for obs in observers:
                        _call(obs, "on_test_end", by_member)
                    for member_id, val_logs in by_member.items():
                        logs[member_id].update({f"val_{k}": v for k, v in val_logs.items()})
                    if self.state.optimizer.use_ema:  # the averaged weights, reported as such
                        averaged = self._evaluate(self.state.averaged_view("ema"), val, eval_size)
                        for member_id, val_logs in averaged.items():
                            logs[member_id].update({f"val_ema_{k}": v for k, v in val_logs.items()
                                                    if k not in ("data_loss", "penalty")})
                stop_now = self._end_epoch(epoch, logs, time.perf_counter() - epoch_start)
                for obs in observers:
                    _call(obs, "on_epoch_end", epoch, logs)
                stop_now |= {m for m in self.stop_requested if m in self.state.member_ids}
                for member_id in self._removed & set(self.state.member_ids):
                    self.results[member_id].status = "removed"
                    stop_now.add(member_id)
                self._park([m for m in self.state.member_ids if m in stop_now],
                           finalize=finalize)
                for obs in observers:
                    _call(obs, "on_epoch_complete", epoch)
            for member_id in self.state.member_ids:
                self.results[member_id].status = "done"
            self._epoch = None
            self._park(list(self.state.member_ids), finalize=finalize)
        finally:
            self._epoch = None
            if flush:
                torch.set_flush_denormal(flushing_before)
            self.state.clear_grads()  # a step interrupted between its backward and update
            self._restore_all()
        for obs in observers:
            _call(obs, "on_train_end")
        return PopulationResult(self.results, time.perf_counter() - started)

    # -- checkpoints ----------------------------------------------------------------
    CHECKPOINT_FORMAT = 1

    def checkpoint(self) -> dict:
        """Everything ``fit`` needs to go on after the epoch that just ended (call it from an
        observer's ``on_epoch_complete``, or its ``on_epoch_end``, before the members stopped
        at that epoch are parked, as a Keras model's backup is taken): every member's tree
        (weights, optimizer slots, snapshots, averages, steps and epochs trained,
        early-stopping state), the parked members, the results so far. The random streams need no state: they are keyed by
        each member's seed and epochs trained. For ``torch.save``; not a copy, so save it
        before training goes on."""
        if self._epoch is None:
            raise ConfigError("Population.checkpoint: only between the epochs of a fit "
                              "(from an observer's on_epoch_complete).")
        return {"format": self.CHECKPOINT_FORMAT, "epoch": self._epoch,
                "names": list(self.plan.names), "seeds": list(self.plan.seeds),
                "members": self.state.members, "optimizer_values": self.state.optimizer_values,
                "parked": self._parked, "results": self.results, "diverged": self._diverged,
                "removed": self._removed, "joined": self._joined,
                "discarded": self._discarded}

    def _resume(self, checkpoint: dict) -> int:
        """Takes a :meth:`checkpoint`'s state; returns the epoch to train next.

        A checkpoint marked ``model_backup`` (a Keras model's ``BackupAndRestore``) is taken
        as Keras takes its backup: the weights, the optimizer's state (slots, steps, learning
        rate) and the epoch, with this population's other hyperparameters (the new compile's
        momentum, weight decay...); its seeds and names are taken whatever they were (a model
        built without a seed draws a new one in each process), and members it had stopped
        (a callback's early stop) or parked after a non-finite loss train again, as a new
        ``fit`` of a Keras model does."""
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != \
                self.CHECKPOINT_FORMAT or not _CHECKPOINT_KEYS <= checkpoint.keys():
            raise ConfigError("fit: 'resume' must be a Population.checkpoint() of format "
                              f"{self.CHECKPOINT_FORMAT}. Got {type(checkpoint).__name__}.")
        backup = bool(checkpoint.get("model_backup"))
        for key, ours in (("names", list(self.plan.names)), ("seeds", list(self.plan.seeds))):
            if backup and len(checkpoint[key]) == len(ours):
                continue
            if checkpoint[key] != ours:
                raise ConfigError(f"fit: 'resume' is the checkpoint of another population (its "
                                  f"members' {key} {checkpoint[key][:3]}..., these "
                                  f"{ours[:3]}...).")
        members = checkpoint["members"]
        values = checkpoint["optimizer_values"]
        if backup:  # Keras's optimizer variables: the learning rate; the rest as compiled
            values = [{**ours, **({"learning_rate": theirs["learning_rate"]}
                                  if "learning_rate" in theirs and "learning_rate" in ours
                                  else {})}
                      for ours, theirs in zip(self.state.optimizer_values, values)]
        self._check_resumed_structure(members, values)
        self._check_resumed_optimizer(members)
        if backup:
            self.plan.seeds[:] = [int(seed) for seed in checkpoint["seeds"]]
        for family in members.tensors.values():
            for key, t in family.items():
                family[key] = t.to(self.device)
        members._mark_trainable()
        self.state.members = members
        self.state.optimizer_values = values
        self.state.refresh_values()
        self._parked = checkpoint["parked"]
        self.results = checkpoint["results"]
        self._diverged = checkpoint["diverged"]
        self._removed = checkpoint["removed"]
        self._discarded = checkpoint.get("discarded", set())
        self._joined = checkpoint["joined"]
        if backup:
            self._restore_all()
            self._diverged = {}
            for result in self.results:
                result.status = "running"
        return int(checkpoint["epoch"]) + 1

    def _check_resumed_optimizer(self, members) -> None:
        """Refuses a checkpoint whose optimizer state lacks a slot or a value this optimizer
        keeps (Adam's resumed by Adamax, a float32 run by a loss-scaled one): there is no state
        to go on from. (Keras skips such a backup's optimizer variables with a warning;
        here nothing changes, and the message says what differs.)"""
        def kept(state):
            return ({name for name in state.tensors if name != "weights"},
                    set(state.scalars) - {"early_stopping"})
        (slots, values), (needed, needed_values) = kept(members), kept(self.state.members)
        missing = sorted(needed - slots) + sorted(needed_values - values)
        if missing:
            name = type(self.plan.optimizers[0]).__name__ if self.plan.optimizers else "?"
            raise ConfigError(
                f"fit: 'resume' is the checkpoint of another optimizer: this one ({name}) "
                f"keeps {', '.join(missing)}, which the checkpoint has not (it has "
                f"{', '.join(sorted(slots | values)) or 'nothing'}). Resume with the optimizer "
                "it was saved with, or delete it to start over.")

    def _check_resumed_structure(self, members, optimizer_values) -> None:
        """Refuses a checkpoint of other weights (a layer's units, another layer) or another
        optimizer under the same names, as Keras refuses to load such a backup."""
        def shapes(state):
            return {key: tuple(t.shape[1:]) for key, t in state.tensors.get("weights",
                                                                         {}).items()}
        theirs, ours = shapes(members), shapes(self.state.members)
        for key in sorted(theirs.keys() | ours.keys(), key=str):
            if theirs.get(key) != ours.get(key):
                index, weight = key
                layers = self.plan.layers
                name = getattr(layers[index].layer, "name", None) if index < len(layers) \
                    else None
                layer = f"layer {index}{f' ({name!r})' if name else ''}"
                if key not in theirs or key not in ours:  # positions laid out otherwise
                    detail = (f"{layer} has a weight {weight!r} here, the checkpoint none "
                              "at that position" if key in ours else
                              f"the checkpoint has a weight {weight!r} at layer {index}, this "
                              "model none")
                    detail += (" (the layers are laid out otherwise: a layer added or "
                               "removed, a Dropout included)")
                else:
                    detail = (f"the weight {weight!r} of {layer} has shape {theirs[key]} "
                              f"there, {ours[key]} here")
                raise ConfigError(
                    f"fit: 'resume' is the checkpoint of another population: {detail}.")
        saved = sorted(optimizer_values[0]) if optimizer_values else []
        here = sorted(self.state.optimizer_values[0]) if self.state.optimizer_values else []
        if saved != here:
            raise ConfigError("fit: 'resume' is the checkpoint of another optimizer (its "
                              f"hyperparameters {saved}, this one's {here}).")

    def running_logs(self) -> dict[int, dict[str, float]]:
        """The current epoch's logs so far, per member (synchronizes with the device)."""
        if self.epoch_progress is None or self.epoch_progress[1] == 0:
            return {}
        sums, seen = self.epoch_progress
        return sums.logs(self.state.member_ids, seen)

    def _stopper(self, member_id: int) -> EarlyStoppingState | None:
        """The early-stopping state of a present member (None without a rule)."""
        return self.state.members.scalar("early_stopping", member_id)

    def diverge(self, finite: torch.Tensor, epoch: int, step: int,
                logs: dict[int, dict[str, float]] | None = None) -> None:
        """Freezes the members whose loss is not finite (their last weights, or their best
        snapshot when they restore best weights) and records where they diverged, and their
        epoch's running ``logs`` there (per member id)."""
        diverged = [self.state.member_ids[p] for p in (~finite).nonzero().flatten().tolist()]
        restoring = [m for m in diverged if getattr(self._stopper(m), "restores", False)]
        for member_id, parked in self.state.extract(diverged, restoring).items():
            # epochs counted from the member's own start (one added mid-fit joined later)
            own_epoch = epoch - self._joined.get(member_id, 0)
            self._diverged[member_id] = (own_epoch, step)
            result = self.results[member_id]
            result.status, result.diverged_at = "diverged", (own_epoch, step)
            result.diverged_logs = (logs or {}).get(member_id)
            self._parked[member_id] = parked
            result.weights = parked["tensors"]["weights"]

    def _end_epoch(self, epoch, logs, elapsed):
        stop, snapshot_positions = set(), []
        self.state.count_epoch()
        averaging.update_at_epoch_end(self.state, [self.state.epochs(m)
                                                   for m in self.state.member_ids])
        for p, member_id in enumerate(self.state.member_ids):
            result, member_logs = self.results[member_id], logs.get(member_id, {})
            for name, value in member_logs.items():
                result.history.setdefault(name, []).append(value)
            result.epochs_run += 1
            result.wall_time += elapsed
            stopper = self.state.members.scalars["early_stopping"][p]
            if stopper is None:
                continue
            take, halt = stopper.update(epoch - self._joined.get(member_id, 0), member_logs)
            result.best_epoch = stopper.best_epoch
            if take:
                snapshot_positions.append(p)
            if halt:
                result.status = "stopped_early"
                result.stopped_epoch = epoch - self._joined.get(member_id, 0)
                stop.add(member_id)
        self.state.snapshot(snapshot_positions)
        return stop

    def _park(self, member_ids, finalize: bool = False):
        """Copies members out and drops them from the stacked tensors. With ``finalize``
        (their training ends), a member keeps its early-stopping snapshot when it restores
        one, else its stochastic weight average (statistics recomputed) when it has one,
        else its exponential moving average when its optimizer keeps one (Keras's
        ``finalize_variable_values``), else its last weights."""
        if not member_ids:
            return
        stoppers = {m: self._stopper(m) for m in member_ids}
        restores = {m: bool(stoppers[m] and stoppers[m].restores) for m in member_ids}
        averaged = set()
        if finalize and averaging.averages(self.state):
            positions = [p for p, m in enumerate(self.state.member_ids)
                         if m in restores and not restores[m]
                         and self.state.members.scalars["swa_count"][p] > 0]
            averaging.finalize(self, positions, self._train, self._batch_size)
            averaged = {self.state.member_ids[p] for p in positions}
        use_ema = finalize and self.state.optimizer.use_ema
        ema = {m: "ema" for m in member_ids if use_ema and m not in averaged}
        rows = self.state.extract(list(member_ids), [m for m in member_ids if restores[m]], ema)
        for member_id, parked in rows.items():
            self._parked[member_id] = parked
            self.results[member_id].weights = parked["tensors"]["weights"]
        self.state.keep([p for p, m in enumerate(self.state.member_ids) if m not in member_ids])

    def _restore_all(self):
        """Puts parked members back, so that every member can be evaluated or trained again."""
        if self._parked:
            self.state = self.state.merged(self._parked)
            self._parked.clear()

    def _full_state(self) -> PopulationState:
        """Every member's current weights, without disturbing a fit in progress."""
        return self.state.merged(self._parked, with_optimizer=False) if self._parked else self.state

    def _metric_directions(self) -> dict[str, str]:
        """The metric objects' directions by logged name ('up' for ``R2Score(name='r2')``,
        Keras's ``_direction``), for the early-stopping rules' mode 'auto'."""
        return {name: fn._direction for name, fn in self.metrics.items()
                if getattr(fn, "_direction", None)}

    def _resolve_metrics(self, y: torch.Tensor) -> dict[str, Any]:
        return {getattr(name, "__name__", name):
                metrics_module.resolve(name, tuple(y.shape), (1, *self.plan.output_shape),
                                       "Population: 'metrics'")
                for name in self.metric_names}

    # -- inference ----------------------------------------------------------------
    def _evaluate(self, state, data, batch_size, observers=()):
        return evaluate_members(self, state, data, batch_size, observers)

    def evaluate(self, x, y, batch_size: int = 1024, sample_weight=None,
                 observers: Sequence[Any] = ()) -> list[dict[str, float]]:
        """Each member's loss (penalties included, as Keras) and metrics, in inference mode.
        Observers may define ``on_test_batch_begin(step)`` and ``on_test_batch_end(step,
        logs_by_member)`` (each member's logs over the batches so far).

        Safe to call while ``fit`` runs (from an observer): it reads, never changes, training.
        """
        batch_size = data_module.check_count("evaluate", "batch_size", batch_size)
        if y is None:
            raise ConfigError("evaluate: 'y' is needed (the targets the loss and metrics "
                              "compare the outputs with). Got None.")
        observers = _observer_list("evaluate", observers)
        data = data_module.prepare(self, x, y, sample_weight, "evaluate")
        metrics, self.metrics = self.metrics, self._resolve_metrics(
            data.y[0] if data.per_member else data.y)
        try:
            by_member = self._evaluate(self._full_state(), data, batch_size, observers)
        finally:
            self.metrics = metrics or self.metrics
        return [by_member[m] for m in sorted(by_member)]

    def predict(self, x, batch_size: int = 1024, observers: Sequence[Any] = ()) -> np.ndarray:
        """``(P, N, ...)`` outputs in inference mode (no dropout, moving statistics).
        Observers may define ``on_predict_batch_begin(step)`` and
        ``on_predict_batch_end(step, outputs)`` (the batch's ``(P, b, ...)`` outputs)."""
        batch_size = data_module.check_count("predict", "batch_size", batch_size)
        observers = _observer_list("predict", observers)
        data = data_module.prepare(self, x, None, None, "predict")
        state = self._full_state()
        begin = observer_hooks(observers, "on_predict_batch_begin")
        end = observer_hooks(observers, "on_predict_batch_end")
        outputs = []
        with torch.no_grad():
            for step, lo in enumerate(range(0, data.x.shape[0], batch_size)):
                for hook in begin:
                    hook(step)
                outputs.append(forward(state, data.x[lo:lo + batch_size], False)[0])
                for hook in end:
                    hook(step, outputs[-1])
        return torch.cat(outputs, dim=1).cpu().numpy()

    def call_in_training_mode(self, x, purpose: str,
                              activity_by_layer: dict[int, torch.Tensor] | None = None
                              ) -> torch.Tensor:
        """``(P, N, ...)`` outputs of one batch in training mode outside ``fit`` (Keras's
        ``model(x, training=True)``): dropout and noise on, drawn from the streams that
        ``purpose`` names (give each call its own), BatchNormalization's batch statistics,
        its moving statistics updated as Keras's training call updates them. Augmentation
        layers are refused: they draw from ``fit``'s own streams. The outputs never share
        memory with ``x``; ``activity_by_layer`` receives the activity penalties."""
        from reglab.engine.epoch import SeedLayout

        augmenting = [lp.layer.name or type(lp.layer).__name__ for lp in self.plan.layers
                      if lp.layer.is_augmentation
                      or getattr(lp.layer, "is_batch_transform", False)]
        if augmenting:
            raise ConfigError(f"call: a model with augmentation layers ({', '.join(augmenting)}) "
                              "is called in training mode by fit only; call it with "
                              "training=False, or train it.")
        data = data_module.prepare(self, x, None, None, "call")
        self._restore_all()
        layout = SeedLayout(self, noise=f"{purpose}/noise")
        with torch.no_grad():
            out = forward(self.state, data.x, True, layout.random_for,
                          activity_by_layer=activity_by_layer)[0]
        if out.untyped_storage().data_ptr() == data.x.untyped_storage().data_ptr():
            out = out.clone()  # layers that pass their input on: a view of the caller's data
        return out

    def activity_penalties(self, x) -> dict[int, torch.Tensor]:
        """Each activity-regularized layer's penalty ``(P,)`` on the batch ``x`` in inference
        mode, by the layer's position (Keras's ``layer.losses`` after a call)."""
        data = data_module.prepare(self, x, None, None, "activity_penalties")
        found: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            forward(self._full_state(), data.x, False, activity_by_layer=found)
        return found

    def member_scalar(self, member_id: int, family: str) -> Any:
        """One member's value of a scalar family (``steps``, the loss scale...), whether it
        trains or is parked; None when it has none."""
        members = self.state.members
        if member_id in members.member_ids and family in members.scalars:
            return members.scalar(family, member_id)
        row = self._parked.get(member_id)
        return None if row is None else row["scalars"].get(family)

    def member_training_state(self, member_id: int) -> tree.Row:
        """Copies of one member's training state beyond its weights, whether it trains or
        is parked: ``{"tensors": {family: {key: tensor}}, "scalars": {name: value}}`` with
        the optimizer's slots, the moving averages (``ema``, ``swa``) and the numeric
        per-member scalars (steps taken, epochs trained, the loss scale and its counter, the
        averages' count). Not the early-stopping state, which belongs to a fit."""
        self._check_member("member_training_state", member_id)
        row = self._parked.get(member_id)
        if row is None:
            row = tree.take_row(self.state.members, member_id)
        tensors = {family: {key: t.detach().clone() for key, t in keyed.items()}
                   for family, keyed in row["tensors"].items() if family not in _NOT_TRAINING}
        scalars = {name: value for name, value in row["scalars"].items()
                   if name not in _NOT_TRAINING and isinstance(value, (int, float))}
        return {"tensors": tensors, "scalars": scalars}

    def set_member_training_state(self, member_id: int, row: tree.Row) -> None:
        """Puts back what :meth:`member_training_state` gave (all of it or a part): each
        tensor into the member's row of a family and key it already has, with its shape;
        each scalar over one it has. Everything is checked before anything changes."""
        self._check_member("set_member_training_state", member_id)
        parked = self._parked.get(member_id)
        have = parked if parked is not None else tree.take_row(self.state.members, member_id)
        for family, keyed in row["tensors"].items():
            if family in _NOT_TRAINING or family not in have["tensors"]:
                raise ConfigError(f"Population.set_member_training_state: member {member_id} "
                                  f"has no state {family!r}. Expected one of "
                                  f"{sorted(set(have['tensors']) - _NOT_TRAINING)}.")
            for key, value in keyed.items():
                own = have["tensors"][family].get(key)
                if own is None or tuple(value.shape) != tuple(own.shape):
                    raise ConfigError(
                        f"Population.set_member_training_state: {family!r} of weight {key!r}: "
                        f"expected shape {None if own is None else tuple(own.shape)}. Got "
                        f"{tuple(value.shape)}.")
        for name, value in row["scalars"].items():
            if name in _NOT_TRAINING or name not in have["scalars"]:
                raise ConfigError(f"Population.set_member_training_state: member {member_id} "
                                  f"has no counter {name!r}.")
            whole = isinstance(have["scalars"][name], int)  # a count, else a value
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
                raise ConfigError(f"Population.set_member_training_state: {name!r} must be "
                                  f"{'an int' if whole else 'a number'}. Got {value!r}.")
        with torch.no_grad():
            for family, keyed in row["tensors"].items():
                for key, value in keyed.items():
                    if parked is not None:
                        own = parked["tensors"][family][key]
                        own.copy_(torch.as_tensor(value, dtype=own.dtype))
                    else:
                        own = self.state.members.tensors[family][key]
                        own[self.state.members.position(member_id)] = torch.as_tensor(
                            value, dtype=own.dtype, device=own.device)
        for name, value in row["scalars"].items():
            if parked is not None:
                parked["scalars"][name] = value
            else:  # in place: the optimizer and the loss scale read these lists
                self.state.members.scalars[name][self.state.members.position(member_id)] = value

    def member_weights(self, member_id: int) -> dict[tuple[int, str], torch.Tensor]:
        """One member's current weights, keyed by (layer index, weight name), Keras layout."""
        self._check_member("member_weights", member_id)
        if member_id in self._discarded:
            raise ConfigError(f"Population.member_weights: member {member_id} was discarded "
                              "(discard_members): its weights are gone.")
        if member_id in self._parked:
            return {k: t.clone() for k, t in self._parked[member_id]["tensors"]["weights"].items()}
        return self.state.member_weights(member_id)

    # -- the public surface (what the Keras facade, callbacks and studies use) -----------
    @property
    def layer_names(self) -> list[str]:
        """The layers' names, as Keras names them (``dense``, ``dense_1``...)."""
        return [lp.canonical_name for lp in self.plan.layers]

    @property
    def member_ids(self) -> list[int]:
        """Every member's id (its index in the members given, then in ``add_members``)."""
        return list(range(self.size))

    def weight_keys(self) -> list[tuple[int, str]]:
        """Each weight's key ``(layer index, weight name)``, in Keras's ``get_weights`` order."""
        return [wp.key for wp in self.plan.weights]

    def describe_layers(self) -> list[dict[str, Any]]:
        """Per layer: its name, the layer object (member 0's), output shape and weights
        (``(name, shape, trainable)``), for summaries."""
        return [{"name": lp.canonical_name, "layer": lp.layer, "output_shape": lp.output_shape,
                 "weights": [(wp.spec.name, wp.spec.shape, wp.spec.trainable)
                             for wp in self.plan.weights if wp.layer_index == index]}
                for index, lp in enumerate(self.plan.layers)]

    def _check_member(self, where: str, member_id) -> int:
        if isinstance(member_id, bool) or not isinstance(member_id, int) \
                or not 0 <= member_id < self.size:
            raise ConfigError(f"Population.{where}: 'member_id' must be an int in "
                              f"[0, {self.size - 1}]. Got {member_id!r}.")
        return member_id

    def set_member_weights(self, member_id: int, weights: dict[tuple[int, str], Any]) -> None:
        """Sets some or all of one member's weights, keyed as :meth:`weight_keys`, in Keras's
        layouts; shapes are checked before anything changes."""
        self._check_member("set_member_weights", member_id)
        if member_id in self._discarded:
            raise ConfigError(f"Population.set_member_weights: member {member_id} was "
                              "discarded (discard_members).")
        known = set(self.weight_keys())
        for key in weights:
            if key not in known:
                raise ConfigError(f"Population.set_member_weights: unknown weight {key!r}. "
                                  f"Expected keys from weight_keys(): {sorted(known)}.")
        if member_id in self._parked:
            row = self._parked[member_id]["tensors"]["weights"]
            for key, value in weights.items():
                value = torch.as_tensor(np.asarray(value), dtype=row[key].dtype)
                if tuple(value.shape) != tuple(row[key].shape):
                    raise ValueError(f"set_weights: {self.layer_names[key[0]]}.{key[1]} expects "
                                     f"shape {tuple(row[key].shape)}. Got {tuple(value.shape)}.")
            for key, value in weights.items():
                row[key] = torch.as_tensor(np.asarray(value), dtype=row[key].dtype).clone()
            return
        self.state.set_member_weights(member_id, {
            key: torch.as_tensor(np.asarray(value)) for key, value in weights.items()})

    def hyperparameter_names(self) -> list[str]:
        """The names :meth:`set_hyperparameter` takes: the optimizer's (``learning_rate``...),
        layers' values (``dropout.rate``), regularizers' values (``dense.kernel.l2``)."""
        return hyperparameters.names(self.state)

    def hyperparameter(self, member_id: int, name: str) -> float:
        """One member's current value of hyperparameter ``name``."""
        return hyperparameters.get(self.state, self._check_member("hyperparameter", member_id),
                                   name)

    def set_hyperparameter(self, member_id: int, name: str, value: float) -> None:
        """Sets one member's hyperparameter (a learning rate, a rate, a strength), checked as
        the object that owns it checks it; it takes effect at the next step. Names as
        :meth:`hyperparameter_names`."""
        hyperparameters.set_value(self.state, self._check_member("set_hyperparameter",
                                                                 member_id), name, value)
        self.state.refresh_values()

    def add_members(self, members: Sequence[Member]) -> list[int]:
        """Adds members of the same structure; returns their ids. Between ``fit`` calls, or
        from an observer's ``on_epoch_end``, after which they train for the remaining epochs
        of that call (their random streams start at their own epoch 0)."""
        members = _member_list(members, "Population.add_members")
        if not members:
            return []
        first = self.size
        new_plan = extended(self.plan, self._members + members)  # StructureError on a mismatch
        self._members += members
        self.plan = new_plan
        new_ids = list(range(first, first + len(members)))
        state = self.state
        state.adopt(new_plan, new_ids)
        for m in new_ids:
            self.results.append(MemberResult(m, new_plan.names[m], new_plan.seeds[m]))
            rule = new_plan.early_stopping[m]
            if self._epoch is not None:  # during fit: it joins at the next epoch
                self._joined[m] = self._epoch + 1
                if rule is not None:
                    state.members.scalars["early_stopping"][state.position(m)] = \
                        EarlyStoppingState.start(rule, compiled=self._metric_directions())
        return new_ids

    def remove_members(self, member_ids: Sequence[int]) -> None:
        """Stops members for good: during ``fit`` at the end of the current epoch (their
        weights are kept and reported, status ``'removed'``), and in every later ``fit``."""
        member_ids = [self._check_member("remove_members", m)
                      for m in _id_list("remove_members", member_ids)]
        self._removed.update(member_ids)

    def discard_members(self, member_ids: Sequence[int]) -> None:
        """Frees, for good, the state of members whose training is over (stopped early,
        stopped by an observer, diverged or removed, now or in an earlier call): their
        weights, optimizer state and averages are dropped (their results keep their
        history), and no later call reads or trains them. For loops that keep adding members
        to one population (a tuning's trials), whose ended members would otherwise be kept
        to the end of ``fit``. Call it from an observer's ``on_epoch_complete`` or between
        calls."""
        member_ids = [self._check_member("discard_members", m)
                      for m in _id_list("discard_members", member_ids)]
        for member_id in member_ids:
            if member_id not in self._parked and member_id not in self._discarded and \
                    member_id in self.state.member_ids and self._epoch is not None:
                raise ConfigError(f"Population.discard_members: member {member_id} is still "
                                  "training. Expected members whose training is over.")
        for member_id in member_ids:
            self._parked.pop(member_id, None)
            self._discarded.add(member_id)
            self.results[member_id].weights = None
        present = [p for p, m in enumerate(self.state.member_ids) if m not in self._discarded]
        if len(present) != self.state.size:  # between calls: drop their rows too
            self.state.keep(present)

    def copy_member(self, source_id: int, target_id: int) -> None:
        """Population-based training's exploit step: member ``target_id`` takes member
        ``source_id``'s training state (weights, optimizer slots and step count, early-stopping
        snapshot, weight averages) and keeps its own seed, random streams, epochs trained,
        early-stopping counters and hyperparameters (set those with
        :meth:`set_hyperparameter`). Both must be training: call it between the epochs of a
        ``fit`` (from an observer's ``on_epoch_end``) or between calls."""
        for member_id in (source_id, target_id):
            self._check_member("copy_member", member_id)
            if member_id in self._parked or member_id in self._removed or \
                    member_id in self._diverged or member_id in self._discarded or \
                    member_id not in self.state.member_ids:
                raise ConfigError(f"Population.copy_member: member {member_id} is not training "
                                  f"(stopped, diverged or removed). Members training: "
                                  f"{self.state.member_ids}.")
        if source_id == target_id:
            return
        copy_member(self.state.members, self.state.position(source_id),
                    self.state.position(target_id), keep=("epochs", "early_stopping"))
        self.state.refresh_values()

    def finalize_averages(self, x, batch_size: int = 32) -> None:
        """Gives every member that averages its weights its average, as ``fit`` does when it
        ends: SWA's (BatchNormalization statistics recomputed over ``x``), else the EMA's.
        Diverged and removed members keep their weights."""
        batch_size = data_module.check_count("finalize_averages", "batch_size", batch_size)
        self._restore_all()
        data = data_module.prepare(self, x, None, None, "finalize_averages")
        state = self.state
        positions = [state.position(m) for m in state.member_ids
                     if m not in self._diverged and m not in self._removed]
        averaged = []
        if averaging.averages(state):
            averaged = [p for p in positions if state.members.scalars["swa_count"][p] > 0]
            averaging.finalize(self, averaged, data, batch_size)
        if state.optimizer.use_ema:
            copy_rows(state.members, "ema", "weights", [p for p in positions if p not in averaged])

    def reset_divergence(self) -> None:
        """Lets members that diverged train again in the next ``fit`` (from the weights they
        had before the non-finite step), as a Keras model does."""
        self._diverged.clear()



#: what a Population.checkpoint() holds that fit's ``resume`` reads
_CHECKPOINT_KEYS = frozenset({"format", "epoch", "names", "seeds", "members",
                              "optimizer_values", "parked", "results", "diverged", "removed",
                              "joined"})


def _member_list(members, where: str = "Population") -> list:
    """``members`` as a list: a sequence of them (one Member alone is a mistake worth naming)."""
    if isinstance(members, Member):
        raise ConfigError(f"{where}: 'members' must be a list of Member. Got one Member: "
                          "pass [member].")
    if members is None or isinstance(members, (str, bytes)) or not hasattr(members, "__iter__"):
        raise ConfigError(f"{where}: 'members' must be a list of Member. Got {members!r}.")
    return list(members)


def _id_list(where: str, member_ids) -> list:
    if isinstance(member_ids, (str, bytes)) or not hasattr(member_ids, "__iter__"):
        raise ConfigError(f"Population.{where}: 'member_ids' must be a list of member ids. "
                          f"Got {member_ids!r}" + (f": pass [{member_ids!r}]." if isinstance(
                              member_ids, int) else "."))
    return list(member_ids)


def _observer_list(where: str, observers) -> list:
    if observers is None:
        return []
    if isinstance(observers, (str, bytes)) or not hasattr(observers, "__iter__"):
        raise ConfigError(f"{where}: 'observers' must be a list of observers. Got "
                          f"{type(observers).__name__}: pass [observer].")
    return list(observers)


def _device(device) -> torch.device:
    """'cpu' or 'cuda' (with an index or not) as a torch.device; a ConfigError otherwise."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"Population: 'device' must be 'cpu' or 'cuda'. Got {device!r} "
                          f"({error}).") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"Population: 'device' must be 'cpu' or 'cuda'. Got {device!r}.")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("Population: 'device' is 'cuda' but torch sees no CUDA device. "
                          "Use device='cpu'.")
    return parsed


def _call(observer, hook, *args):
    method = getattr(observer, hook, None)
    if method is not None:
        method(*args)


def check_validation_freq(value, where: str) -> None:
    """Keras's ``validation_freq``: an int >= 1 (every that many epochs) or a list of epoch
    numbers (1-based); a ConfigError naming ``where`` otherwise."""
    def positive(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1
    if not (positive(value) or (isinstance(value, list) and value
                                and all(positive(v) for v in value))):
        raise ConfigError(f"{where}: 'validation_freq' must be an int >= 1 (validate every "
                          f"that many epochs) or a list of epoch numbers from 1. Got "
                          f"{value!r}.")


def validates(epoch: int, validation_freq: int | list[int]) -> bool:
    """Keras's ``validation_freq``: validate after epoch ``epoch`` (0-based) when its number
    (1-based) is a multiple of an int, or is in a list."""
    if isinstance(validation_freq, int):
        return (epoch + 1) % validation_freq == 0
    return epoch + 1 in validation_freq
