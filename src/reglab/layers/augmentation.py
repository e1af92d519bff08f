"""Keras 3's augmentation layers: RandomFlip, RandomRotation, RandomTranslation, RandomZoom.

Active in training only. They must lead the model (right after the input):
the engine samples one transform per image from each member's seed stream and
fuses consecutive layers into one warp per batch (see
:mod:`reglab.engine.augmentation`). Their arguments are structural: members
of one population share them, so members that share a seed see the same images.
Defaults follow Keras 3: ``fill_mode='reflect'``, ``interpolation='bilinear'``.
"""

from __future__ import annotations

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
from reglab.layers.layer import Layer

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
        return (type(self).__name__, tuple(sorted(
            (k, str(v)) for k, v in self.get_config().items() if k not in ("name", "seed"))))

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.keras_fill_mode,
                "interpolation": self.interpolation, "seed": self.seed,
                "fill_value": self.fill_value}


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
