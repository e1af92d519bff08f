"""Keras 3's activation functions by name, on torch tensors (last axis is features)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from reglab.errors import ConfigError, unknown_name
from reglab.utils.threads import in_one_thread

Activation = Callable[[torch.Tensor], torch.Tensor]


def linear(x: torch.Tensor) -> torch.Tensor:
    return x


#: up to this many classes, softmax runs along the batch axis of a transposed copy: torch's
#: kernel along a short last axis works one row at a time (2.0 ms for 125 x 128 rows of 10
#: classes on the development CPU, against 0.1 ms along the batch axis, transposes included).
#: Each sample's classes are still one column, normalised the same way whatever the members.
_TRANSPOSED_SOFTMAX_MAX_CLASSES = 64


def softmax(x: torch.Tensor) -> torch.Tensor:
    if x.dim() < 2 or x.shape[-1] > _TRANSPOSED_SOFTMAX_MAX_CLASSES or \
            x.dtype in (torch.bfloat16, torch.float16):
        # in a half-precision dtype torch's kernel along the batch axis rounds otherwise
        # than along the classes (Keras's axis), where a batch has a tail: Keras's, then
        return torch.softmax(x, dim=-1)
    # x.transpose(...).contiguous() copies nothing when x is itself a transposed view (the
    # logits of a transposed output layer: layers/narrow_linear.py).
    across = x.transpose(-1, -2).contiguous()
    # one thread: torch splits this kernel's (rows x batch) range between threads by the
    # whole tensor's size, and a lone member's batch cut in two falls in part on a vector
    # loop's scalar tail, where exp rounds differently (reglab/utils/threads.py)
    return in_one_thread(torch.softmax, across, -2).transpose(-1, -2).contiguous()


def gelu(x: torch.Tensor) -> torch.Tensor:
    # keras.activations.gelu defaults to approximate=False.
    return F.gelu(x)


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    # keras.activations.leaky_relu's default slope (the LeakyReLU layer's is 0.3)
    return F.leaky_relu(x, negative_slope=0.2)


def mish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))  # Keras's Mish.static_call


_BY_NAME: dict[str, Activation] = {
    "linear": linear,
    "relu": torch.relu,
    "softmax": softmax,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "elu": F.elu,  # alpha = 1.0, as Keras
    "selu": F.selu,  # the same constants as Keras
    "gelu": gelu,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "silu": F.silu,  # first: the name Keras 3 saves for silu and swish alike
    "swish": F.silu,
    "exponential": torch.exp,
    "relu6": F.relu6,
    "leaky_relu": leaky_relu,
    "hard_sigmoid": F.hardsigmoid,  # relu6(x + 3) / 6, Keras 3's
    "hard_silu": F.hardswish,
    "hard_swish": F.hardswish,
    "mish": mish,
    "log_sigmoid": F.logsigmoid,
}


# Keras's ``keras.activations.<name>`` functions, for ``Dense(..., activation=activations.relu)``
# as Keras code writes it: each is the very callable its name stands for above (so a layer
# given the function is the layer given the name), taking one tensor. Keras's optional
# arguments (relu's ``negative_slope``, ``max_value``, ``threshold``; elu's ``alpha``) belong
# to the layers ``ReLU``, ``LeakyReLU`` and ``ELU``.
relu = _BY_NAME["relu"]
sigmoid = _BY_NAME["sigmoid"]
tanh = _BY_NAME["tanh"]
elu = _BY_NAME["elu"]
selu = _BY_NAME["selu"]
softplus = _BY_NAME["softplus"]
softsign = _BY_NAME["softsign"]
swish = _BY_NAME["swish"]
silu = _BY_NAME["silu"]
exponential = _BY_NAME["exponential"]
relu6 = _BY_NAME["relu6"]
hard_sigmoid = _BY_NAME["hard_sigmoid"]
hard_silu = _BY_NAME["hard_silu"]
hard_swish = _BY_NAME["hard_swish"]
log_sigmoid = _BY_NAME["log_sigmoid"]

#: activations whose torch kernels give each element the same result wherever it lies in a
#: tensor, forward and backward (pinned by a test): the others (sigmoid, elu, ...) take
#: another code path for the last elements of a tensor, so the engine applies them to each
#: member's slice separately, as it would to that member alone.
_POSITION_EXACT = frozenset({"linear", "relu", "softmax", "tanh", "gelu", "softsign"})


def is_position_exact(fn: Activation) -> bool:
    """Whether ``fn`` may be applied to a whole population's stacked tensor at once."""
    return structure_key(fn) in _POSITION_EXACT or getattr(fn, "position_exact", False) is True


def apply(fn: Activation, x: torch.Tensor, member_axis: bool = True) -> torch.Tensor:
    """``fn(x)``; for an activation that is not position-exact and an ``x`` with a leading
    member axis, member by member (so that a member's result does not depend on the others)."""
    if not member_axis or x.shape[0] == 1 or is_position_exact(fn):
        return fn(x)
    return torch.cat([fn(x[p:p + 1]) for p in range(x.shape[0])])


def get(identifier: str | Activation | None, where: str = "activations.get") -> Activation:
    """Resolves an activation by Keras name (``None`` is ``'linear'``) or returns a callable;
    an activation layer (``layers.ReLU(...)``, ``LeakyReLU``, ``ELU``, ``Softmax``,
    ``Activation``) given as one is its function, as Keras calls the layer."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        fn = _BY_NAME.get(identifier)
        if fn is None:
            raise unknown_name(where, "activation", identifier, _BY_NAME)
        return fn
    if callable(identifier):
        as_activation = getattr(identifier, "as_activation", None)
        return as_activation(where) if callable(as_activation) else identifier
    raise ConfigError(f"{where}: expected an activation name or a callable. Got {identifier!r}.")


def name_of(fn: Activation) -> str:
    """The Keras name of a known activation, else the callable's own name."""
    for name, known in _BY_NAME.items():
        if known is fn:
            return name
    return getattr(fn, "__name__", repr(fn))


def serialize(fn: Activation):
    """A built-in activation's Keras name; any other callable as it is."""
    key = structure_key(fn)
    return key if isinstance(key, str) else fn


def structure_key(fn: Activation):
    """What identifies an activation across members: its Keras name, or the callable itself
    (two different user functions are two different structures, even with one name)."""
    for name, known in _BY_NAME.items():
        if known is fn:
            return name
    # an activation layer's function: its layer's structure (equal arguments, one structure)
    return getattr(fn, "structure_key", fn)
