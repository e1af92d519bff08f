"""Keras's regularization layers: Dropout, SpatialDropout1D/2D, AlphaDropout, GaussianNoise,
GaussianDropout, ActivityRegularization.

All are active in training only. A layer's ``seed`` argument is accepted for
Keras compatibility but draws come from the member's seed (see
:mod:`reglab.engine.rng`), so it does not distinguish structures. The rates may
differ between members: a
member's mask or noise is drawn from its own seed's stream, so members that
share a seed share the underlying uniform (or normal) numbers, and a rate
changes only the threshold applied to them.
"""

from __future__ import annotations

import math
import numbers

import torch

from reglab.errors import ConfigError
from reglab.layers.layer import Layer, check_rate, is_shared, per_member
from reglab.native import dropout as native_dropout
from reglab.regularizers import L1L2


def _batch_shape(x, input_shape):
    """``(B, *sample_shape)`` of ``x``, with or without its member axis."""
    return tuple(x.shape[-(len(input_shape) + 1):])


def dropout(x: torch.Tensor, rate, uniform: torch.Tensor) -> torch.Tensor:
    """Inverted dropout: keeps ``uniform < 1 - rate`` and scales kept units by ``1 / (1 - rate)``.

    ``rate`` is a float or a ``(P, 1, ...)`` tensor; ``uniform`` broadcasts to ``x``.
    The mask multiplies, as in ``torch.nn.functional.dropout`` (and so Keras on torch): a
    kept unit is ``x / (1 - rate)`` exactly, a dropped one 0 (NaN where ``x`` is not
    finite). A float mask is several times cheaper than ``torch.where`` on the CPU, forward
    and backward.
    """
    return dropout_and_mask(x, rate, uniform)[0]


def dropout_and_mask(x: torch.Tensor, rate, uniform: torch.Tensor):
    """:func:`dropout`'s ``(output, divisor, float mask)``: the divisor is the keep
    probability, 1 for a member of rate 1 (all its units dropped: 0, not 0 / 0)."""
    keep_prob = 1.0 - rate
    keep = (uniform < keep_prob).to(x.dtype)
    if _drops_all(rate):
        keep_prob = (torch.where(keep_prob > 0, keep_prob, torch.ones_like(keep_prob))
                     if isinstance(keep_prob, torch.Tensor) else 1.0)
    return x / keep_prob * keep, keep_prob, keep


def _drops_all(rate) -> bool:
    """Whether ``rate`` (a float or per-member tensor) is 1 for some member."""
    return bool((rate == 1).any()) if isinstance(rate, torch.Tensor) else rate == 1


def _identity_backward(dy, need_x):
    return dy, {}


class Dropout(Layer):
    """Sets a fraction ``rate`` of units to 0 during training and scales the rest by ``1/(1-rate)``.

    Example:
        >>> Dropout(0.5).values()
        {'rate': 0.5}
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        # 1 is Keras's too: every unit dropped, the output zeros
        self.rate = check_rate(type(self).__name__, "rate", rate, upper_open=False)
        if noise_shape is not None and not isinstance(noise_shape, (tuple, list)):
            raise ConfigError(f"{type(self).__name__}: 'noise_shape' must be a tuple or None. "
                              f"Got {noise_shape!r}.")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed

    def structure(self):
        return (type(self).__name__, self.noise_shape)

    def values(self):
        return {"rate": self.rate}

    def _noise_shape(self, batch_shape):
        if self.noise_shape is None:
            return batch_shape
        if len(self.noise_shape) != len(batch_shape):
            raise ConfigError(
                f"{type(self).__name__}: 'noise_shape' must have rank {len(batch_shape)} "
                f"(batch included) to match the input {batch_shape}. Got {self.noise_shape!r}.")
        return tuple(b if n is None else n for n, b in zip(self.noise_shape, batch_shape))

    def forward(self, x, weights, values, ctx, input_shape):
        return self._dropout(x, values, ctx, input_shape, explicit=False)[0]

    def forward_and_backward(self, x, weights, values, ctx, input_shape):
        """The forward pass and its backward (``reglab.engine.direct_step``)."""
        return self._dropout(x, values, ctx, input_shape, explicit=True)

    def _dropout(self, x, values, ctx, input_shape, explicit):
        """``(y, backward)``; ``backward(dy, need_x)`` is given when ``explicit``: the
        native kernel's, or autograd's chain for ``x / keep_prob * mask`` written out."""
        rate = values["rate"]
        if not ctx.training or (not isinstance(rate, torch.Tensor) and rate == 0):
            return x, (_identity_backward if explicit else None)
        if not isinstance(rate, torch.Tensor) and rate == 1:  # Keras: zeros, zero gradient
            return torch.zeros_like(x), ((lambda dy, need_x: (torch.zeros_like(dy), {}))
                                         if explicit else None)
        batch_shape = _batch_shape(x, input_shape)
        noise_shape = self._noise_shape(batch_shape)
        grouped = getattr(ctx.random, "grouped", None)
        if (grouped is not None and noise_shape == batch_shape and isinstance(rate, torch.Tensor)
                and not is_shared(x, input_shape) and not _drops_all(rate)):
            draws, rows = grouped("uniform", noise_shape)  # one row per seed group
            if explicit:  # torch's bits, fused
                done = native_dropout.dropout_and_backward(x, 1.0 - rate, draws, rows)
                if done is not None:
                    y, native_backward = done
                    return y, lambda dy, need_x: (native_backward(dy), {})
            else:
                y = native_dropout.dropout(x, 1.0 - rate, draws, rows)
                if y is not None:
                    return y, None
            uniform = draws if rows is None else draws.index_select(0, rows)
        else:
            uniform = ctx.random("uniform", noise_shape)  # (G, B, ...)
        if is_shared(x, input_shape):
            x = x.unsqueeze(0)
        # The draws stay in float32 under mixed precision: rounded to bfloat16, draws just
        # below 1 would become 1 and drop units even at rate 0.
        if uniform.dtype.itemsize < x.dtype.itemsize:
            uniform = uniform.to(x.dtype)
        if not explicit:
            return dropout(x, per_member(rate, x.dim()), uniform), None
        y, keep_prob, mask = dropout_and_mask(x, per_member(rate, x.dim()), uniform)
        # autograd's gradient of x / keep_prob * mask: the product's, then the quotient's
        return y, lambda dy, need_x: (dy * mask / keep_prob, {})

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape,
                "seed": self.seed}


class SpatialDropout2D(Dropout):
    """Drops whole feature maps: the mask has shape ``(B, 1, 1, C)`` (channels last).

    Example:
        >>> SpatialDropout2D(0.2).rate
        0.2
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)

    def _noise_shape(self, batch_shape):
        if len(batch_shape) != 4:
            raise ConfigError(
                "SpatialDropout2D: expects inputs of rank 4 (batch, height, width, channels). "
                f"Got shape {batch_shape}.")
        return (batch_shape[0], 1, 1, batch_shape[3])


class SpatialDropout1D(Dropout):
    """Drops whole channels of a sequence: the mask has shape ``(B, 1, C)``.

    Example:
        >>> SpatialDropout1D(0.2).rate
        0.2
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)

    def _noise_shape(self, batch_shape):
        if len(batch_shape) != 3:
            raise ConfigError(
                "SpatialDropout1D: expects inputs of rank 3 (batch, steps, channels). "
                f"Got shape {batch_shape}.")
        return (batch_shape[0], 1, batch_shape[2])


#: SELU's constants (Klambauer et al. 2017), Keras's: a dropped unit is set to
#: -SELU_ALPHA * SELU_SCALE, SELU's limit for large negative inputs
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class AlphaDropout(Dropout):
    """Keras's ``AlphaDropout`` for SELU networks: in training, units are dropped with
    probability ``rate`` to SELU's negative saturation ``alpha' = -alpha * scale`` (kept
    where a uniform draw is ``>= rate``, as Keras), then ``a * x + b`` restores the mean and
    variance (``a = ((1 - rate) (1 + rate alpha'^2))^-1/2``, ``b = -a alpha' rate``).

    Example:
        >>> AlphaDropout(0.1).values()
        {'rate': 0.1}
    """

    def forward(self, x, weights, values, ctx, input_shape):
        rate = values["rate"]
        if not ctx.training or (not isinstance(rate, torch.Tensor) and rate == 0):
            return x
        uniform = ctx.random("uniform", self._noise_shape(_batch_shape(x, input_shape)))
        if is_shared(x, input_shape):
            x = x.unsqueeze(0)
        rate = per_member(rate, x.dim())
        kept = (uniform >= rate).to(x.dtype)
        saturation = -SELU_ALPHA * SELU_SCALE
        a = ((1 - rate) * (1 + rate * saturation ** 2)) ** -0.5
        b = -a * saturation * rate
        return a * (x * kept + saturation * (1 - kept)) + b


class GaussianNoise(Layer):
    """Adds zero-mean Gaussian noise of standard deviation ``stddev`` during training.

    Example:
        >>> GaussianNoise(0.1).values()
        {'stddev': 0.1}
    """

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(stddev, bool) or not isinstance(stddev, numbers.Real) or not (
                math.isfinite(stddev) and stddev >= 0):
            raise ConfigError(f"GaussianNoise: 'stddev' must be a non-negative float. "
                              f"Got {stddev!r}.")
        self.stddev = float(stddev)
        self.seed = seed

    def structure(self):
        return ("GaussianNoise",)

    def values(self):
        return {"stddev": self.stddev}

    def forward(self, x, weights, values, ctx, input_shape):
        stddev = values["stddev"]
        if not ctx.training or (not isinstance(stddev, torch.Tensor) and stddev == 0):
            return x
        normal = ctx.random("normal", _batch_shape(x, input_shape)).to(x.dtype)
        if is_shared(x, input_shape):
            x = x.unsqueeze(0)
        return x + normal * per_member(stddev, x.dim())

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(Layer):
    """Multiplies by Gaussian noise of mean 1 and std ``sqrt(rate / (1 - rate))`` in training.

    Example:
        >>> GaussianDropout(0.2).values()
        {'rate': 0.2}
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate("GaussianDropout", "rate", rate)
        self.seed = seed

    def structure(self):
        return ("GaussianDropout",)

    def values(self):
        return {"rate": self.rate}

    def forward(self, x, weights, values, ctx, input_shape):
        rate = values["rate"]
        if not ctx.training or (not isinstance(rate, torch.Tensor) and rate == 0):
            return x
        normal = ctx.random("normal", _batch_shape(x, input_shape)).to(x.dtype)
        if is_shared(x, input_shape):
            x = x.unsqueeze(0)
        rate = per_member(rate, x.dim())
        stddev = (rate / (1.0 - rate)).sqrt() if isinstance(rate, torch.Tensor) else \
            (rate / (1.0 - rate)) ** 0.5
        return x * (1.0 + normal * stddev)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class StochasticDepth(Layer):
    """Stochastic depth (Huang et al. 2016) on a residual block, per sample with inverted
    scaling (timm's DropPath): called on ``[shortcut, residual]``, it returns
    ``shortcut + residual`` in inference, and in training ``shortcut + residual * keep /
    (1 - rate)`` with ``keep`` one Bernoulli(1 - rate) draw per sample: the whole branch is
    dropped for a sample with probability ``rate``. (keras_cv's layer of that name, called
    the same way, draws once per batch and scales by ``1 - rate`` at inference instead: the
    same expectation, other noise.) ``rate`` is a value: members of one population may differ
    in it.

    Example:
        >>> StochasticDepth(0.2).values()
        {'rate': 0.2}
    """

    takes_list = True

    def __init__(self, rate=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate(type(self).__name__, "rate", rate)
        self.seed = seed

    def values(self):
        return {"rate": self.rate}

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) != 2 or \
                tuple(input_shape[0]) != tuple(input_shape[1]):
            raise ConfigError("StochasticDepth: expected [shortcut, residual], two inputs of "
                              f"one shape. Got {input_shape!r}.")
        return tuple(input_shape[0])

    def forward(self, x, weights, values, ctx, input_shape):
        from reglab.layers.merging import _aligned

        shortcut, residual = _aligned(x, input_shape, ctx.members)
        rate = values["rate"]
        if not ctx.training or (not isinstance(rate, torch.Tensor) and rate == 0):
            return shortcut + residual
        batch_shape = _batch_shape(residual, input_shape[1])
        uniform = ctx.random("uniform", (batch_shape[0], *([1] * (len(batch_shape) - 1))))
        shared = is_shared(residual, input_shape[1])
        if shared:
            residual, shortcut = residual.unsqueeze(0), shortcut.unsqueeze(0)
        if uniform.dtype.itemsize < residual.dtype.itemsize:
            uniform = uniform.to(residual.dtype)
        return shortcut + dropout(residual, per_member(rate, residual.dim()), uniform)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class ActivityRegularization(Layer):
    """``keras.layers.ActivityRegularization``: passes its input on and adds
    ``l1 * sum(|x|) + l2 * sum(x**2)`` of it to the loss (divided by the batch size, as
    Keras 3.14 and later divide activity penalties), an ``L1L2`` activity regularizer.

    Example:
        >>> ActivityRegularization(l1=0.01).get_config()["l1"]
        0.01
    """

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.activity_regularizer = L1L2(l1=l1, l2=l2)  # checks them
        self.l1, self.l2 = self.activity_regularizer.l1, self.activity_regularizer.l2

    def forward(self, x, weights, values, ctx, input_shape):
        return x

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}
