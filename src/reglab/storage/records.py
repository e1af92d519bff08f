"""What a study stores about each run: plain, immutable records (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from reglab.errors import ConfigError

QUEUED = "queued"
RUNNING = "running"
#: ``pruned``: a tuning trial's run that the pruner stopped (its epochs so far are kept)
FINISHED = ("done", "stopped_early", "diverged", "failed", "pruned")
STATUSES = (QUEUED, RUNNING, *FINISHED)


@dataclass(frozen=True)
class RunRecord:
    """One training run of a study: its identity, its settings and (once finished) its outcome.

    Args:
        run_id: Unique within the study, e.g. ``"l2_path[kernel_regularizer.l2=1e-05]/seed=3"``.
        variant: The variant's name.
        point: Sweep path -> value for this run.
        seed: The run's seed.
        population: Key of the population (runs sharing one structure) that trains it.
        hyperparameters: The run's resolved changes (JSON-able).
        status: One of ``queued, running, done, stopped_early, diverged, failed,
            pruned``.
        best_epoch: The epoch whose weights and metrics were kept.
        stopped_epoch: The epoch at which early stopping ended training.
        epochs_run: How many epochs were trained.
        metrics: Final metrics at the kept epoch.
        wall_time: Seconds spent training the run.
        error: Why the run failed, if it did.
        regime: The run's data regime: the swept [data] keys and their values, e.g.
            ``{"train_size": 1000, "label_noise": 0.3}`` (``{}`` without data regimes).

    Example:
        >>> r = RunRecord("base/seed=0", "base", {}, 0, "p0", {})
        >>> r.status, r.finished
        ('queued', False)
    """

    run_id: str
    variant: str
    point: dict
    seed: int
    population: str
    hyperparameters: dict
    status: str = QUEUED
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    epochs_run: int = 0
    metrics: dict = field(default_factory=dict)
    wall_time: float | None = None
    error: str | None = None
    regime: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.run_id, str) or not self.run_id:
            raise ConfigError(f"RunRecord: 'run_id' must be a non-empty str. Got {self.run_id!r}.")
        if self.status not in STATUSES:
            raise ConfigError(
                f"RunRecord {self.run_id!r}: 'status' must be one of {', '.join(STATUSES)}. "
                f"Got {self.status!r}."
            )

    @property
    def finished(self) -> bool:
        """Whether the run reached a final status (and so may no longer change)."""
        return self.status in FINISHED
