"""Random affine parameters with Keras's meanings, returned as ``(n, 3, 3)`` transforms.

Two families, both in the convention of :mod:`reglab.augment.affine` (output pixel -> input pixel):

* :class:`AffineSpec` / :func:`sample_transforms`: ``ImageDataGenerator``'s arguments, matrix built
  as Keras's ``apply_affine_transform`` builds it (rotation @ shift @ shear @ zoom, centred, axes
  swapped), then the flips Keras applies to the warped array, fused into the same matrix.
* ``random_*_transforms``: the Keras 3 layers ``RandomFlip``, ``RandomRotation``,
  ``RandomTranslation`` and ``RandomZoom``. Those layers default to ``fill_mode='reflect'`` and
  ``interpolation='bilinear'``; map their fill modes for :func:`~reglab.augment.affine.warp` with
  :func:`keras3_fill_mode`.

Randomness: every sampler draws ONE block of float64 uniforms from the ``generator`` given, of a
shape that depends only on ``n`` (never on the values of the arguments), in a fixed column order.
Two calls with generators in the same state give identical transforms, and population members that
share a seed share their draws even when their strengths differ (common random numbers).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from reglab.augment.affine import (
    INTERPOLATIONS,
    affine_params_to_transforms,
    flip_matrix,
    rotation_matrix,
    shift_matrix,
    warp,
    zoom_matrix,
)
from reglab.errors import ConfigError, unknown_name

IMAGE_DATA_GENERATOR_FILL_MODES = ("constant", "nearest", "reflect", "wrap")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_shift(name: str, value):
    if isinstance(value, (list, tuple)):
        if not value or not all(_is_number(v) for v in value):
            raise ConfigError(
                f"AffineSpec: '{name}' given as a sequence must hold at least one finite number. "
                f"Got {value!r}."
            )
        return tuple(value)
    if not _is_number(value) or value < 0:
        raise ConfigError(
            f"AffineSpec: '{name}' must be a non-negative number (a fraction of the size if "
            f"< 1, else pixels) or a sequence of numbers. Got {value!r}."
        )
    return value


@dataclass(frozen=True)
class AffineSpec:
    """``ImageDataGenerator``'s geometric augmentation, with its argument names and defaults.

    Args:
        rotation_range: degrees; the angle is uniform in ``[-rotation_range, rotation_range]``.
        width_shift_range, height_shift_range: a float is a uniform range ``[-r, r]``, an int
            ``k`` picks from ``{0, ..., k-1}`` with a random sign, a sequence picks one of its
            values with a random sign; the result is a fraction of the width/height when the
            (largest) value is below 1, else pixels (Keras's rule, integers included).
        shear_range: degrees, uniform in ``[-shear_range, shear_range]`` (Keras converts with
            ``np.deg2rad``).
        zoom_range: ``z`` means ``[1 - z, 1 + z]``, or a ``(lower, upper)`` pair; ``zx`` and ``zy``
            are drawn independently; above 1 zooms out.
        horizontal_flip, vertical_flip: each applied with probability 1/2, after the warp.
        fill_mode: ``'constant'``, ``'nearest'``, ``'reflect'`` or ``'wrap'`` (scipy's meanings).
        cval: the fill value for ``'constant'``.
        interpolation: ``'bilinear'`` (default) or ``'nearest'``, the warp's sampling
            (ImageDataGenerator's ``interpolation_order`` 1 or 0).
        swap_xy: ``True`` (default) reproduces current Keras (keras-preprocessing >= 1.1.2,
            tf.keras 2.x, Keras 3's legacy ``ImageDataGenerator``), which permutes the axes of
            its matrix before calling scipy: ``height_shift_range`` then moves the image
            LEFT-RIGHT and ``width_shift_range`` UP-DOWN (keras-team/keras#17398), a positive
            angle turns the content counter-clockwise, and for non-square images the centre of
            rotation/zoom/shear is off by ``(width - height) / 2``. ``False`` uses the
            documented meanings (height shift moves rows), as keras-preprocessing <= 1.1.0 did.
            Not an ImageDataGenerator argument.

    Example:
        >>> spec = AffineSpec(rotation_range=15, width_shift_range=0.1, horizontal_flip=True)
        >>> sample_transforms(spec, 4, 28, 28, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3, 3])
    """

    rotation_range: float = 0.0
    width_shift_range: float | tuple[float, ...] = 0.0
    height_shift_range: float | tuple[float, ...] = 0.0
    shear_range: float = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: str = "nearest"
    cval: float = 0.0
    swap_xy: bool = True
    interpolation: str = "bilinear"

    def __post_init__(self):
        for name in ("rotation_range", "shear_range"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ConfigError(
                    f"AffineSpec: '{name}' must be a non-negative number of degrees. Got {value!r}."
                )
        for name in ("width_shift_range", "height_shift_range"):
            object.__setattr__(self, name, _check_shift(name, getattr(self, name)))
        zoom = self.zoom_range
        if isinstance(zoom, (list, tuple)):
            if (
                len(zoom) != 2
                or not all(_is_number(z) for z in zoom)
                or not 0 <= zoom[0] <= zoom[1]
            ):
                raise ConfigError(
                    "AffineSpec: 'zoom_range' given as a pair must be (lower, upper) with "
                    f"0 <= lower <= upper. Got {zoom!r}."
                )
            object.__setattr__(self, "zoom_range", tuple(zoom))
        elif not _is_number(zoom) or not 0 <= zoom <= 1:
            raise ConfigError(
                "AffineSpec: 'zoom_range' must be a float in [0, 1] (meaning [1 - z, 1 + z]) or a "
                f"(lower, upper) pair. Got {zoom!r}."
            )
        for name in ("horizontal_flip", "vertical_flip", "swap_xy"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"AffineSpec: '{name}' must be a bool. Got {getattr(self, name)!r}."
                )
        if self.fill_mode not in IMAGE_DATA_GENERATOR_FILL_MODES:
            raise unknown_name(
                "AffineSpec", "'fill_mode'", self.fill_mode, IMAGE_DATA_GENERATOR_FILL_MODES
            )
        if not _is_number(self.cval):
            raise ConfigError(f"AffineSpec: 'cval' must be a finite number. Got {self.cval!r}.")
        if self.interpolation not in INTERPOLATIONS:
            raise unknown_name("AffineSpec", "'interpolation'", self.interpolation,
                               INTERPOLATIONS)

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        """``(lower, upper)`` of the zoom factors, as Keras normalises ``zoom_range``."""
        if isinstance(self.zoom_range, tuple):
            return self.zoom_range
        return 1 - self.zoom_range, 1 + self.zoom_range

    @property
    def is_identity(self) -> bool:
        """True when every sampled transform is the identity (the warp can be skipped)."""
        return self.flips_only and not self.horizontal_flip and not self.vertical_flip

    @property
    def flips_only(self) -> bool:
        """True when the only random changes are flips (or none): each image is mirrored or
        kept, no pixel filled or interpolated, its pixels' values and statistics unchanged."""
        shifts = (self.width_shift_range, self.height_shift_range)
        no_shift = all(all(v == 0 for v in s) if isinstance(s, tuple) else s == 0 for s in shifts)
        return (
            self.rotation_range == 0
            and self.shear_range == 0
            and no_shift
            and self.zoom_bounds == (1, 1)
        )


def _uniforms(generator: torch.Generator | None, n: int, columns: int) -> torch.Tensor:
    device = generator.device if generator is not None else "cpu"
    return torch.rand(
        (n, columns), generator=generator, dtype=torch.float64, device=device
    )  # (n, k)


def _shift(value, u_value: torch.Tensor, u_sign: torch.Tensor, size: int) -> torch.Tensor:
    """Keras's ``get_random_transform`` rule for one shift range, from two uniform columns."""
    if isinstance(value, tuple) or isinstance(value, numbers.Integral):
        # np.random.choice(range) * np.random.choice([-1, 1]); choice(int k) picks in 0..k-1.
        choices = value if isinstance(value, tuple) else range(int(value))
        if len(choices) == 0:  # range 0: Keras skips the shift
            return torch.zeros_like(u_value)
        table = torch.tensor(
            [float(c) for c in choices], dtype=torch.float64, device=u_value.device
        )
        index = torch.clamp((u_value * len(table)).long(), max=len(table) - 1)
        shift = table[index] * torch.where(u_sign < 0.5, -1.0, 1.0)
        largest = max(choices)
    else:
        shift = (2 * u_value - 1) * value  # np.random.uniform(-value, value)
        largest = value
    return shift * size if largest < 1 else shift


def sample_affine_params(
    spec: AffineSpec, n: int, height: int, width: int, generator: torch.Generator | None
) -> dict[str, torch.Tensor]:
    """Draws ``ImageDataGenerator.get_random_transform``'s parameters for ``n`` images.

    Returns float64 ``(n,)`` tensors ``theta`` and ``shear`` (degrees), ``tx`` (the height-based
    shift, pixels), ``ty`` (width-based, pixels), ``zx``, ``zy`` and boolean ``flip_horizontal``,
    ``flip_vertical``. Uniform columns, always all drawn: theta, tx, tx sign, ty, ty sign, shear,
    zx, zy, horizontal flip, vertical flip.
    """
    return _affine_params(spec, _uniforms(generator, n, 10), height, width)


def _affine_params(spec: AffineSpec, uniforms: torch.Tensor, height: int, width: int
                   ) -> dict[str, torch.Tensor]:
    """:func:`sample_affine_params` from its ``(n, 10)`` uniforms."""
    u = uniforms.unbind(1)
    lower, upper = spec.zoom_bounds
    return {
        "theta": (2 * u[0] - 1) * spec.rotation_range,
        "tx": _shift(spec.height_shift_range, u[1], u[2], height),
        "ty": _shift(spec.width_shift_range, u[3], u[4], width),
        "shear": (2 * u[5] - 1) * spec.shear_range,
        "zx": lower + (upper - lower) * u[6],
        "zy": lower + (upper - lower) * u[7],
        "flip_horizontal": (u[8] < 0.5) & torch.tensor(spec.horizontal_flip, device=u[8].device),
        "flip_vertical": (u[9] < 0.5) & torch.tensor(spec.vertical_flip, device=u[9].device),
    }


def sample_transforms(
    spec: AffineSpec,
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``n`` random transforms with ``ImageDataGenerator``'s meanings, ``(n, 3, 3)``."""
    params = sample_affine_params(spec, n, height, width, generator)
    transforms = affine_params_to_transforms(params, height, width, swap_xy=spec.swap_xy)
    return transforms.to(dtype=dtype, device=device)


def sample_stacked_transforms(
    spec: AffineSpec,
    n: int,
    height: int,
    width: int,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """:func:`sample_transforms` (float64) for several generators in one pass: ``(G * n, 3, 3)``,
    rows ``g * n`` to ``(g + 1) * n`` drawn from ``generators[g]``, each the matrix a call with
    that generator alone gives (:func:`affine_params_to_transforms` keeps rows independent)."""
    uniforms = torch.cat([_uniforms(generator, n, 10) for generator in generators])
    params = _affine_params(spec, uniforms, height, width)
    return affine_params_to_transforms(params, height, width, swap_xy=spec.swap_xy)


def random_affine(
    images: torch.Tensor, spec: AffineSpec, generator: torch.Generator | None
) -> torch.Tensor:
    """Augments ``(N, H, W, C)`` images as ``ImageDataGenerator`` would, in one warp.

    Always draws its random numbers (so the generator advances the same way whatever the spec),
    and returns ``images`` itself when ``spec.is_identity``.
    """
    n, height, width, _ = images.shape
    transforms = sample_transforms(
        spec, n, height, width, generator, dtype=torch.float64, device=images.device
    )
    if spec.is_identity:
        return images
    return warp(
        images, transforms, fill_mode=spec.fill_mode, cval=spec.cval,
        interpolation=spec.interpolation,
    )


# ---- Keras 3 preprocessing layers -----------------------------------------------------------


def factor_range(factor, name: str, where: str = "factor_range",
                 lower_open: bool = False) -> tuple[float, float]:
    """Keras 3's ``_set_factor``: a number ``f`` in [-1, 1] means ``(-|f|, |f|)``; a pair is sorted.
    ``lower_open``: the numbers given in (-1, 1], as Keras's RandomZoom takes them (-1 zooms
    an image to nothing).

    Raises:
        ConfigError: naming ``name`` when ``factor`` is not a number or a pair in range.
    """
    values = tuple(factor) if isinstance(factor, (list, tuple)) else (factor,)
    if len(values) not in (1, 2) or not all(_is_number(v) and -1 <= v <= 1
                                            and not (lower_open and v == -1) for v in values):
        bounds = "(-1, 1]" if lower_open else "[-1, 1]"
        raise ConfigError(
            f"{where}: '{name}' must be a number or a (lower, upper) pair of numbers in "
            f"{bounds}. Got {factor!r}."
        )
    if len(values) == 1:
        return -abs(values[0]), abs(values[0])
    return tuple(sorted(values))


def _check_size(where: str, height: int, width: int) -> None:
    if not all(isinstance(s, numbers.Integral) and s > 0 for s in (height, width)):
        raise ConfigError(
            f"{where}: 'height' and 'width' must be positive ints. Got {(height, width)!r}."
        )


def random_flip_transforms(
    mode, n, height, width, generator, *, independent=False, dtype=torch.float32, device="cpu"
) -> torch.Tensor:
    """``keras.layers.RandomFlip(mode)``: each image flipped with probability 1/2 (uniform <= 0.5).

    Keras 3 draws ONE uniform per image and uses it for both axes, so ``'horizontal_and_vertical'``
    either flips both ways (a 180-degree turn) or not at all; ``independent=True`` draws the
    vertical flip from a second column instead (Keras 2's behaviour). Columns: first, second.
    """
    if mode not in FLIP_MODES:
        raise unknown_name("random_flip_transforms", "'mode'", mode, FLIP_MODES)
    _check_size("random_flip_transforms", height, width)
    u = _uniforms(generator, n, 2)
    flips = u <= 0.5  # (n, 2)
    flip_h = flips[:, 0] & (mode != "vertical")
    flip_v = flips[:, 1 if independent else 0] & (mode != "horizontal")
    return flip_matrix(flip_h, flip_v, height, width).to(dtype=dtype, device=device)


def random_rotation_transforms(
    factor, n, height, width, generator, *, dtype=torch.float32, device="cpu"
):
    """``keras.layers.RandomRotation(factor)``: angle uniform in ``factor * 2 pi`` (positive turns
    the content counter-clockwise), about the centre ``((H - 1) / 2, (W - 1) / 2)``."""
    lower, upper = factor_range(factor, "factor", "random_rotation_transforms")
    _check_size("random_rotation_transforms", height, width)
    angle = (lower + (upper - lower) * _uniforms(generator, n, 1)[:, 0]) * 2 * math.pi
    cy, cx = (height - 1) / 2, (width - 1) / 2
    # Keras: x_in = cos (x - cx) - sin (y - cy) + cx, y_in = sin (x - cx) + cos (y - cy) + cy,
    # which in (row, col) = (y, x) order is Keras's rotation matrix at -angle, about the centre.
    turn = shift_matrix(cy, cx) @ rotation_matrix(-angle) @ shift_matrix(-cy, -cx)
    return turn.to(dtype=dtype, device=device)


def random_translation_transforms(
    height_factor, width_factor, n, height, width, generator, *, dtype=torch.float32, device="cpu"
):
    """``keras.layers.RandomTranslation``: shifts of ``factor * size`` pixels, positive moving the
    content down / right. Columns: height, width."""
    h_lo, h_hi = factor_range(height_factor, "height_factor", "random_translation_transforms")
    w_lo, w_hi = factor_range(width_factor, "width_factor", "random_translation_transforms")
    _check_size("random_translation_transforms", height, width)
    u = _uniforms(generator, n, 2)
    dy = (h_lo + (h_hi - h_lo) * u[:, 0]) * height
    dx = (w_lo + (w_hi - w_lo) * u[:, 1]) * width
    return shift_matrix(-dy, -dx).to(dtype=dtype, device=device)


def random_zoom_transforms(
    height_factor, width_factor, n, height, width, generator, *, dtype=torch.float32, device="cpu"
):
    """``keras.layers.RandomZoom``: factors ``1 + f`` per axis; positive ``f`` zooms OUT, negative
    zooms in; ``width_factor=None`` reuses the height zoom (keeps the aspect ratio). The centre
    ``((H - 1) / 2, (W - 1) / 2)`` stays fixed. Columns: height, width (always both drawn)."""
    h_lo, h_hi = factor_range(height_factor, "height_factor", "random_zoom_transforms")
    _check_size("random_zoom_transforms", height, width)
    u = _uniforms(generator, n, 2)
    zy = 1 + h_lo + (h_hi - h_lo) * u[:, 0]
    if width_factor is None:
        zx = zy
    else:
        w_lo, w_hi = factor_range(width_factor, "width_factor", "random_zoom_transforms")
        zx = 1 + w_lo + (w_hi - w_lo) * u[:, 1]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    return (shift_matrix(cy * (1 - zy), cx * (1 - zx)) @ zoom_matrix(zy, zx)).to(
        dtype=dtype, device=device
    )
