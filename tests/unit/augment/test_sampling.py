"""reglab.augment.sampling: ImageDataGenerator and Keras 3 layer parameters as transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from reglab.augment import (
    AffineSpec,
    affine_params_to_transforms,
    factor_range,
    random_affine,
    random_flip_transforms,
    random_rotation_transforms,
    random_translation_transforms,
    random_zoom_transforms,
    sample_affine_params,
    sample_transforms,
    warp,
)
from reglab.augment.sampling import sample_stacked_transforms
from reglab.errors import ConfigError

F64 = torch.float64


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-12) -> None:
    # numpy's check: torch.testing's first call costs a second of lazy imports.
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=0, atol=atol)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def keras_apply_transform(x: np.ndarray, p: dict, fill_mode: str, cval: float) -> np.ndarray:
    """ImageDataGenerator.apply_transform on one channels-last image, written out step by step
    from Keras's source (apply_affine_transform with row_axis=0, col_axis=1, then flip_axis)."""
    theta, shear = np.deg2rad(p["theta"]), np.deg2rad(p["shear"])
    m = None
    if p["theta"] != 0:
        m = np.array(
            [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
        )
    if p["tx"] != 0 or p["ty"] != 0:
        s = np.array([[1, 0, p["tx"]], [0, 1, p["ty"]], [0, 0, 1]])
        m = s if m is None else m @ s
    if p["shear"] != 0:
        s = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
        m = s if m is None else m @ s
    if p["zx"] != 1 or p["zy"] != 1:
        s = np.array([[p["zx"], 0, 0], [0, p["zy"], 0], [0, 0, 1]])
        m = s if m is None else m @ s
    if m is not None:
        h, w = x.shape[0], x.shape[1]
        ox, oy = h / 2 - 0.5, w / 2 - 0.5
        m = (
            np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]])
            @ m
            @ np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
        )
        m[:, [0, 1]] = m[:, [1, 0]]  # col_axis > row_axis: swap x and y
        m[[0, 1]] = m[[1, 0]]
        x = np.stack(
            [
                ndimage.affine_transform(
                    x[..., c], m[:2, :2], m[:2, 2], order=1, mode=fill_mode, cval=cval
                )
                for c in range(x.shape[-1])
            ],
            axis=-1,
        )
    if p["flip_horizontal"]:
        x = x[:, ::-1]
    if p["flip_vertical"]:
        x = x[::-1]
    return x


SPECS = [
    AffineSpec(rotation_range=40, fill_mode="nearest"),
    AffineSpec(width_shift_range=0.2, height_shift_range=3, fill_mode="constant", cval=0.25),
    AffineSpec(shear_range=30, zoom_range=(0.6, 1.4), horizontal_flip=True, fill_mode="reflect"),
    AffineSpec(
        rotation_range=25,
        width_shift_range=[-2, 0, 2],
        height_shift_range=0.1,
        shear_range=10,
        zoom_range=0.2,
        horizontal_flip=True,
        vertical_flip=True,
        fill_mode="wrap",
    ),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.fill_mode)
@pytest.mark.parametrize("size", [(9, 9), (6, 10)])
def test_random_affine_matches_image_data_generator_reference(spec, size):
    height, width = size
    images = torch.rand((8, height, width, 2), generator=gen(0), dtype=F64)
    params = sample_affine_params(spec, 8, height, width, gen(11))
    ours = random_affine(images, spec, gen(11))
    for i in range(8):
        p = {k: v[i].item() for k, v in params.items()}
        expected = keras_apply_transform(images[i].numpy(), p, spec.fill_mode, spec.cval)
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n", [1, 5, 37, 64, 100])
def test_stacked_transforms_give_each_generator_its_own_matrices_bit_for_bit(n):
    # rotation and shear: sines and cosines, whose vectorized loops round a tensor's last
    # elements (the scalar tail) differently from the others
    spec = AffineSpec(rotation_range=40, width_shift_range=0.2, height_shift_range=(1, 2, 3),
                      shear_range=25, zoom_range=0.3, horizontal_flip=True, vertical_flip=True)
    seeds = [3, 11, 7, 5]
    stacked = sample_stacked_transforms(spec, n, 28, 20, [gen(s) for s in seeds])
    assert stacked.shape == (len(seeds) * n, 3, 3) and stacked.dtype == F64
    for g, seed in enumerate(seeds):
        alone = sample_transforms(spec, n, 28, 20, gen(seed), dtype=F64)
        assert torch.equal(stacked[g * n:(g + 1) * n], alone), seed
        for other in (1, 2, 9):  # and the same numbers next to batches of other sizes
            mixed = sample_stacked_transforms(spec, other, 28, 20, [gen(1)])
            assert torch.equal(torch.cat([mixed, sample_stacked_transforms(
                spec, n, 28, 20, [gen(seed)])])[other:], alone)


@pytest.mark.parametrize("n", [1, 63, 65])
def test_transforms_take_parameters_that_broadcast(n):
    # one angle per image, the other parameters one number for all (or 0-d)
    theta = torch.linspace(-30, 30, n, dtype=F64)
    shared = {"tx": torch.tensor([2.0], dtype=F64), "ty": torch.tensor(-1.0, dtype=F64),
              "shear": torch.tensor([5.0], dtype=F64), "zx": torch.tensor([1.1], dtype=F64),
              "zy": torch.tensor(0.9, dtype=F64), "flip_horizontal": torch.tensor([True]),
              "flip_vertical": torch.tensor(False)}
    ours = affine_params_to_transforms({"theta": theta, **shared}, 28, 20)
    full = {key: value.reshape(-1).expand(n) for key, value in shared.items()}
    assert torch.equal(ours, affine_params_to_transforms({"theta": theta, **full}, 28, 20))
    one = affine_params_to_transforms({"theta": theta[0], **shared}, 28, 20)  # all 0-d or (1,)
    assert one.shape == (1, 3, 3) and torch.equal(one[0], ours[0])


def test_same_seed_same_transforms_and_different_seed_different():
    spec = SPECS[3]
    a = sample_transforms(spec, 16, 28, 28, gen(3))
    assert torch.equal(a, sample_transforms(spec, 16, 28, 28, gen(3)))
    assert not torch.allclose(a, sample_transforms(spec, 16, 28, 28, gen(4)))
    assert a.shape == (16, 3, 3) and a.dtype == torch.float32
    assert sample_transforms(spec, 2, 28, 28, gen(3), dtype=F64).dtype == F64


def test_draws_depend_only_on_n_so_members_sharing_a_seed_share_them():
    weak = sample_affine_params(AffineSpec(rotation_range=10), 32, 28, 28, gen(5))
    strong = sample_affine_params(AffineSpec(rotation_range=20, zoom_range=0.3), 32, 28, 28, gen(5))
    close(strong["theta"], 2 * weak["theta"])
    g1, g2 = gen(6), gen(6)
    sample_transforms(AffineSpec(), 10, 8, 8, g1)
    sample_transforms(SPECS[3], 10, 8, 8, g2)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_rotation_angles_stay_within_range():
    t = sample_transforms(AffineSpec(rotation_range=30), 2000, 28, 28, gen(7), dtype=F64)
    # Keras's matrix after the axis swap is [[cos, sin], [-sin, cos]].
    angles = torch.rad2deg(torch.atan2(t[:, 0, 1], t[:, 0, 0]))
    assert angles.abs().max() <= 30 + 1e-9
    assert angles.max() > 29 and angles.min() < -29


def test_shift_ranges_follow_keras_float_int_and_sequence_rules():
    p = sample_affine_params(
        AffineSpec(height_shift_range=0.25, width_shift_range=2.0), 2000, 20, 40, gen(8)
    )
    assert p["tx"].abs().max() <= 5 and p["tx"].abs().max() > 4.9  # fraction of the height
    assert p["ty"].abs().max() <= 2 and p["ty"].abs().max() > 1.9  # float >= 1: pixels
    p = sample_affine_params(
        AffineSpec(height_shift_range=3, width_shift_range=(0.1, 0.2)), 2000, 20, 40, gen(9)
    )
    assert set(p["tx"].tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}  # int k: choice(k) * sign
    assert set(np.round(p["ty"].numpy(), 9).tolist()) == {-8.0, -4.0, 4.0, 8.0}


def test_zoom_factors_are_independent_and_within_bounds():
    p = sample_affine_params(AffineSpec(zoom_range=0.2), 2000, 8, 8, gen(10))
    for z in (p["zx"], p["zy"]):
        assert z.min() >= 0.8 and z.max() <= 1.2
    assert abs(np.corrcoef(p["zx"].numpy(), p["zy"].numpy())[0, 1]) < 0.1
    assert AffineSpec(zoom_range=[0.5, 0.9]).zoom_bounds == (0.5, 0.9)


def test_flips_happen_about_half_the_time():
    p = sample_affine_params(
        AffineSpec(horizontal_flip=True, vertical_flip=True), 2000, 8, 8, gen(12)
    )
    for flips in (p["flip_horizontal"], p["flip_vertical"]):
        assert 900 < int(flips.sum()) < 1100
    assert not sample_affine_params(AffineSpec(), 50, 8, 8, gen(12))["flip_horizontal"].any()


def test_identity_spec_gives_identity_matrices_and_skips_the_warp():
    spec = AffineSpec(width_shift_range=[0], zoom_range=[1, 1])
    assert spec.is_identity and AffineSpec().is_identity
    assert not AffineSpec(vertical_flip=True).is_identity
    assert torch.equal(sample_transforms(spec, 5, 9, 7, gen(1)), torch.eye(3).expand(5, 3, 3))
    images = torch.rand(5, 9, 7, 1)
    assert random_affine(images, spec, gen(1)) is images


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"rotation_range": -5},
            "'rotation_range' must be a non-negative number of degrees. Got -5",
        ),
        ({"shear_range": "10"}, "'shear_range'"),
        ({"width_shift_range": -0.1}, "'width_shift_range' must be a non-negative"),
        ({"height_shift_range": []}, "'height_shift_range' given as a sequence"),
        ({"zoom_range": 1.5}, r"'zoom_range' must be a float in \[0, 1\]"),
        ({"zoom_range": (1.2, 0.8)}, "'zoom_range' given as a pair"),
        ({"zoom_range": (0.8, 1.0, 1.2)}, "'zoom_range' given as a pair"),
        ({"horizontal_flip": 1}, "'horizontal_flip' must be a bool"),
        ({"fill_mode": "reflection"}, "unknown 'fill_mode' 'reflection'.*Did you mean 'reflect'"),
        ({"cval": float("nan")}, "'cval'"),
    ],
)
def test_bad_affine_spec_raises_config_error_naming_the_argument(kwargs, pattern):
    with pytest.raises(ConfigError, match=f"AffineSpec: .*{pattern}"):
        AffineSpec(**kwargs)


# ---- Keras 3 layers ---------------------------------------------------------------------------


def test_factor_range_has_keras3_meaning_and_validates():
    assert factor_range(0.2, "factor") == (-0.2, 0.2)
    assert factor_range(-0.2, "factor") == (-0.2, 0.2)
    assert factor_range((0.3, -0.1), "factor") == (-0.1, 0.3)
    for bad in (1.5, (0.1, 0.2, 0.3), "0.1", (0.1, 2.0), True):
        with pytest.raises(ConfigError, match="'height_factor' must be a number or a"):
            factor_range(bad, "height_factor", "RandomZoom")
    # Keras's RandomZoom takes its numbers in (-1, 1] (-1: an image zoomed to nothing),
    # its RandomRotation and RandomTranslation in [-1, 1]
    from reglab.layers import RandomRotation, RandomTranslation, RandomZoom

    for bad in (-1.0, (-1.0, 0.2)):
        with pytest.raises(ConfigError, match=r"RandomZoom: 'height_factor' must be a number "
                                              r"or a \(lower, upper\) pair of numbers in "
                                              r"\(-1, 1\]"):
            RandomZoom(bad)
        with pytest.raises(ConfigError, match=r"RandomZoom: 'width_factor' .* in \(-1, 1\]"):
            RandomZoom(0.1, bad)
        RandomRotation(bad), RandomTranslation(bad, bad)
    RandomZoom(1.0), RandomZoom(-0.99)


def test_random_rotation_quarter_turn_is_counter_clockwise_and_ranges_hold():
    x = torch.arange(50, dtype=F64).reshape(2, 5, 5, 1) ** 1.5
    quarter = random_rotation_transforms((0.25, 0.25), 2, 5, 5, gen(0), dtype=F64)
    np.testing.assert_allclose(
        warp(x, quarter).numpy(), np.rot90(x.numpy(), 1, axes=(1, 2)), atol=1e-9
    )
    t = random_rotation_transforms((-0.1, 0.05), 2000, 12, 20, gen(1), dtype=F64)
    angles = torch.atan2(t[:, 0, 1], t[:, 0, 0]) / (2 * math.pi)
    assert angles.min() >= -0.1 - 1e-12 and angles.max() <= 0.05 + 1e-12
    assert angles.min() < -0.099 and angles.max() > 0.049
    centre = torch.tensor([5.5, 9.5, 1.0], dtype=F64)  # ((H - 1) / 2, (W - 1) / 2) stays fixed
    close(t @ centre, centre.expand(2000, 3))


def test_random_translation_positive_factors_move_content_down_and_right():
    x = torch.zeros((1, 6, 8, 1), dtype=F64)
    x[0, 1, 2] = 1.0
    t = random_translation_transforms((0.5, 0.5), (0.25, 0.25), 1, 6, 8, gen(0), dtype=F64)
    moved = warp(x, t, "grid-constant")
    assert moved[0, 4, 4, 0] == pytest.approx(1.0) and moved.sum() == pytest.approx(1.0)
    t = random_translation_transforms(0.2, 0.1, 2000, 10, 30, gen(1), dtype=F64)
    assert t[:, 0, 2].abs().max() <= 2 and t[:, 1, 2].abs().max() <= 3


def test_random_zoom_sign_and_aspect_ratio():
    t = random_zoom_transforms((0.2, 0.3), None, 500, 9, 11, gen(2), dtype=F64)
    assert torch.equal(t[:, 0, 0], t[:, 1, 1])  # width_factor=None keeps the aspect ratio
    assert t[:, 0, 0].min() >= 1.2 and t[:, 0, 0].max() <= 1.3  # positive: samples more, zooms out
    centre = torch.tensor([4.0, 5.0, 1.0], dtype=F64)
    close(t @ centre, centre.expand(500, 3))
    t = random_zoom_transforms(-0.5, (-0.3, -0.1), 500, 9, 11, gen(2), dtype=F64)
    assert t[:, 0, 0].min() >= 0.5 and t[:, 0, 0].max() <= 1.5
    assert t[:, 1, 1].min() >= 0.7 and t[:, 1, 1].max() <= 0.9  # negative: zooms in
    assert not torch.equal(t[:, 0, 0] - 1, (t[:, 1, 1] - 1) * 2.5)  # independent columns


def test_random_flip_modes_and_keras3_shared_draw():
    hv = random_flip_transforms("horizontal_and_vertical", 2000, 4, 6, gen(3), dtype=F64)
    flip_h, flip_v = hv[:, 1, 1] < 0, hv[:, 0, 0] < 0
    assert torch.equal(flip_h, flip_v)  # Keras 3: one draw decides both axes
    assert 900 < int(flip_h.sum()) < 1100
    indep = random_flip_transforms("horizontal_and_vertical", 2000, 4, 6, gen(3), independent=True)
    assert not torch.equal(indep[:, 1, 1] < 0, indep[:, 0, 0] < 0)
    horizontal = random_flip_transforms("horizontal", 2000, 4, 6, gen(3), dtype=F64)
    assert torch.equal(horizontal[:, 1, 1] < 0, flip_h) and not (horizontal[:, 0, 0] < 0).any()
    x = torch.rand((2000, 4, 6, 1), generator=gen(4), dtype=F64)
    expected = torch.where(flip_h[:, None, None, None], x.flip(2), x)
    close(warp(x, horizontal), expected)
    with pytest.raises(ConfigError, match="unknown 'mode' 'horizontal_vertical'.*Did you mean"):
        random_flip_transforms("horizontal_vertical", 2, 4, 6, gen(0))


def test_layer_samplers_are_deterministic_per_seed():
    for sampler in (
        lambda g: random_rotation_transforms(0.2, 8, 10, 12, g),
        lambda g: random_translation_transforms(0.1, 0.2, 8, 10, 12, g),
        lambda g: random_zoom_transforms(0.1, 0.2, 8, 10, 12, g),
        lambda g: random_flip_transforms("horizontal", 8, 10, 12, g),
    ):
        assert torch.equal(sampler(gen(9)), sampler(gen(9)))
    assert not torch.equal(
        random_rotation_transforms(0.2, 8, 10, 12, gen(9)),
        random_rotation_transforms(0.2, 8, 10, 12, gen(8)),
    )
    with pytest.raises(ConfigError, match="'height' and 'width' must be positive ints"):
        random_rotation_transforms(0.2, 8, 0, 12, gen(0))
