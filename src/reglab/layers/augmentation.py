"""Keras 3's augmentation layers: RandomFlip, RandomRotation, RandomTranslation, RandomZoom,
which move pixels, and RandomBrightness, RandomContrast, which change their values.

Active in training only. They must lead the model (right after the input):
the engine samples one transform per image from each member's seed stream and
fuses consecutive layers into one warp per batch (see
:mod:`reglab.engine.augmentation`). Their arguments are structural: members
of one population share them, so members that share a seed see the same images.
Defaults follow Keras 3: ``fill_mode='reflect'``, ``interpolation='bilinear'``.
"""

from __future__ import annotations

import math

import torch

from reglab.augment import (
    FLIP_MODES,
    factor_range,
    keras3_fill_mode,
    random_flip_transforms,
    random_rotation_transforms,
    random_translation_transforms,
    random_zoom_transforms,
)
from reglab.errors import ConfigError, unknown_name
from reglab.layers.layer import Layer, check_channels_last, image_shape

_INTERPOLATIONS = ("bilinear", "nearest")


class _Augmentation(Layer):
    is_augmentation = True

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.keras_fill_mode = fill_mode
        self.fill_mode = keras3_fill_mode(fill_mode)
        if interpolation not in _INTERPOLATIONS:
            raise unknown_name(owner, "'interpolation'", interpolation, _INTERPOLATIONS)
        self.interpolation = interpolation
        self.seed = seed
        self.fill_value = float(fill_value)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ConfigError(f"{type(self).__name__}: expects images (height, width, channels) "
                              f"per sample. Got shape {input_shape}.")
        return input_shape

    def forward(self, x, weights, values, ctx, input_shape):
        return x  # inference; in training the engine applies the fused warp

    def structure(self):
        return _structure(self)

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.keras_fill_mode,
                "interpolation": self.interpolation, "seed": self.seed,
                "fill_value": self.fill_value}


def _structure(layer: Layer) -> tuple:
    """An augmentation layer's settings, which members of a population share: its config
    but its name and seed, each number as a float and each sequence as a list, so that
    equal settings written otherwise (``(0, 255)`` and ``[0.0, 255.0]``; the factor ``0.2``
    and ``(0, 0.2)``, which read the same) are one structure."""
    def plain(value):
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return value
    return (type(layer).__name__, tuple(sorted(
        (k, str(plain(v))) for k, v in layer.get_config().items() if k not in ("name", "seed"))))


class RandomFlip(_Augmentation):
    """Flips each image with probability 1/2 ('horizontal', 'vertical' or both).

    Example:
        >>> RandomFlip("horizontal").mode
        'horizontal'
    """

    def __init__(self, mode="horizontal_and_vertical", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if mode not in FLIP_MODES:
            raise unknown_name("RandomFlip", "'mode'", mode, FLIP_MODES)
        self.mode = mode

    def sample_transforms(self, n, height, width, generator, device, dtype=torch.float64):
        return random_flip_transforms(self.mode, n, height, width, generator, dtype=dtype, device=device)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class RandomRotation(_Augmentation):
    """Rotates by a random fraction of a full turn drawn from ``factor`` (Keras 3 meaning).

    Example:
        >>> RandomRotation(0.1).factor
        0.1
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        factor_range(factor, "factor", "RandomRotation")
        self.factor = factor

    def sample_transforms(self, n, height, width, generator, device, dtype=torch.float64):
        return random_rotation_transforms(self.factor, n, height, width, generator, dtype=dtype, device=device)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomTranslation(_Augmentation):
    """Shifts by random fractions of the height and width.

    Example:
        >>> RandomTranslation(0.1, 0.2).width_factor
        0.2
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        factor_range(height_factor, "height_factor", "RandomTranslation")
        factor_range(width_factor, "width_factor", "RandomTranslation")
        self.height_factor, self.width_factor = height_factor, width_factor

    def sample_transforms(self, n, height, width, generator, device, dtype=torch.float64):
        return random_translation_transforms(self.height_factor, self.width_factor, n, height,
                                             width, generator, dtype=dtype, device=device)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


class RandomZoom(_Augmentation):
    """Zooms by random factors; positive values zoom out, negative zoom in (Keras 3).

    Example:
        >>> RandomZoom(0.1).width_factor is None
        True
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        factor_range(height_factor, "height_factor", "RandomZoom", lower_open=True)
        if width_factor is not None:
            factor_range(width_factor, "width_factor", "RandomZoom", lower_open=True)
        self.height_factor, self.width_factor = height_factor, width_factor

    def sample_transforms(self, n, height, width, generator, device, dtype=torch.float64):
        return random_zoom_transforms(self.height_factor, self.width_factor, n, height, width,
                                      generator, dtype=dtype, device=device)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


class _ValueAugmentation(Layer):
    """A Keras 3 augmentation layer that changes pixel values (not where they are): one
    random number per image from the seed's stream, applied to the batch before the model
    like the warping layers, in the order the layers come (``engine/augmentation.py``).
    ``factor`` as Keras 3.15's ``_set_factor`` reads it (a number ``f`` is
    ``(max(-f, low bound), f)``; a pair is sorted), clipped to ``value_range``."""

    is_augmentation = True
    changes_values = True
    _FACTOR_BOUNDS = (-1, 1)

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        check_channels_last(owner, data_format)
        self.factor = _keras_factor(owner, factor, self._FACTOR_BOUNDS)
        if not isinstance(value_range, (tuple, list)) or len(value_range) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v) for v in value_range):
            raise ConfigError(f"{owner}: 'value_range' must be a list of two finite numbers "
                              f"(low, high). Got {value_range!r}.")
        self.value_range = value_range
        self.seed = seed

    def compute_output_shape(self, input_shape):
        return image_shape(type(self).__name__, input_shape)

    def forward(self, x, weights, values, ctx, input_shape):
        return x  # inference; in training the engine changes the batch's values

    def structure(self):
        return _structure(self)

    def _bounds(self, scale: float, offset: float) -> tuple[float, float]:
        """The value range in the raw batch's units, a Rescaling ``x -> scale x + offset``
        before this layer mapped back (``engine.member.rescaling_before``)."""
        if scale == 0:
            raise ConfigError(f"{type(self).__name__}: the Rescaling before it has scale 0, "
                              "which makes every image one constant: nothing is left to "
                              "augment. Rescale with a non-zero scale.")
        low, high = ((v - offset) / scale for v in self.value_range[:2])
        return (low, high) if low <= high else (high, low)

    def get_config(self):
        return {**super().get_config(), "data_format": "channels_last",
                "factor": self.factor, "value_range": self.value_range, "seed": self.seed}


def _keras_factor(owner: str, factor, bounds: tuple[float, float]) -> tuple[float, float]:
    """``(lower, upper)`` from a number or a pair, as Keras 3's ``_set_factor``."""
    message = (f"{owner}: 'factor' must be a number or a pair of numbers in "
               f"[{bounds[0]:g}, {bounds[1]:g}]. Got {factor!r}.")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                       and math.isfinite(v) for v in factor):
            raise ConfigError(message)
        if factor[0] > bounds[1] or factor[1] < bounds[0]:
            raise ConfigError(message)
        lower, upper = sorted(factor)
        return lower, upper
    if isinstance(factor, (int, float)) and not isinstance(factor, bool) and \
            math.isfinite(factor) and bounds[0] <= factor <= bounds[1]:
        factor = abs(factor)
        return max(-factor, bounds[0]), factor
    raise ConfigError(message)


def _uniform(n: int, low: float, high: float, generator: torch.Generator,
             device) -> torch.Tensor:
    """``n`` draws from U[low, high) in float64 from ``generator``."""
    draws = torch.rand(n, generator=generator, dtype=torch.float64, device=generator.device)
    return (draws * (high - low) + low).to(device)


class RandomBrightness(_ValueAugmentation):
    """Adds one random offset per image, ``U[factor) * (high - low)`` of the value range,
    then clips to it (Keras 3).

    Example:
        >>> RandomBrightness(0.2).factor
        (-0.2, 0.2)
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(factor, value_range, seed, **kwargs)
        if not self.value_range[0] <= self.value_range[1]:  # Keras sorts it
            self.value_range = sorted(self.value_range)
        self.value_range = list(self.value_range)

    def sample_values(self, n, generator, device) -> torch.Tensor:
        low, high = self.value_range
        return _uniform(n, *self.factor, generator, device) * (high - low)

    def apply_values(self, images, values, scale: float = 1.0, offset: float = 0.0):
        delta = (values / scale).to(images.dtype).view(-1, *[1] * (images.dim() - 1))
        return (images + delta).clamp(*self._bounds(scale, offset))


class RandomContrast(_ValueAugmentation):
    """Scales each image's distance from its own per-channel mean by one random factor
    from ``[1 - lower, 1 + upper)``, then clips to the value range (Keras 3). As Keras
    3.15 reads a single number ``f`` (its bounds are [0, 1]), the factor is drawn from
    ``[1, 1 + f)``: contrast only grows; give a pair, ``(f, f)``, for ``[1 - f, 1 + f)``.

    Example:
        >>> RandomContrast(0.3).factor
        (0, 0.3)
    """

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(factor, value_range, seed, **kwargs)
        if value_range[0] > value_range[1]:  # Keras clips every pixel to its first number
            raise ConfigError(f"RandomContrast: 'value_range' must be (low, high), low <= "
                              f"high. Got {value_range!r}.")

    def sample_values(self, n, generator, device) -> torch.Tensor:
        lower, upper = self.factor
        return _uniform(n, 1.0 - lower, 1.0 + upper, generator, device)

    def apply_values(self, images, values, scale: float = 1.0, offset: float = 0.0):
        factor = values.to(images.dtype).view(-1, *[1] * (images.dim() - 1))
        mean = images.mean(dim=-3, keepdim=True).mean(dim=-2, keepdim=True)
        return ((images - mean) * factor + mean).clamp(*self._bounds(scale, offset))
