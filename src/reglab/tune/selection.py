"""Which trial is confirmed: the best on validation, or by the one-standard-error rule.

The 1-SE rule (Breiman et al. 1984; Hastie, Tibshirani & Friedman, *The Elements of
Statistical Learning*, 7.10): among the completed trials of the best trial's variant, take
the one with the strongest regularization (the largest value of ``[tune] one_se``) whose
objective is within one standard error of the best. The standard error is the best trial's
over its seeds (``[tune] seeds`` >= 2), else, for an accuracy, the binomial one of the
validation split, ``sqrt(p (1 - p) / n)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from reglab.tune import space


@dataclass(frozen=True)
class Chosen:
    number: int
    variant: str
    point: tuple
    value: float
    rule: str  # 'best', or 'one_se' with the SE used
    best_number: int
    standard_error: float | None = None
    #: why the 1-SE rule, asked for, did not apply ('' otherwise)
    note: str = ""

    @property
    def label(self) -> str:
        from reglab.study.sweeps import format_value

        point = ", ".join(f"{p}={format_value(v)}" for p, v in self.point)
        return f"{self.variant}{f' ({point})' if point else ''}"

    def as_dict(self) -> dict:
        return {"number": self.number, "variant": self.variant,
                "point": [[p, v] for p, v in self.point], "value": self.value,
                "rule": self.rule, "best_number": self.best_number,
                "standard_error": self.standard_error, "note": self.note}


def standard_error(trial, validation_samples: int | None, objective: str = "val_accuracy"
                   ) -> float | None:
    values = trial.user_attrs.get("seed_values") or []
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) >= 2:
        mean = sum(values) / len(values)
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return math.sqrt(variance / len(values))
    p = trial.value
    proportion = objective.removeprefix("val_").endswith(("accuracy", "acc"))
    if proportion and validation_samples and 0.0 <= p <= 1.0:
        return math.sqrt(p * (1.0 - p) / validation_samples)
    return None  # one seed of a loss: no standard error to go by


def select(spec, study) -> Chosen | None:
    """The trial to confirm; None when no trial completed."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False,
                                            states=(optuna.trial.TrialState.COMPLETE,))]
    if not complete:
        return None
    sign = 1.0 if spec.tune.direction == "maximize" else -1.0
    best = max(complete, key=lambda t: (sign * t.value, -t.number))
    variant, point = space.from_params(spec, best.params)
    chosen = Chosen(best.number, variant, point, best.value, "best", best.number)
    if spec.tune.select != "one_se":
        return chosen
    se = standard_error(best, study.user_attrs.get("validation_samples"), spec.tune.objective)
    strength = spec.tune.one_se
    name = space.param_name(variant, strength)
    if se is None or name not in best.params:  # the rule cannot apply: the best is confirmed
        why = (f"the best trial's variant, {variant}, does not search {strength}"
               if name not in best.params else
               "no standard error: one seed per trial of an objective that is not an accuracy")
        return dataclasses.replace(chosen, note=f"the 1-SE rule did not apply ({why})")
    within = [t for t in complete if name in t.params and sign * (best.value - t.value) <= se
              and t.params.get(space.VARIANT_PARAM, variant) == variant]
    pick = max(within, key=lambda t: (t.params[name], sign * t.value))
    variant, point = space.from_params(spec, pick.params)
    return Chosen(pick.number, variant, point, pick.value, "one_se", best.number, se)
