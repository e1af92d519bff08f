"""Keras 3's weight regularizers, plus a proximal L1 that yields exact zeros."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from reglab.errors import ConfigError, unknown_name
from reglab.native import penalty as native_penalty
from reglab.regularizers.penalty import (
    add_penalty_gradient_,
    along_members,
    soft_threshold,
    weight_penalty,
)
from reglab.utils.tensors import as_tensor


def check_strength(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{owner}: '{name}' must be a non-negative float. Got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{owner}: '{name}' must be a non-negative float. Got {value!r}.")
    return value


class Regularizer:
    """Base class: a callable ``w -> penalty`` with a config, as in Keras.

    Subclass it and override ``__call__`` for a custom penalty; the population engine
    then evaluates it member by member, with autograd.

    To run vectorized over a population, a regularizer also declares (the built-in ones
    are examples):

    - :meth:`family`: a key shared by the regularizers computed together. Members whose
      regularizers share one family have their :meth:`values` stacked, and the engine
      calls :meth:`penalty` once on the stacked weights ``(P, ...)``, with each value a
      ``(P,)`` tensor (or ``0.0`` when zero for every member).
    - :attr:`contributes`: ``'value'`` (the penalty is added to the loss; autograd gives
      its gradient unless ``'gradient'`` is declared too), ``'gradient'`` (the engine adds
      it to the weight's gradient with :meth:`add_gradient`, skipping autograd), ``'proximal'``
      (after each optimizer step the engine applies :meth:`proximal` with the optimizer's
      per-weight step size).
    - :meth:`decay` (optional, with ``'gradient'``): the coefficient ``c`` of a linear part
      ``c * w`` of the gradient (L2's ``2 * l2``). An optimizer whose fused kernel adds
      ``c * w`` to the gradient itself (torch's coupled ``weight_decay``) then takes it,
      and the engine calls ``add_gradient(..., include_decay=False)`` for the rest: one
      pass over the weights less per step.
    - :meth:`sign_coefficient` (optional, with ``'gradient'``): likewise the coefficient ``s``
      of a part ``s * sign(w)`` (L1's ``l1``), added first, which reglab's native Adam step
      adds itself; the engine then calls ``add_gradient(..., include_sign=False)``.
    - :attr:`vanishes_at_zero`: True when the penalty, its gradient and its proximal step
      leave a member untouched (exactly: zero, ``grad + 0``, ``w``) wherever its values are
      all zero, for finite weights. The engine may then compute the family on every row at
      once, members of other families or without one included (their values are stacked
      as zeros); otherwise, and always for a family without values, only on the rows of
      its own members. A subclass that changes the math must also return its own
      :meth:`family` key: a family is computed with its first member's methods.
    - :meth:`skips_zero_rows` (optional, with :attr:`vanishes_at_zero`): True when, for
      these stacked weights, :meth:`penalty` and :meth:`add_gradient` do not even read the
      rows whose values are all zero; the engine then calls them once on every row of a
      large tensor rather than once per run of its own members.
    """

    #: what the regularizer contributes to training (see the class docstring)
    contributes: frozenset[str] = frozenset({"value"})
    #: whether zero values leave a member untouched (see the class docstring)
    vanishes_at_zero: bool = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return as_tensor(x).new_zeros(())

    # -- population protocol ------------------------------------------------------------
    def family(self) -> Any:
        """Regularizers of one family are computed for all members at once; None (the
        default for a subclass that only overrides ``__call__``) means member by member."""
        return None

    def values(self) -> dict[str, float]:
        """The numbers that may differ between members of one family (its strengths)."""
        return {}

    def penalty(self, w: torch.Tensor, values: dict) -> torch.Tensor:
        """The penalty of each member: ``w`` is ``(P, ...)``; returns ``(P,)``."""
        raise NotImplementedError(f"{type(self).__name__} declares a family but no penalty().")

    def add_gradient(self, grad: torch.Tensor, w: torch.Tensor, values: dict) -> None:
        """Adds the penalty's gradient with respect to ``w`` to ``grad``, in place (for
        ``'gradient'``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'gradient' but no add_gradient().")

    def decay(self, values: dict) -> torch.Tensor | float | None:
        """The per-member coefficient ``c`` (``(P,)``, or ``0.0``) of the linear part
        ``c * w`` of :meth:`add_gradient`, or None when it has none (the default)."""
        return None

    def sign_coefficient(self, values: dict) -> torch.Tensor | float | None:
        """The per-member coefficient ``s`` (``(P,)``, or ``0.0``) of the part ``s * sign(w)``
        of :meth:`add_gradient`, added before the linear part, or None when it has none."""
        return None

    def skips_zero_rows(self, w: torch.Tensor) -> bool:
        """Whether the math leaves the rows of ``w`` whose values are all zero unread (see
        the class docstring); False by default."""
        return False

    def proximal(self, w: torch.Tensor, step_size, values: dict) -> torch.Tensor:
        """``w`` after the proximal step of the penalty scaled by ``step_size`` (for
        ``'proximal'``); ``step_size`` broadcasts to ``w``."""
        raise NotImplementedError(f"{type(self).__name__} declares 'proximal' but no proximal().")

    # -- config ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not define get_config().")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Regularizer:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


class _WeightPenalty(Regularizer):
    """The L1/L2 family: ``l1 * sum(|w|) + l2 * sum(w**2)``, with its gradient written out
    (two passes over the weights instead of an autograd graph)."""

    contributes = frozenset({"value", "gradient"})

    @property
    def vanishes_at_zero(self) -> bool:
        # Only the built-in math is known to vanish; a subclass that rewrites it is not.
        return _keeps_math(type(self), _WeightPenalty) or _keeps_math(type(self), ProximalL1)

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = check_strength(type(self).__name__, "l1", l1)
        self.l2 = check_strength(type(self).__name__, "l2", l2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The penalty of weights ``x`` (a tensor, or an array as Keras takes one)."""
        return weight_penalty(as_tensor(x), self.l1, self.l2)

    def family(self):
        # A subclass that rewrites the math is a family of its own (see Regularizer).
        return "l1_l2" if _keeps_math(type(self), _WeightPenalty) else ("l1_l2", type(self))

    def values(self):
        return {"l1": self.l1, "l2": self.l2}

    def penalty(self, w, values):
        return weight_penalty(w, values["l1"], values["l2"], member_axis=0)

    def add_gradient(self, grad, w, values, include_decay=True, include_sign=True):
        add_penalty_gradient_(grad, w, values["l1"] if include_sign else 0.0,
                              values["l2"] if include_decay else 0.0)

    def skips_zero_rows(self, w):
        # The native kernels (float32 on a CPU) skip a row whose strengths are zero; the
        # proximal step (ProximalL1) is torch's, on every row it is given.
        return ("proximal" not in self.contributes and self.vanishes_at_zero
                and native_penalty.takes(w))

    def decay(self, values):
        """``2 * l2``: the gradient of ``l2 * sum(w**2)`` is ``2 * l2 * w``."""
        return values["l2"] * 2.0

    def sign_coefficient(self, values):
        """``l1``: the gradient of ``l1 * sum(|w|)`` is ``l1 * sign(w)``."""
        return values["l1"]


class L1L2(_WeightPenalty):
    """``l1 * sum(|w|) + l2 * sum(w**2)``.

    Example:
        >>> float(L1L2(l1=0.5, l2=0.25)(torch.tensor([1.0, -2.0])))
        2.75
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        # None: no such term, as Keras 3 (whose L1L2 defaults differ from l1_l2's too)
        super().__init__(l1=0.0 if l1 is None else l1, l2=0.0 if l2 is None else l2)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


class L1(_WeightPenalty):
    """``l1 * sum(|w|)``; Keras's default strength is 0.01.

    Example:
        >>> float(L1(0.1)(torch.tensor([1.0, -2.0])))
        0.30000001192092896
    """

    def __init__(self, l1: float = 0.01):
        super().__init__(l1=0.01 if l1 is None else l1)  # None: the default, as Keras 3

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(_WeightPenalty):
    """``l2 * sum(w**2)`` (no one-half, as in Keras); Keras's default is 0.01.

    Example:
        >>> float(L2(0.1)(torch.tensor([1.0, -2.0])))
        0.5
    """

    def __init__(self, l2: float = 0.01):
        super().__init__(l2=0.01 if l2 is None else l2)  # None: the default, as Keras 3

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


class ProximalL1(_WeightPenalty):
    """L1 applied as a proximal step: beyond Keras, it gives exact zeros.

    The penalty ``l1 * sum(|w|)`` is the same as :class:`L1`'s and is reported the
    same way, but instead of adding its subgradient ``l1 * sign(w)`` to the
    gradient, each optimizer step is followed by the soft-threshold
    ``w <- sign(w) * max(|w| - eta * l1, 0)``, where ``eta`` is the optimizer's
    per-weight step size (the learning rate for SGD, the learning rate scaled by
    Adam's or RMSprop's denominator for those). Weights the data does not hold
    away from zero land exactly on zero. An ``l2`` part, if given, stays a
    gradient penalty.

    Example:
        >>> ProximalL1(0.001).get_config()
        {'l1': 0.001, 'l2': 0.0}
    """

    contributes = frozenset({"value", "gradient", "proximal"})

    def __init__(self, l1: float = 0.01, l2: float = 0.0):
        super().__init__(l1=l1, l2=l2)

    def family(self):
        return "proximal_l1" if _keeps_math(type(self), ProximalL1) \
            else ("proximal_l1", type(self))

    def add_gradient(self, grad, w, values, include_decay=True):
        add_penalty_gradient_(grad, w, 0.0, values["l2"] if include_decay else 0.0)

    def sign_coefficient(self, values):
        return None  # its L1 is a proximal step, not a gradient

    def proximal(self, w, step_size, values):
        return soft_threshold(w, step_size * along_members(values["l1"], w))

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


# Keras's lowercase aliases.
l1 = L1
l2 = L2
l1_l2 = L1L2
proximal_l1 = ProximalL1

#: the names ``get`` takes, as Keras's: not 'l1_l2' (Keras refuses that string, which would
#: otherwise give a regularizer of no strength; ``l1_l2(...)`` is the class)
_BY_NAME: dict[str, type[Regularizer]] = {
    "l1": L1,
    "l2": L2,
    "l1l2": L1L2,
    "proximal_l1": ProximalL1,
    "proximall1": ProximalL1,
}
_CLASS_NAMES = {"L1": L1, "L2": L2, "L1L2": L1L2, "ProximalL1": ProximalL1}


def registered() -> dict[str, type[Regularizer]]:
    """The regularizer classes that configs and saved files may name, by class name."""
    return dict(_CLASS_NAMES)


def register(cls: type[Regularizer], name: str) -> type[Regularizer]:
    """Makes ``cls`` known by its class name and by ``name`` (``get('name')``, configs,
    saved files); returns it."""
    if not (isinstance(cls, type) and issubclass(cls, Regularizer)):
        raise ConfigError(f"regularizers.register: expected a Regularizer subclass. Got {cls!r}.")
    _BY_NAME[name.lower()] = cls
    _CLASS_NAMES[cls.__name__] = cls
    return cls


def serialize(regularizer: Regularizer | None) -> dict[str, Any] | None:
    """``{'class_name': ..., 'config': ...}`` as Keras writes it, or None."""
    if regularizer is None:
        return None
    if _CLASS_NAMES.get(type(regularizer).__name__) is not type(regularizer):
        return regularizer  # not registered: kept as it is (it cannot be saved to a file)
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


def deserialize(config: dict[str, Any] | str) -> Regularizer:
    """The inverse of :func:`serialize`; also accepts a string identifier."""
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConfigError(
            "regularizers.deserialize: expected a dict with 'class_name' and 'config'. "
            f"Got {config!r}."
        )
    cls = _CLASS_NAMES.get(config["class_name"])
    if cls is None:
        raise unknown_name("regularizers.deserialize", "regularizer", config["class_name"],
                           _CLASS_NAMES)
    return cls.from_config(config.get("config", {}))


def get(identifier: Any, where: str = "regularizers.get") -> Regularizer | None:
    """Resolves None, a string (``'l2'``), a config dict or a callable, as Keras does."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower()) or _CLASS_NAMES.get(identifier)
        if cls is None:
            raise unknown_name(where, "regularizer", identifier, list(_BY_NAME) + list(_CLASS_NAMES))
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ConfigError(
        f"{where}: expected a regularizer, its name or its config. Got {identifier!r}."
    )


_MATH = ("penalty", "add_gradient", "proximal", "decay", "sign_coefficient", "__call__")


def _keeps_math(cls: type, base: type) -> bool:
    """Whether ``cls`` computes what ``base`` computes (no override of its math)."""
    return all(getattr(cls, name) is getattr(base, name) for name in _MATH)
