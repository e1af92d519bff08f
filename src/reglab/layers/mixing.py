"""Batch transforms that change the labels too: ``MixUp``, ``CutMix`` and ``LabelSmoothing``.

They lead a model (after any augmentation layer) and act on each training batch ``(x, y)``
before the other layers; in inference they pass the input through. Integer labels are
one-hot encoded for them, and the losses take the soft targets they produce. Their
strengths are per-member values, so members that differ only in them share a population;
each member draws from its own seed's stream, so members that share a seed and a strength
mix the same pairs with the same weights.

Draws, per member and batch of ``b`` samples, from a NumPy generator keyed by the
member's seed, the layer and the epoch (in this order, so that a reference can repeat them):

- ``MixUp(alpha)``: the partner of each sample ``perm = permutation(b)``, then its weight
  ``lam = beta(alpha, alpha, b)``; ``x = lam * x + (1 - lam) * x[perm]``, and the same for
  ``y`` (Zhang et al. 2018, with one weight per sample as Keras 3 draws it). ``alpha = 0``
  mixes nothing.
- ``CutMix(factor)``: ``perm = permutation(b)``, ``lam = beta(factor, factor, b)``, box
  centres ``cx = integers(0, W, b)``, ``cy = integers(0, H, b)``; the box is Yun et al.
  2019's ``rand_bbox``: half-sides ``int(W * sqrt(1 - lam)) // 2`` and
  ``int(H * sqrt(1 - lam)) // 2`` around the centre, clipped to the image; the partner's
  pixels fill the box, and the labels mix with the box's actual share,
  ``lam = 1 - box area / (H * W)``. Keras 3's CutMix takes the same argument but draws the
  Beta parameter itself uniformly from ``[0, factor]`` per batch and places the box inside
  the image without clipping; reglab follows the paper. ``factor = 0`` cuts nothing.
- ``LabelSmoothing(smoothing)`` (beyond Keras, where it is an argument of the loss):
  ``y = y * (1 - smoothing) + smoothing / K`` (``+ smoothing / 2`` for one sigmoid unit).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from reglab.errors import ConfigError
from reglab.layers.layer import Layer


def _non_negative(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value >= 0):
        raise ConfigError(f"{owner}: '{name}' must be a non-negative float. Got {value!r}.")
    return float(value)


class _BatchTransform(Layer):
    """A leading layer that transforms each training batch ``(x, y)`` member by member; its
    one per-member value (its strength) is the attribute named by ``value_name``."""

    is_batch_transform = True
    value_name = ""

    def values(self):
        return {self.value_name: getattr(self, self.value_name)}

    def structure(self):
        return (type(self).__name__,)

    @staticmethod
    def pairs(x: torch.Tensor, strength: float, rng: np.random.Generator):
        """Each sample's partner in the batch, then its Beta(strength, strength) weight."""
        perm = torch.as_tensor(rng.permutation(x.shape[0]), device=x.device)
        return perm, rng.beta(strength, strength, size=x.shape[0])

    def forward(self, x, weights, values, ctx, input_shape):
        return x  # inference; in training the engine applies transform() to the batch

    def transform(self, x: torch.Tensor, y: torch.Tensor, value: float,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One member's batch: ``x`` ``(b, ...)``, soft targets ``y`` ``(b, K)``."""
        raise NotImplementedError


def _mix(a: torch.Tensor, b: torch.Tensor, lam: np.ndarray) -> torch.Tensor:
    """``lam * a + (1 - lam) * b`` with one weight per sample (the first axis)."""
    weight = torch.as_tensor(lam, dtype=a.dtype, device=a.device).view(-1, *([1] * (a.dim() - 1)))
    return weight * a + (1 - weight) * b


class MixUp(_BatchTransform):
    """Mixes each sample with another of its batch, images and labels alike (Keras 3's name
    and default ``alpha=0.2``).

    Example:
        >>> MixUp().values()
        {'alpha': 0.2}
    """

    value_name = "alpha"

    def __init__(self, alpha=0.2, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _non_negative("MixUp", "alpha", alpha)
        self.data_format = data_format
        self.seed = seed

    def transform(self, x, y, value, rng):
        if value <= 0:
            return x, y
        perm, lam = self.pairs(x, value, rng)
        return _mix(x, x[perm], lam), _mix(y, y[perm], lam)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "data_format": self.data_format,
                "seed": self.seed}


def cutmix_boxes(lam: np.ndarray, cx: np.ndarray, cy: np.ndarray, height: int, width: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Yun et al.'s ``rand_bbox`` per sample: ``(y1, y2, x1, x2)`` clipped to the image."""
    ratio = np.sqrt(1.0 - lam)
    cut_w, cut_h = (width * ratio).astype(np.int64), (height * ratio).astype(np.int64)
    x1, x2 = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
    y1, y2 = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
    return y1, y2, x1, x2


class CutMix(_BatchTransform):
    """Pastes a box of another sample of the batch into each image and mixes the labels by
    the box's area (Keras 3's name and default ``factor=1.0``; the box as in the paper, see
    the module docstring).

    Example:
        >>> CutMix().values()
        {'factor': 1.0}
    """

    value_name = "factor"

    def __init__(self, factor=1.0, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = _non_negative("CutMix", "factor", factor)
        self.seed = seed
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ConfigError("CutMix: expects images (height, width, channels) per sample. "
                              f"Got shape {input_shape}.")
        return input_shape

    def transform(self, x, y, value, rng):
        if value <= 0:
            return x, y
        b, height, width = x.shape[0], x.shape[1], x.shape[2]
        perm, lam = self.pairs(x, value, rng)
        cx, cy = rng.integers(0, width, size=b), rng.integers(0, height, size=b)
        y1, y2, x1, x2 = cutmix_boxes(lam, cx, cy, height, width)
        rows, cols = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
        inside = ((rows >= y1[:, None, None]) & (rows < y2[:, None, None])
                  & (cols >= x1[:, None, None]) & (cols < x2[:, None, None]))  # (b, H, W)
        mask = torch.as_tensor(inside, device=x.device).unsqueeze(-1)
        share = 1.0 - (y2 - y1) * (x2 - x1) / (height * width)
        return torch.where(mask, x[perm], x), _mix(y, y[perm], share)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed,
                "data_format": self.data_format}


class LabelSmoothing(_BatchTransform):
    """Smooths the training targets: ``y * (1 - smoothing) + smoothing / K`` (beyond Keras,
    where it is the losses' ``label_smoothing``; as a layer its strength is a per-member
    value).

    Example:
        >>> LabelSmoothing(0.1).values()
        {'smoothing': 0.1}
    """

    value_name = "smoothing"

    def __init__(self, smoothing=0.1, **kwargs):
        super().__init__(**kwargs)
        self.smoothing = _non_negative("LabelSmoothing", "smoothing", smoothing)
        if self.smoothing > 1:
            raise ConfigError(f"LabelSmoothing: 'smoothing' must be a float in [0, 1]. "
                              f"Got {smoothing!r}.")

    def transform(self, x, y, value, rng):
        if value <= 0:
            return x, y
        classes = y.shape[-1]
        uniform = 0.5 if classes == 1 else 1.0 / classes
        return x, y * (1.0 - value) + value * uniform

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}
