"""The base of reglab's layers: a Keras-style configuration plus population math.

A layer object holds only configuration, as a Keras layer does before it is
built. The population engine asks it for its weights' specifications, its
structure (what must be equal across members) and its values (what may differ
between members), and calls ``forward`` with every member's weights stacked
along a leading member axis.

Activations flowing between layers are either *shared* by all members,
``(B, *shape)``, or *per member*, ``(P, B, *shape)``; a layer tells which by the
rank of its input. Elementwise math written for ``(P, 1, ...)`` values then
broadcasts over both forms.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reglab import mixed_precision
from reglab import regularizers as regularizers_module
from reglab.errors import ConfigError, did_you_mean
from reglab.utils.naming import snake_case  # noqa: F401 - re-exported

Value = float | torch.Tensor
Shape = tuple[int, ...]

#: Keras's attribute names for a layer's weights (``dense.kernel``, ``bn.moving_mean``),
#: read through :meth:`Layer.__getattr__`
WEIGHT_ATTRIBUTES = frozenset({"kernel", "bias", "gamma", "beta", "moving_mean",
                               "moving_variance", "embeddings", "depthwise_kernel",
                               "pointwise_kernel", "recurrent_kernel"})


@dataclass(frozen=True)
class WeightSpec:
    """One weight of one member, in Keras's layout."""

    name: str
    shape: Shape
    initializer: Callable
    trainable: bool = True
    kind: str = "kernel"  # 'kernel', 'bias', 'gamma', 'beta' or 'stat'
    regularizer: Any = None
    constraint: Any = None


@dataclass
class ForwardContext:
    """What a layer's forward pass may use besides its weights and values.

    Attributes:
        training: training mode (dropout, noise and batch statistics on).
        members: P, the number of members in the forward pass.
        random: ``random(kind, shape) -> (G, *shape)`` with G = P, or 1 when all
            members share one seed; ``kind`` is 'uniform' or 'normal'. Members
            that share a seed receive the same numbers.
        groups: set when the input is *grouped*, ``(G, B, *shape)``, one row per seed
            group (:class:`reglab.layers.shared_input.MemberGroups` says which members
            see which row); only layers whose ``takes_grouped_input`` is true receive it.
        logits: the layer gives its values before its softmax activation (set by the engine
            on a last layer whose ``gives_logits`` is true, when it fuses that softmax into
            the loss: :mod:`reglab.engine.softmax_crossentropy`).
    """

    training: bool
    members: int
    random: Callable[[str, Sequence[int]], torch.Tensor] | None = None
    groups: Any = None
    extras: dict = field(default_factory=dict)
    logits: bool = False


def is_shared(x: torch.Tensor, input_shape: Shape) -> bool:
    """True when ``x`` has no member axis (all members see the same tensor)."""
    return x.dim() == len(input_shape) + 1


def per_member(value: Value, ndim: int) -> Value:
    """Shapes a ``(P,)`` value to ``(P, 1, ..., 1)`` with ``ndim`` dims; floats pass."""
    if isinstance(value, torch.Tensor):
        return value.view(-1, *([1] * (ndim - 1)))
    return value


def check_rate(owner: str, name: str, value: Any, upper_open: bool = True) -> float:
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
    if not bad:
        bad = value < 0 or (value >= 1 if upper_open else value > 1)
    if bad:
        right = ")" if upper_open else "]"
        raise ConfigError(f"{owner}: '{name}' must be a float in [0, 1{right}. Got {value!r}.")
    return float(value)


def check_positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ConfigError(f"{owner}: '{name}' must be a positive int. Got {value!r}.")
    return int(value)


def sample_axes(owner: str, axis: int | tuple[int, ...], rank: int) -> tuple[int, ...]:
    """Keras's axes (counted with the batch as axis 0) as negative positions in a sample of
    ``rank`` axes, which hold with or without a member axis in front; a ConfigError naming
    ``owner`` for the batch axis or one outside the input."""
    found = []
    for a in (axis if isinstance(axis, tuple) else (axis,)):
        if a == 0 or not -rank <= a <= rank:
            raise ConfigError(f"{owner}: 'axis' {a} is outside the sample axes of an input of "
                              f"{rank + 1} axes (the batch, axis 0, included). Got axis="
                              f"{axis!r}.")
        found.append(a if a < 0 else a - rank - 1)
    return tuple(found)


def check_channels_last(owner: str, data_format) -> None:
    """An image layer's ``data_format``: None or 'channels_last' (reglab's only layout)."""
    if data_format not in (None, "channels_last"):
        raise ConfigError(f"{owner}: 'data_format' must be 'channels_last'. Got "
                          f"{data_format!r}.")


def image_shape(owner: str, input_shape) -> tuple[int, int, int]:
    """An image layer's input shape ``(height, width, channels)``, else its error."""
    if len(input_shape) != 3:
        raise ConfigError(f"{owner}: expects inputs of rank 4 (batch, height, width, "
                          f"channels). Got {(None, *input_shape)}.")
    return tuple(input_shape)


def as_pair(owner: str, name: str, value: Any) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)):
        raise ConfigError(
            f"{owner}: '{name}' must be a positive int or a pair of them. Got {value!r}.")
    return int(pair[0]), int(pair[1])


_BASE_KWARGS = ("name", "input_shape", "batch_input_shape", "input_dim", "trainable", "dtype")


class VariableNames:
    """Keras 3's ``variables``, ``trainable_variables`` and ``non_trainable_variables``: a
    layer's or model's ``weights`` lists (reglab keeps no other state in variables: its
    random streams are keyed by the epoch, not held in seed generators)."""

    @property
    def variables(self) -> list:
        return self.weights

    @property
    def trainable_variables(self) -> list:
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list:
        return self.non_trainable_weights


class Layer(VariableNames):
    """Base class of reglab's layers.

    Subclasses store their arguments unchanged in ``__init__`` (after checking
    them), and define ``compute_output_shape`` and ``forward``; weight-bearing
    layers also define ``weight_specs``.
    """

    #: True for layers whose work is done on the inputs before members diverge
    #: (augmentation), which the engine fuses into one warp per batch.
    is_augmentation = False
    #: True for layers that transform a whole batch, inputs and targets, before the layers
    #: (MixUp, CutMix: reglab/layers/mixing.py)
    is_batch_transform = False
    #: How the layer takes a grouped input ``(G, B, ...)`` (one row per seed group, see
    #: ``ForwardContext.groups``): None (the engine lays it out per member first), "keeps"
    #: (works on it as on a per-member input, and its output stays grouped: Flatten) or
    #: "consumes" (gives a per-member output: Dense's shared GEMM).
    takes_grouped_input: str | None = None
    #: Under mixed precision, computes in float32 inside and casts its output back to the
    #: compute dtype (BatchNormalization, as Keras 3).
    computes_in_float32 = False
    #: Under mixed precision, receives its float32 weights and casts them itself (Dense,
    #: whose shared GEMM casts while laying kernels side by side).
    casts_own_weights = False

    def __init__(self, name: str | None = None, input_shape: Sequence[int] | None = None,
                 trainable: bool = True, dtype: Any = None, **kwargs: Any):
        owner = type(self).__name__
        if "input_dim" in kwargs:
            input_shape = (kwargs.pop("input_dim"),)
        if "batch_input_shape" in kwargs:
            input_shape = tuple(kwargs.pop("batch_input_shape"))[1:]
        for key in kwargs:
            raise ConfigError(
                f"{owner}: unexpected keyword argument {key!r}."
                f"{did_you_mean(key, self._argument_names())}"
            )
        if input_shape is not None:
            if isinstance(input_shape, int):
                input_shape = (input_shape,)
            if not all(isinstance(d, int) and d > 0 for d in input_shape):
                raise ConfigError(
                    f"{owner}: 'input_shape' must be a tuple of positive ints (without the "
                    f"batch size). Got {input_shape!r}.")
            input_shape = tuple(input_shape)
        self.name = name
        self.input_shape = input_shape
        self.trainable = bool(trainable)
        self.dtype_policy = mixed_precision.get(dtype, where=f"{owner}: 'dtype'")
        self.activity_regularizer = None

    @property
    def dtype_policy(self):
        """The layer's :class:`~reglab.mixed_precision.DTypePolicy`; set to a policy or its
        name (``layer.dtype_policy = "mixed_bfloat16"``), as Keras's setter takes them."""
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, value) -> None:
        self._dtype_policy = mixed_precision.get(
            value, where=f"{type(self).__name__} {getattr(self, 'name', '')!r}: 'dtype_policy'")

    @property
    def dtype(self) -> str:
        """The dtype of the layer's weights (Keras 3: the policy's variable dtype)."""
        return self.dtype_policy.variable_dtype

    @property
    def compute_dtype(self) -> str:
        return self.dtype_policy.compute_dtype

    @property
    def variable_dtype(self) -> str:
        return self.dtype_policy.variable_dtype

    def _argument_names(self) -> list[str]:
        import inspect

        params = inspect.signature(type(self).__init__).parameters
        return [p for p in params if p not in ("self", "kwargs")] + list(_BASE_KWARGS)

    # -- structure and values ---------------------------------------------------
    def weight_specs(self, input_shape: Shape) -> list[WeightSpec]:
        return []

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def structure(self) -> tuple:
        """What must be equal across members: the class and structural arguments."""
        return (type(self).__name__,)

    def values(self) -> dict[str, float]:
        """Numbers that may differ between members (rates, strengths, momenta)."""
        return {}

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor],
                values: dict[str, Value], ctx: ForwardContext, input_shape: Shape) -> torch.Tensor:
        raise NotImplementedError

    # -- Keras-facing -------------------------------------------------------------
    def __call__(self, inputs, *args, **kwargs):
        """Keras's functional API: called on ``reglab.Input(...)`` or another layer's output,
        returns a symbolic tensor (see :mod:`reglab.layers.symbolic`). Called on an array
        or tensor (a batch), a layer without weights computes it, as Keras's eager call:
        ``Dropout(0.5)(x, training=True)`` (a torch tensor back). Keras's other call
        arguments (``mask=``) are not supported: refused, not ignored."""
        from reglab.layers import symbolic

        on_batch = not symbolic.is_symbolic(inputs) and _is_batch(inputs)
        training = kwargs.pop("training", False) if on_batch else None
        if args or kwargs:
            given = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
            rule = ("a layer called on an array takes training= alone; call arguments such "
                    "as mask= are not supported" if on_batch else
                    "a layer is called on its inputs alone; call arguments such as training= "
                    "or mask= are not supported (training mode is fit's)")
            raise ConfigError(f"{self.name or type(self).__name__}: {rule}. Got "
                              f"{', '.join(given)}.")
        if on_batch:
            return self._call_on_batch(inputs, training)
        return symbolic.call(self, inputs)

    def _call_on_batch(self, inputs, training):
        """The layer on one batch, through a one-layer model of a copy of it (made once per
        input shape, its seed drawn as a model's): weightless layers only, whose copy
        computes what the layer would."""
        import torch

        from reglab.models.sequential import Sequential
        from reglab.utils.random_seed import layer_call_seed

        name = self.name or type(self).__name__
        if training and self.is_augmentation:
            raise ConfigError(f"{name}: an augmentation layer computes in training mode "
                              "inside fit only (its draws are fit's); call it with "
                              "training=False.")
        x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else \
            np.asarray(inputs)
        shape, config = tuple(x.shape[1:]), self.get_config()
        # made again when the layer's settings changed since (layer.rate = 0.9), as Keras
        # reads them at each call; the seed: the layer's own, else one from a stream apart
        key = (shape, repr(sorted(config.items())))
        cached = self.__dict__.get("_on_batch")
        if cached is None or cached[0] != key:
            seed = getattr(self, "seed", None)
            model = Sequential([Input(shape), type(self).from_config(config)],
                               seed=layer_call_seed() if seed is None else seed)
            if model.count_params():
                raise ConfigError(
                    f"{name}: a layer with weights is called on an array inside a model "
                    "only (its weights are the model's): "
                    "Sequential([reglab.Input(shape), layer]) or reglab.Model.")
            self.__dict__["_on_batch"] = cached = (key, model)
        return cached[1](x, training=training)

    @property
    def output(self):
        """Keras's: the symbolic tensor this layer's call in a graph returned (a layer of a
        Sequential: in the model's graph), e.g. for a feature extractor
        ``Model(model.input, model.get_layer("hidden").output)``."""
        from reglab.layers.symbolic import node_tensor

        return node_tensor(self, "output")

    @property
    def input(self):
        """Keras's: the symbolic tensor (a list for several) this layer's call took."""
        from reglab.layers.symbolic import node_tensor

        return node_tensor(self, "input")

    def get_weights(self) -> list:
        """This layer's weights in Keras's layouts, read from the model it belongs to; none
        before it is part of one (Keras's unbuilt layer)."""
        model = getattr(self, "_model", None)
        return [] if model is None else model._layer_weights(self)

    def set_weights(self, weights) -> None:
        """Writes this layer's weights into the model it belongs to; before it is part of
        one it has none, and only an empty list is taken (as Keras's unbuilt layer)."""
        model = getattr(self, "_model", None)
        if model is not None:
            model._set_layer_weights(self, weights)
        elif len(weights):
            raise ConfigError(f"{self.name or type(self).__name__}.set_weights: the layer "
                              f"holds no weights until it is part of a model (add it to a "
                              f"Sequential); expected 0 arrays. Got {len(weights)}.")

    @property
    def weights(self) -> list:
        """Keras's ``layer.weights``: views of this layer's weights in its model (none
        before it is part of one with a known input shape)."""
        model = getattr(self, "_model", None)
        return [] if model is None else model._variables(self)

    @property
    def trainable_weights(self) -> list:
        return [v for v in self.weights if v.trainable]

    @property
    def non_trainable_weights(self) -> list:
        return [v for v in self.weights if not v.trainable]

    @property
    def losses(self) -> list:
        """Keras's ``layer.losses``: this layer's part of its model's ``losses`` (its activity
        penalty on the last ``model(x)``'s batch, its weights' penalties); none outside a
        model."""
        model = getattr(self, "_model", None)
        return [] if model is None else model._layer_losses(self)

    def count_params(self) -> int:
        return int(sum(math.prod(v.shape) for v in self.weights))

    def __getattr__(self, name: str):
        # Keras's weight attributes (dense.kernel, batch_norm.moving_mean): this layer's
        # weight of that name in its model; Dense(use_bias=False).bias is None, as Keras
        if name in WEIGHT_ATTRIBUTES:
            model = self.__dict__.get("_model")
            if model is not None:
                for variable in model._variables(self):
                    if variable.name == name:
                        return variable
                if name == "bias" and self.__dict__.get("use_bias") is False:
                    return None
        if name in ("output", "input"):  # the property's own reason, which Python dropped
            from reglab.layers.symbolic import node_tensor

            return node_tensor(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable,
                                  "dtype": self.dtype_policy.name}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """The layer of :meth:`get_config`'s dict, or of the same layer's config in Keras
        (its serialized objects read as reglab's, the features reglab lacks left off:
        :mod:`reglab.keras_configs`)."""
        from reglab import keras_configs

        return cls(**keras_configs.plain(dict(config), keep=_arguments(cls)))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _arguments(cls) -> frozenset[str]:
    """The keyword arguments ``cls``'s constructors name, up to :class:`Layer`'s."""
    import inspect

    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(p.name for p in inspect.signature(init).parameters.values()
                         if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
        if klass is Layer:
            break
    return frozenset(names)


def serialized(layer, *names: str) -> dict[str, Any]:
    """The config entries of ``layer``'s initializers, regularizers, constraints and
    activation: built-in ones as Keras writes them (``{'class_name', 'config'}``, an
    activation's name), anything else as the object itself (it round-trips in memory;
    saving to a file refuses it)."""
    from reglab import activations, constraints, initializers

    config = {}
    for name in names:
        value = getattr(layer, name)
        if name.endswith("_initializer"):
            config[name] = initializers.serialize(value)
        elif name.endswith("_regularizer"):
            config[name] = regularizers_module.serialize(value)
        elif name.endswith("_constraint"):
            config[name] = constraints.serialize(value)
        elif name == "activation":
            config[name] = activations.serialize(value)
        else:
            config[name] = value
    return config


def resolve_regularizer(owner: str, argument: str, value: Any):
    return regularizers_module.get(value, where=f"{owner}: '{argument}'")


class Input:
    """``keras.Input(shape=...)``: declares a model's input. ``shape`` is given without the
    batch; as in Keras, the tensor's ``shape`` then has the batch first (``batch_size``, None
    by default), and ``sample_shape`` is the shape given.

    Example:
        >>> Input(shape=(784,)).shape
        (None, 784)
    """

    def __init__(self, shape: Sequence[int] | None = None, batch_size: int | None = None,
                 dtype: Any = None, name: str | None = None,
                 batch_shape: Sequence[int | None] | None = None):
        if batch_shape is not None:  # Keras's other spelling: the batch size first
            if shape is not None:
                raise ConfigError("Input: pass 'shape' or 'batch_shape', not both (as Keras). "
                                  f"Got shape={shape!r} and batch_shape={batch_shape!r}.")
            if isinstance(batch_shape, (str, bytes)) or not hasattr(batch_shape, "__len__") \
                    or len(batch_shape) < 2:
                raise ConfigError("Input: 'batch_shape' must be a tuple with the batch size "
                                  f"(or None) first, e.g. (None, 784). Got {batch_shape!r}.")
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        if isinstance(shape, int):
            shape = (shape,)
        if shape is None or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ConfigError(
                f"Input: 'shape' must be a tuple of positive ints (without the batch size). "
                f"Got {shape!r}.")
        self.sample_shape = tuple(shape)
        self.batch_size = batch_size
        self.dtype = "float32" if dtype is None else dtype  # Keras's default
        self.name = name

    @property
    def shape(self) -> tuple:
        return (self.batch_size, *self.sample_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<Input shape={self.shape}>"


def _is_batch(value) -> bool:
    """Whether ``value`` is data (an array, a tensor) rather than a symbolic input."""
    import torch

    return isinstance(value, (np.ndarray, torch.Tensor))
