"""reglab.augment.affine: the batched warp against scipy.ndimage, and exact known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from reglab.augment import (
    FILL_MODES,
    affine_params_to_transforms,
    center,
    flip_matrix,
    identity,
    keras3_fill_mode,
    rotation_matrix,
    shift_matrix,
    swap_axes,
    warp,
    zoom_matrix,
)
from reglab.errors import ConfigError

F64 = torch.float64


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-12) -> None:
    # numpy's check: torch.testing's first call costs a second of lazy imports.
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=0, atol=atol)


def _random_transforms(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Keras-style matrices with generic (non-integer) parameters, centred and axis-swapped."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand((n, 6), generator=g, dtype=F64)
    params = {
        "theta": (u[:, 0] - 0.5) * 120,
        "tx": (u[:, 1] - 0.5) * height * 0.6,
        "ty": (u[:, 2] - 0.5) * width * 0.6,
        "shear": (u[:, 3] - 0.5) * 40,
        "zx": 0.7 + 0.6 * u[:, 4],
        "zy": 0.7 + 0.6 * u[:, 5],
        "flip_horizontal": torch.arange(n) % 2 == 0,
        "flip_vertical": torch.arange(n) % 3 == 0,
    }
    return affine_params_to_transforms(params, height, width)


def _scipy_warp(images: torch.Tensor, transforms: torch.Tensor, mode: str, cval: float, order: int):
    x, m = images.double().numpy(), transforms.double().numpy()
    return np.stack(
        [
            np.stack(
                [
                    ndimage.affine_transform(
                        x[n, :, :, c], m[n, :2, :2], m[n, :2, 2], order=order, mode=mode, cval=cval
                    )
                    for c in range(x.shape[-1])
                ],
                axis=-1,
            )
            for n in range(x.shape[0])
        ]
    )


@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize(("interpolation", "order"), [("bilinear", 1), ("nearest", 0)])
def test_warp_matches_scipy_affine_transform(fill_mode, interpolation, order):
    images = torch.rand((6, 7, 9, 2), generator=torch.Generator().manual_seed(1), dtype=F64)
    transforms = _random_transforms(6, 7, 9)
    ours = warp(images, transforms, fill_mode=fill_mode, cval=0.3, interpolation=interpolation)
    expected = _scipy_warp(images, transforms, fill_mode, 0.3, order)
    # Generic sample points never land on a 'wrap' seam or a rounding tie, so the match is exact
    # up to float64 rounding in every mode, border included.
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
def test_warp_float32_matches_scipy_within_1e5(fill_mode):
    images = torch.rand((4, 12, 10, 3), generator=torch.Generator().manual_seed(2))
    transforms = _random_transforms(4, 12, 10, seed=3).float()
    ours = warp(images, transforms, fill_mode=fill_mode, cval=0.5)
    assert ours.dtype == torch.float32
    expected = _scipy_warp(images, transforms, fill_mode, 0.5, 1)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
@pytest.mark.parametrize("zoom", [1.0, 2.0, 0.5])
def test_nearest_sampling_rounds_half_pixel_ties_up_as_scipy(fill_mode, zoom):
    """Half-pixel shifts and zooms by 2 put sample points exactly on ties: scipy's order 0
    rounds them half up (ImageDataGenerator's interpolation_order=0); torch's nearest would
    round half to even and take every other column twice."""
    images = torch.rand((1, 9, 8, 1), generator=torch.Generator().manual_seed(5), dtype=F64)
    shifts = [0.5, -0.5, 1.5, -2.5, 7.5, -8.5, 10.5, 16.5]
    transforms = torch.tensor([[[zoom, 0.0, ty], [0.0, zoom, tx], [0.0, 0.0, 1.0]]
                               for ty in shifts for tx in shifts], dtype=F64)
    many = images.expand(len(transforms), -1, -1, -1)
    ours = warp(many, transforms, fill_mode=fill_mode, cval=-1.0, interpolation="nearest")
    expected = _scipy_warp(many, transforms, fill_mode, -1.0, 0)
    np.testing.assert_array_equal(ours.numpy(), expected)


def test_warp_on_integer_wrap_seams_follows_scipy():
    # Integer shifts put sample points exactly on multiples of scipy's wrap period (size - 1).
    images = torch.rand((3, 5, 6, 1), generator=torch.Generator().manual_seed(4), dtype=F64)
    transforms = shift_matrix(
        torch.tensor([4.0, -4.0, 9.0], dtype=F64), torch.tensor([-5.0, 5.0, 3.0])
    )
    ours = warp(images, transforms, fill_mode="wrap")
    np.testing.assert_allclose(
        ours.numpy(), _scipy_warp(images, transforms, "wrap", 0.0, 1), atol=1e-12
    )


def _asymmetric(n=2, size=5, channels=2) -> torch.Tensor:
    return (
        torch.arange(n * size * size * channels, dtype=F64).reshape(n, size, size, channels) ** 1.5
    )


def test_rotation_by_90_degrees_keras_direction_is_counter_clockwise():
    x = _asymmetric()
    theta = torch.full((2,), np.pi / 2, dtype=F64)
    keras = swap_axes(center(rotation_matrix(theta), 5, 5))  # what apply_affine_transform builds
    np.testing.assert_allclose(
        warp(x, keras).numpy(), np.rot90(x.numpy(), 1, axes=(1, 2)), atol=1e-9
    )
    plain = center(rotation_matrix(theta), 5, 5)  # the same matrix read in (row, col) order
    np.testing.assert_allclose(
        warp(x, plain).numpy(), np.rot90(x.numpy(), -1, axes=(1, 2)), atol=1e-9
    )


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_integer_shift_equals_roll_with_fill(interpolation):
    x = _asymmetric(size=6)
    transforms = shift_matrix(torch.tensor([2.0, -1.0], dtype=F64), torch.tensor([-3.0, 4.0]))
    for k, (dr, dc) in enumerate([(2, -3), (-1, 4)]):
        expected = np.full((6, 6, 2), -7.0)
        src = x[k].numpy()
        for r in range(6):
            for c in range(6):
                if 0 <= r + dr < 6 and 0 <= c + dc < 6:
                    expected[r, c] = src[r + dr, c + dc]
        out = warp(x, transforms, "constant", cval=-7.0, interpolation=interpolation)
        np.testing.assert_allclose(out[k].numpy(), expected, atol=1e-9)
        periodic = warp(x, transforms, "grid-wrap", interpolation=interpolation)
        np.testing.assert_allclose(
            periodic[k].numpy(), np.roll(src, (-dr, -dc), axis=(0, 1)), atol=1e-9
        )


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_flips_equal_np_flip(interpolation):
    x = torch.rand((3, 4, 7, 2), generator=torch.Generator().manual_seed(5), dtype=F64)
    flips = flip_matrix(torch.tensor([True, False, True]), torch.tensor([False, True, True]), 4, 7)
    out = warp(x, flips, interpolation=interpolation).numpy()
    np.testing.assert_allclose(out[0], np.flip(x[0].numpy(), axis=1), atol=1e-12)
    np.testing.assert_allclose(out[1], np.flip(x[1].numpy(), axis=0), atol=1e-12)
    np.testing.assert_allclose(out[2], np.flip(x[2].numpy(), axis=(0, 1)), atol=1e-12)


def test_zoom_one_and_identity_leave_images_unchanged():
    x = torch.rand((2, 5, 6, 3), generator=torch.Generator().manual_seed(6))
    close(warp(x, identity(2)), x, atol=1e-6)
    zoom = center(zoom_matrix(torch.ones(2, dtype=F64), torch.ones(2, dtype=F64)), 5, 6)
    close(warp(x, zoom, "reflect"), x, atol=1e-6)
    assert identity(3, F64).shape == (3, 3, 3) and identity(3, F64).dtype == F64


def test_composition_is_one_matrix_product():
    x = _asymmetric(n=1, size=6)
    first = flip_matrix(torch.tensor([True]), torch.tensor([False]), 6, 6)  # applied first
    then = shift_matrix(torch.tensor([1.0], dtype=F64), torch.tensor([2.0], dtype=F64))
    two_warps = warp(warp(x, first, "grid-wrap"), then, "grid-wrap")
    np.testing.assert_allclose(
        warp(x, first @ then, "grid-wrap").numpy(), two_warps.numpy(), atol=1e-12
    )


def test_batch_warp_equals_one_image_at_a_time():
    x = torch.rand((5, 8, 8, 3), generator=torch.Generator().manual_seed(7))
    transforms = _random_transforms(5, 8, 8, seed=8).float()
    batch = warp(x, transforms, "reflect")
    alone = torch.cat([warp(x[i : i + 1], transforms[i : i + 1], "reflect") for i in range(5)])
    close(batch, alone, atol=1e-6)


def test_keras3_fill_mode_names():
    assert [keras3_fill_mode(m) for m in ("reflect", "nearest", "constant", "wrap")] == [
        "reflect",
        "nearest",
        "grid-constant",
        "grid-wrap",
    ]
    with pytest.raises(ConfigError, match="'fill_mode'"):
        keras3_fill_mode("mirror")


def test_bad_arguments_raise_config_error_naming_them():
    x, t = torch.zeros((2, 4, 4, 1)), identity(2)
    with pytest.raises(
        ConfigError, match=r"warp: unknown 'fill_mode' 'reflection'.*Did you mean 'reflect'\?"
    ):
        warp(x, t, fill_mode="reflection")
    with pytest.raises(ConfigError, match="'interpolation'.*bilinear, nearest"):
        warp(x, t, interpolation="bicubic")
    with pytest.raises(ConfigError, match=r"'transforms' must have shape \(2, 3, 3\)"):
        warp(x, identity(3))
    with pytest.raises(ConfigError, match="'images' must be a floating-point"):
        warp(torch.zeros((2, 4, 4, 1), dtype=torch.int64), t)
