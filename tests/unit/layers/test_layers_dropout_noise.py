"""reglab.layers.regularization inside the engine: masks per member, scaling, statistics.

The layer is followed by a Dense layer whose kernel is the identity and whose bias is
zero, so the population's output is the layer's output exactly. Training-mode passes go
through ``reglab.engine.step.forward`` with the random streams the engine itself uses
during ``fit`` (``Population._random_factory``), so masks are drawn as in training.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.engine.epoch import SeedLayout
from reglab.engine.step import forward
from reglab.layers import Dense, Dropout, GaussianDropout, GaussianNoise, SpatialDropout2D
from reglab.layers.core import Flatten

F64 = torch.float64
FEATURES = 50
BATCH = 400


def identity(shape, generator=None, dtype=torch.float32):
    return torch.eye(shape[0], dtype=dtype)


def population(make_layer, settings, input_shape=(FEATURES,)):
    """One member per (seed, value); ``make_layer(value, input_shape=...)`` is under test."""
    members = []
    for seed, value in settings:
        layers = [make_layer(value, input_shape=input_shape)]
        if len(input_shape) > 1:
            layers.append(Flatten())
        layers.append(Dense(math.prod(input_shape), kernel_initializer=identity))
        members.append(Member(layers, optimizer="sgd", seed=seed))
    return Population(members, loss="mse", metrics=(), dtype=F64)


def run(pop, x, training=True):
    groups = sorted({(pop.state.plan.seeds[m], pop.state.epochs(m))
                     for m in pop.state.member_ids})
    layout = SeedLayout(pop, {group: row for row, group in enumerate(groups)})
    random_for = layout.random_for if training else None
    with torch.no_grad():
        out, _ = forward(pop.state, x, training, random_for)
    return out  # (P, B, F)


def ones(shape=(BATCH, FEATURES)):
    return torch.ones(shape, dtype=F64)


def test_identity_setup_is_exact():
    pop = population(Dropout, [(0, 0.5)])
    x = torch.rand(BATCH, FEATURES, dtype=F64)
    np.testing.assert_array_equal(run(pop, x, training=False)[0].numpy(), x.numpy())


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_keeps_one_minus_rate_and_scales_by_its_inverse(rate):
    pop = population(Dropout, [(0, rate), (1, rate)])
    x = torch.rand(BATCH, FEATURES, dtype=F64) + 0.5  # no zero inputs
    out = run(pop, x)
    n = BATCH * FEATURES
    for p in range(2):
        kept = out[p] != 0
        fraction = float(kept.double().mean())
        assert abs(fraction - (1 - rate)) < 5 * math.sqrt(rate * (1 - rate) / n)
        np.testing.assert_allclose(out[p][kept].numpy(), (x[kept] / (1 - rate)).numpy(),
                                   rtol=1e-15)


def test_dropout_masks_are_independent_across_seeds_and_equal_within_a_seed():
    pop = population(Dropout, [(0, 0.5), (1, 0.5), (0, 0.5), (2, 0.3)])
    masks = run(pop, ones()) != 0
    assert torch.equal(masks[0], masks[2])  # same seed, same rate: the same mask
    for a, b in [(0, 1), (0, 3), (1, 3)]:
        agree = float((masks[a] == masks[b]).double().mean())
        # independent masks with keep probabilities q, r agree with probability qr + (1-q)(1-r)
        q, r = (0.5, 0.5) if b != 3 else (0.5, 0.7)
        assert abs(agree - (q * r + (1 - q) * (1 - r))) < 0.03, (a, b, agree)


def test_same_seed_different_rates_share_the_underlying_uniforms():
    """A higher rate drops a superset of what a lower rate drops (common random numbers)."""
    pop = population(Dropout, [(7, 0.2), (7, 0.5)])
    kept = run(pop, ones()) != 0
    assert bool((kept[1] <= kept[0]).all())
    assert int(kept[0].sum()) > int(kept[1].sum())


def test_a_member_draws_the_same_mask_alone_and_in_a_population():
    x = ones()
    alone = run(population(Dropout, [(3, 0.4)]), x)[0]
    together = run(population(Dropout, [(5, 0.1), (3, 0.4), (6, 0.7)]), x)[1]
    assert torch.equal(alone, together)


def test_consecutive_batches_draw_new_masks():
    pop = population(Dropout, [(0, 0.5)])
    first, second = run(pop, ones()), run(pop, ones())
    assert not torch.equal(first, second)


@pytest.mark.parametrize("layer", [Dropout, GaussianNoise, GaussianDropout])
def test_inactive_in_inference(layer):
    pop = population(layer, [(0, 0.5), (1, 0.3)])
    x = torch.rand(BATCH, FEATURES, dtype=F64)
    out = run(pop, x, training=False)
    for p in range(2):
        np.testing.assert_array_equal(out[p].numpy(), x.numpy())
    predicted = pop.predict(x.numpy())
    np.testing.assert_array_equal(predicted[1], x.numpy())


def test_dropout_noise_shape_shares_the_mask_along_none_axes():
    pop = population(lambda r, **kw: Dropout(r, noise_shape=(None, 1), **kw), [(0, 0.5), (1, 0.5)])
    out = run(pop, ones())
    for p in range(2):
        rows = out[p]
        assert bool(((rows == 0).all(dim=1) | (rows == 2.0).all(dim=1)).all())
        assert 0.35 < float((rows[:, 0] == 0).double().mean()) < 0.65


def test_spatial_dropout_drops_whole_feature_maps():
    pop = population(SpatialDropout2D, [(0, 0.5), (1, 0.25)], input_shape=(4, 3, 20))
    out = run(pop, ones((BATCH, 4, 3, 20))).view(2, BATCH, 4, 3, 20)
    for p, rate in enumerate((0.5, 0.25)):
        maps = out[p]
        per_map = maps.view(BATCH, 12, 20)
        constant = (per_map == per_map[:, :1]).all(dim=1)
        assert bool(constant.all())
        assert set(torch.unique(maps).tolist()) <= {0.0, 1 / (1 - rate)}
        dropped = float((per_map[:, 0] == 0).double().mean())
        assert abs(dropped - rate) < 5 * math.sqrt(rate * (1 - rate) / (BATCH * 20))


def test_gaussian_noise_statistics_per_member():
    stddevs = (0.1, 0.5, 2.0)
    pop = population(GaussianNoise, list(zip((0, 1, 2), stddevs)))
    x = torch.rand(BATCH, FEATURES, dtype=F64)
    noise = run(pop, x) - x
    n = BATCH * FEATURES
    for p, s in enumerate(stddevs):
        assert abs(float(noise[p].mean())) < 5 * s / math.sqrt(n)
        assert abs(float(noise[p].std()) / s - 1) < 5 / math.sqrt(2 * n)
    # Independent across members: the standardized noises are uncorrelated.
    z = (noise / torch.tensor(stddevs, dtype=F64).view(3, 1, 1)).reshape(3, -1)
    assert abs(float(torch.corrcoef(z)[0, 1])) < 5 / math.sqrt(n)


def test_gaussian_noise_same_seed_scales_the_same_normals():
    pop = population(GaussianNoise, [(4, 0.2), (4, 0.6)])
    x = torch.rand(BATCH, FEATURES, dtype=F64)
    noise = run(pop, x) - x
    np.testing.assert_allclose((noise[1] / 0.6).numpy(), (noise[0] / 0.2).numpy(), rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_gaussian_dropout_statistics(rate):
    pop = population(GaussianDropout, [(0, rate), (1, rate)])
    out = run(pop, ones())
    n = BATCH * FEATURES
    std = math.sqrt(rate / (1 - rate))
    for p in range(2):
        assert abs(float(out[p].mean()) - 1.0) < 5 * std / math.sqrt(n)
        assert abs(float(out[p].std()) / std - 1) < 5 / math.sqrt(2 * n)
    assert not torch.equal(out[0], out[1])


# -- AlphaDropout, SpatialDropout1D ------------------------------------------------------
def test_alpha_dropout_sets_dropped_units_to_selu_s_saturation_then_rescales():
    from reglab.layers import AlphaDropout
    from reglab.layers.regularization import SELU_ALPHA, SELU_SCALE

    rates = [0.1, 0.4, 0.0]
    pop = population(AlphaDropout, [(0, r) for r in rates])
    x = torch.randn(BATCH, FEATURES, dtype=F64, generator=torch.Generator().manual_seed(0))
    out = run(pop, x)
    saturation = -SELU_ALPHA * SELU_SCALE
    for p, rate in enumerate(rates):
        a = ((1 - rate) * (1 + rate * saturation ** 2)) ** -0.5
        b = -a * saturation * rate
        kept = torch.isclose(out[p], a * x + b, rtol=0, atol=1e-12)
        dropped = torch.isclose(out[p], torch.full_like(x, a * saturation + b), rtol=0,
                                atol=1e-12)
        assert bool((kept | dropped).all())  # each unit is one of the two, Keras's formula
        assert float(dropped.double().mean()) == pytest.approx(rate, abs=0.01)
        if rate:  # SELU's self-normalization kept: mean 0, variance 1 for standard inputs
            assert float(out[p].mean()) == pytest.approx(0.0, abs=0.02)
            assert float(out[p].var()) == pytest.approx(1.0, abs=0.03)
    torch.testing.assert_close(run(pop, x, training=False), x.expand(3, *x.shape))


def test_spatial_dropout_1d_drops_whole_channels_of_a_sequence():
    from reglab.layers import SpatialDropout1D

    steps, channels = 5, 10
    pop = population(SpatialDropout1D, [(0, 0.3), (1, 0.6)], input_shape=(steps, channels))
    out = run(pop, ones((BATCH, steps, channels))).reshape(2, BATCH, steps, channels)
    for p, rate in enumerate([0.3, 0.6]):
        values = set(np.round(out[p].unique().numpy(), 12).tolist())
        assert values <= {0.0, round(1 / (1 - rate), 12)}
        # a channel is dropped at every step of a sample or at none
        zero = out[p] == 0
        assert bool((zero.all(dim=1) | ~zero.any(dim=1)).all())
        assert float(zero[:, 0].double().mean()) == pytest.approx(rate, abs=0.03)
