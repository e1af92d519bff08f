"""``keras.mixed_precision``: dtype policies, and the global one new layers take.

A policy names two dtypes: the one a layer computes in and the one its weights
are kept in. ``"mixed_bfloat16"`` computes in bfloat16 (GEMMs and convolutions
at about twice the float32 rate on CPUs with ``avx512_bf16``, and on GPUs) and
keeps weights, optimizer state and losses in float32, as Keras 3 does: the
engine casts a layer's input and weights to its compute dtype, batch
normalization computes in float32 and casts back (Keras's own exception), and
the loss and metrics see float32 predictions. As in Keras, a layer takes the
global policy when it is created, and ``dtype=`` on a layer overrides it.

``"mixed_float16"`` is the same with float16 compute (tensor cores on GPUs; it runs on
a CPU too, slowly, as in Keras). float16's range is narrow (largest 65504, smallest
normal 6e-5), so small gradients underflow and large ones overflow: as Keras 3 does,
``Model.compile`` then wraps the optimizer in a
:class:`~reglab.optimizers.LossScaleOptimizer` (dynamic loss scaling, one scale per
member of a population: :mod:`reglab.engine.loss_scale`) unless it is one already or
``auto_scale_loss=False``.

Example:
    >>> from reglab import mixed_precision
    >>> policy = mixed_precision.DTypePolicy("mixed_bfloat16")
    >>> policy.compute_dtype, policy.variable_dtype
    ('bfloat16', 'float32')
"""

from __future__ import annotations

import torch

from reglab.errors import ConfigError, did_you_mean
from reglab.optimizers.loss_scale import LossScaleOptimizer  # noqa: F401 (as Keras's)

#: policy name -> (compute dtype, variable dtype). Weights are float32 in every policy
#: reglab trains.
POLICIES = {"float32": ("float32", "float32"), "mixed_bfloat16": ("bfloat16", "float32"),
            "mixed_float16": ("float16", "float32")}
_PLANNED = {"float16": "reglab keeps weights in float32: use 'mixed_float16' (float16 "
            "compute, float32 weights)", "bfloat16": "reglab keeps weights in "
            "float32: use 'mixed_bfloat16' (bfloat16 compute, float32 weights)",
            "float64": "reglab's engine trains in float32"}
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                "float16": torch.float16}


class DTypePolicy:
    """A layer's dtypes: ``compute_dtype`` and ``variable_dtype`` (Keras's names)."""

    def __init__(self, name: str = "float32"):
        if isinstance(name, DTypePolicy):
            name = name.name
        if not isinstance(name, str):
            raise ConfigError(f"DTypePolicy: expected a policy name such as 'float32' or "
                              f"'mixed_bfloat16'. Got {name!r}.")
        if name not in POLICIES:
            if name in _PLANNED:
                raise ConfigError(f"DTypePolicy: {name!r} is not supported: {_PLANNED[name]}. "
                                  f"Expected one of: {', '.join(POLICIES)}.")
            raise ConfigError(f"DTypePolicy: unknown policy {name!r}."
                              f"{did_you_mean(str(name), list(POLICIES))} Expected one of: "
                              f"{', '.join(POLICIES)}.")
        self.name = name
        self.compute_dtype, self.variable_dtype = POLICIES[name]

    @property
    def torch_compute_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.compute_dtype]

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> DTypePolicy:
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f'<DTypePolicy "{self.name}">'


Policy = DTypePolicy  # Keras 3 keeps the old name as an alias

_global = DTypePolicy("float32")


def set_global_policy(policy) -> None:
    """The policy that layers created from now on take (``None`` resets to float32)."""
    global _global
    _global = get(policy if policy is not None else "float32",
                  where="mixed_precision.set_global_policy")


def global_policy() -> DTypePolicy:
    return _global


def get(value, where: str) -> DTypePolicy:
    """A policy from a name, a policy, a serialized policy, or None (the global one)."""
    if value is None:
        return _global
    if isinstance(value, DTypePolicy):
        return value
    if isinstance(value, torch.dtype):
        value = str(value).removeprefix("torch.")
    if isinstance(value, dict) and "config" in value:
        value = value["config"].get("name")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a dtype policy name such as 'float32' or "
                          f"'mixed_bfloat16'. Got {value!r}.")
    try:
        return DTypePolicy(value)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


set_dtype_policy = set_global_policy  # Keras 3's newer names
dtype_policy = global_policy
