"""Keras's initializers: the limits and spreads their formulas give, for each fan rule."""

from __future__ import annotations

import math

import pytest
import torch

from reglab import initializers


def draw(name, shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return initializers.get(name)(shape, generator, torch.float64)


@pytest.mark.parametrize("shape", [(200, 300), (3, 3, 16, 32)])
def test_glorot_uniform_fills_its_limit(shape):
    fan_in, fan_out = initializers.compute_fans(shape)
    limit = math.sqrt(6 / (fan_in + fan_out))
    w = draw("glorot_uniform", shape)
    assert float(w.abs().max()) <= limit
    assert float(w.abs().max()) > 0.99 * limit  # uniform over the whole range, not a part
    assert float(w.std()) == pytest.approx(limit / math.sqrt(3), rel=0.03)


@pytest.mark.parametrize("shape", [(200, 300), (3, 3, 16, 32)])
def test_he_uniform_fills_its_limit(shape):
    fan_in, _ = initializers.compute_fans(shape)
    limit = math.sqrt(6 / fan_in)
    w = draw("he_uniform", shape)
    assert limit * 0.99 < float(w.abs().max()) <= limit


@pytest.mark.parametrize("name,scale", [("glorot_normal", "avg"), ("he_normal", "in")])
def test_truncated_normals_have_keras_std_and_cut_at_two_sigma(name, scale):
    shape = (400, 300)
    fan_in, fan_out = initializers.compute_fans(shape)
    std = math.sqrt(2 / (fan_in + fan_out)) if scale == "avg" else math.sqrt(2 / fan_in)
    w = draw(name, shape)
    assert float(w.std()) == pytest.approx(std, rel=0.02)  # the truncation is corrected for
    cut = 2 * std / 0.87962566103423978
    assert float(w.abs().max()) <= cut and float(w.abs().max()) > 0.98 * cut


def test_fans_follow_keras():
    assert initializers.compute_fans((5, 7)) == (5, 7)
    assert initializers.compute_fans((3, 3, 4, 8)) == (36, 72)
    assert initializers.compute_fans((10,)) == (10, 10)
