"""The checks of ``ImageDataGenerator``'s arguments, and what the supported ones translate to.

Kept apart from :mod:`reglab.preprocessing.image` so that the class reads as Keras's methods.
Every problem is a :class:`~reglab.errors.ConfigError` named ``ImageDataGenerator: ...``.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from reglab.augment import AffineSpec
from reglab.errors import ConfigError, unknown_name

WHERE = "ImageDataGenerator"
INTERPOLATIONS = {0: "nearest", 1: "bilinear"}  # Keras's interpolation_order is scipy's order

def not_supported(name: str, value, expected: str, fix: str) -> ConfigError:
    """``ImageDataGenerator: 'name' is not supported yet; it must be <expected>. Got ... <fix>``."""
    return ConfigError(
        f"{WHERE}: '{name}' is not supported yet; it must be {expected}. Got {value!r}. {fix}"
    )


def _as_tuple(value):
    return tuple(value.tolist()) if isinstance(value, np.ndarray) else value


def affine_spec_of(datagen) -> AffineSpec:
    """The geometric arguments as an :class:`~reglab.augment.AffineSpec`; its errors are renamed
    ``ImageDataGenerator: ...``."""
    try:
        return AffineSpec(
            rotation_range=datagen.rotation_range,
            width_shift_range=_as_tuple(datagen.width_shift_range),
            height_shift_range=_as_tuple(datagen.height_shift_range),
            shear_range=datagen.shear_range,
            zoom_range=_as_tuple(datagen.zoom_range),
            horizontal_flip=datagen.horizontal_flip,
            vertical_flip=datagen.vertical_flip,
            fill_mode=datagen.fill_mode,
            cval=datagen.cval,
            interpolation=datagen.interpolation,
        )
    except ConfigError as error:
        raise ConfigError(str(error).replace("AffineSpec:", f"{WHERE}:", 1)) from None


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_arguments(datagen) -> None:
    """Raises on the first bad argument of ``datagen``; warns, as Keras does, where
    ``*_std_normalization`` turns the matching ``*_center`` on."""
    _check_pixel_arguments(datagen)
    if datagen.data_format == "channels_first":
        raise not_supported(
            "data_format",
            datagen.data_format,
            "'channels_last' (or None)",
            "Move the channels last with x.transpose(0, 2, 3, 1).",
        )
    if datagen.data_format not in (None, "channels_last"):
        raise unknown_name(
            WHERE, "'data_format'", datagen.data_format, ("channels_first", "channels_last")
        )
    split = datagen.validation_split
    if not _is_number(split) or not 0 <= split < 1:
        raise ConfigError(
            f"{WHERE}: 'validation_split' must be a float in [0, 1) (0: no split). Got {split!r}."
        )
    order = datagen.interpolation_order
    if isinstance(order, bool) or order not in INTERPOLATIONS:
        raise ConfigError(
            f"{WHERE}: 'interpolation_order' must be 0 (nearest) or 1 (bilinear); higher orders "
            f"are not supported yet. Got {order!r}."
        )
    if datagen.rescale is not None and not _is_number(datagen.rescale):
        raise ConfigError(
            f"{WHERE}: 'rescale' must be a finite number or None. Got {datagen.rescale!r}."
        )
    try:
        floating = np.issubdtype(np.dtype(datagen.dtype or "float32"), np.floating)
    except TypeError:
        floating = False
    if not floating:
        raise ConfigError(
            f"{WHERE}: 'dtype' must be a floating-point dtype such as 'float32' (or None). "
            f"Got {datagen.dtype!r}."
        )
    affine_spec_of(datagen)
    if datagen.zca_whitening:  # Keras's overrides, with its warnings
        if not datagen.featurewise_center:
            datagen.featurewise_center = True
            warnings.warn("This ImageDataGenerator specifies `zca_whitening`, which overrides "
                          "setting of `featurewise_center`.", UserWarning, stacklevel=4)
        if datagen.featurewise_std_normalization:
            datagen.featurewise_std_normalization = False
            warnings.warn("This ImageDataGenerator specifies `zca_whitening` which overrides "
                          "setting of `featurewise_std_normalization`.", UserWarning,
                          stacklevel=4)
    for flag, implied in (
        ("featurewise_std_normalization", "featurewise_center"),
        ("samplewise_std_normalization", "samplewise_center"),
    ):
        if getattr(datagen, flag) and not getattr(datagen, implied):
            warnings.warn(
                f"This ImageDataGenerator specifies `{flag}`, which overrides setting of "
                f"`{implied}`.",
                UserWarning,
                stacklevel=4,  # check_arguments <- __init__ <- the caller
            )


def _check_pixel_arguments(datagen) -> None:
    """``brightness_range``, ``channel_shift_range``, ``preprocessing_function`` and
    ``zca_epsilon``: the types Keras's code reads them as."""
    brightness = datagen.brightness_range
    if brightness is not None and not (
        isinstance(brightness, (tuple, list)) and len(brightness) == 2
        and all(_is_number(b) for b in brightness)
    ):
        raise ConfigError(
            f"{WHERE}: 'brightness_range' must be None or a tuple or list of two floats "
            f"(the range of the brightness factor, 1: unchanged). Got {brightness!r}."
        )
    if not _is_number(datagen.channel_shift_range):
        raise ConfigError(
            f"{WHERE}: 'channel_shift_range' must be a finite float (0: no shift). Got "
            f"{datagen.channel_shift_range!r}."
        )
    function = datagen.preprocessing_function
    if function is not None and not callable(function):
        raise ConfigError(
            f"{WHERE}: 'preprocessing_function' must be None or a function of one image "
            f"(height, width, channels) that returns an array of that shape. Got {function!r}."
        )
    if not _is_number(datagen.zca_epsilon) or datagen.zca_epsilon < 0:
        raise ConfigError(
            f"{WHERE}: 'zca_epsilon' must be a finite float >= 0. Got {datagen.zca_epsilon!r}."
        )
