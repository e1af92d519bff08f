"""Reading and setting one member's hyperparameter by name, checked as its owner checks it.

Names: an optimizer's hyperparameter (``learning_rate``, ``beta_2``, ``swa_start``...), a
layer's value as ``layer.value`` (``dropout.rate``), a regularizer's value as
``layer.weight.value`` (``dense.kernel.l2``). A new value is checked by building the object
that owns it with that value (so ``Dropout``'s rule rejects ``rate = 1.7`` as its
constructor would) before anything changes.
"""

from __future__ import annotations

import math

import numpy as np

from reglab.errors import ConfigError, did_you_mean


def names(state) -> list[str]:
    plan = state.plan
    found = list(state.optimizer_values[0])
    for lp in plan.layers:
        if lp.weights_of is None:  # a shared layer's later calls share its values
            found += [f"{lp.canonical_name}.{value}" for value in lp.values]
    for wp in plan.weights:
        layer = plan.layers[wp.layer_index].canonical_name
        values = sorted({v for vals in wp.regularizer_values for v in vals})
        found += [f"{layer}.{wp.spec.name}.{value}" for value in values]
    return found


def _where(state, name: str, member_id: int):
    """``(kind, holder, key, owner)``: where member ``member_id``'s ``name`` lives."""
    plan = state.plan
    if name in state.optimizer_values[member_id]:
        return "optimizer", state.optimizer_values[member_id], name, plan.optimizers[member_id]
    parts = name.split(".")
    by_name = {lp.canonical_name: (i, lp) for i, lp in enumerate(plan.layers)
               if lp.weights_of is None}
    if parts[0] in by_name:
        index, lp = by_name[parts[0]]
        if len(parts) == 2 and parts[1] in lp.values:
            return "layer", lp.values[parts[1]], member_id, lp.layers[member_id]
        if len(parts) == 3:
            for wp in plan.weights:
                if wp.key == (index, parts[1]) and parts[2] in wp.regularizer_values[member_id]:
                    return "regularizer", wp.regularizer_values[member_id], parts[2], None
    known = names(state)
    raise ConfigError(f"Population.set_hyperparameter: unknown hyperparameter {name!r} for "
                      f"member {member_id}.{did_you_mean(name, known)} "
                      f"Expected one of: {', '.join(known)}.")


def get(state, member_id: int, name: str) -> float:
    _, holder, key, _ = _where(state, name, member_id)
    return float(holder[key])


def _check(kind: str, owner, name: str, argument: str, value: float) -> None:
    where = f"Population.set_hyperparameter: {name!r}"
    try:
        if kind == "optimizer":
            if argument == "swa_start":
                value = None if math.isinf(value) else value
                if value is not None and float(value).is_integer():
                    value = int(value)
            # a LossScaleOptimizer's hyperparameters are its inner optimizer's
            type(getattr(owner, "inner_optimizer", owner))(**{argument: value})
        elif kind == "layer":
            type(owner).from_config({**owner.get_config(), argument: value})
        elif not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"a regularizer's strength must be a non-negative float. "
                              f"Got {value!r}.")
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def set_value(state, member_id: int, name: str, value) -> None:
    """Sets member ``member_id``'s ``name`` to ``value`` (checked first); the caller
    refreshes the population's values."""
    kind, holder, key, owner = _where(state, name, member_id)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or math.isnan(value) or (math.isinf(value) and name != "swa_start"):
        raise ConfigError(f"Population.set_hyperparameter: {name!r} must be a finite number. "
                          f"Got {value!r}.")
    argument = name.split(".")[-1]
    if kind == "optimizer" and argument == "learning_rate" and owner.schedule is not None:
        raise ConfigError(f"Population.set_hyperparameter: member {member_id}'s learning rate "
                          f"follows its schedule ({owner.schedule!r}): it cannot be set.")
    _check(kind, owner, name, argument, float(value))
    holder[key] = float(value)
