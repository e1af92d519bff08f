"""RandomBrightness and RandomContrast as Keras 3 computes them: the same images for the same
draws, the draws from Keras's ranges (as Keras 3.15 reads ``factor``), the layers in the
order they come among the warping ones, and a Rescaling before them taken as Keras's."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from engine_observers import record_augmented_batches  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (8, 10, 10, 3)).astype("float32")


def trained_on(layers, x=X, monkeypatch=None) -> np.ndarray:
    """The batch the engine hands the model after ``layers`` augment it."""
    seen = record_augmented_batches(monkeypatch)
    model = reglab.Sequential([reglab.Input(x.shape[1:]), *layers, reglab.layers.Flatten(),
                               reglab.layers.Dense(2, activation="softmax")], seed=1)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, np.arange(len(x)) % 2, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return seen[0].reshape(x.shape).numpy()


def keras_s(layers, x=X) -> np.ndarray:
    images = x
    for layer in layers:
        images = layer(images, training=True)
    return np.asarray(images.cpu() if hasattr(images, "cpu") else images)


@pytest.mark.parametrize("value_range", [(0, 255), (20, 200)])
def test_the_same_draws_give_keras_s_images_bit_for_bit(value_range):
    deltas = RNG.uniform(-60, 60, len(X))
    factors = RNG.uniform(0.2, 1.8, len(X)).astype("float32")
    theirs = keras.layers.RandomBrightness(0.3, value_range=value_range)
    ours = reglab.layers.RandomBrightness(0.3, value_range=value_range)
    # (Keras's adds the delta in place: each call gets its own copy)
    want = theirs.transform_images(torch.tensor(X), {"rgb_delta": torch.from_numpy(
        deltas.reshape(-1, 1, 1, 1).astype("float32"))})
    got = ours.apply_values(torch.tensor(X), torch.from_numpy(deltas))
    np.testing.assert_array_equal(got.numpy(), np.asarray(want))
    theirs = keras.layers.RandomContrast(0.5, value_range=value_range)
    ours = reglab.layers.RandomContrast(0.5, value_range=value_range)
    want = theirs.transform_images(torch.tensor(X), {"contrast_factor": torch.from_numpy(
        factors.reshape(-1, 1, 1, 1))})
    got = ours.apply_values(torch.tensor(X), torch.from_numpy(factors.astype("float64")))
    np.testing.assert_array_equal(got.numpy(), np.asarray(want))


@pytest.mark.parametrize(("factor", "bounds"), [(0.3, (-0.3, 0.3)), ((0.1, -0.2), (-0.2, 0.1)),
                                                 ([0.5, 0.5], (0.5, 0.5)), (1, (-1, 1))])
def test_brightness_reads_factor_as_keras(factor, bounds):
    assert reglab.layers.RandomBrightness(factor).factor == \
        keras.layers.RandomBrightness(factor).factor == tuple(bounds)


@pytest.mark.parametrize("factor", [0.3, (0.2, 0.4), (0.0, 1.0), 1])
def test_contrast_reads_factor_as_keras_3_15(factor):
    """Keras 3.15 takes a single number f as (0, f): factors from [1, 1 + f)."""
    assert reglab.layers.RandomContrast(factor).factor == keras.layers.RandomContrast(factor).factor


@pytest.mark.parametrize(("layer", "bad", "keras_refuses"), [
    ("RandomBrightness", dict(factor=1.5), True),
    ("RandomBrightness", dict(factor=(2.0, 3.0)), True),
    ("RandomBrightness", dict(factor="0.2"), True),
    ("RandomContrast", dict(factor=-0.1), True),
    ("RandomContrast", dict(factor=(0.1, 0.2, 0.3)), True),
    ("RandomBrightness", dict(factor=0.1, value_range=(0, 1, 2)), True),
    # Keras takes these and fails later (or computes NaN): refused here at once
    ("RandomBrightness", dict(factor=float("nan")), False),
    ("RandomContrast", dict(factor=0.1, value_range="0-255"), False),
    ("RandomContrast", dict(factor=0.1, data_format="channels_first"), False),
])
def test_bad_arguments_are_refused_naming_the_layer(layer, bad, keras_refuses):
    with pytest.raises(reglab.errors.ConfigError, match=layer):
        getattr(reglab.layers, layer)(**bad)
    if keras_refuses:
        with pytest.raises((ValueError, TypeError)):
            getattr(keras.layers, layer)(**bad)


def test_a_fixed_brightness_in_fit_is_keras_s(monkeypatch):
    got = trained_on([reglab.layers.RandomBrightness((0.1, 0.1))], monkeypatch=monkeypatch)
    np.testing.assert_array_equal(got, keras_s([keras.layers.RandomBrightness((0.1, 0.1))]))
    np.testing.assert_array_equal(got, np.clip(X + np.float32(25.5), 0, 255))


def test_value_layers_come_in_their_place_among_the_warps(monkeypatch):
    """A brightness after a rotation changes the rotated image (its fill too), as Keras's."""
    def layers(api):
        L = api.layers
        return [L.RandomRotation((0.05, 0.05), fill_mode="constant"),
                L.RandomBrightness((0.2, 0.2)), L.RandomZoom((0.1, 0.1))]
    got = trained_on(layers(reglab), monkeypatch=monkeypatch)
    np.testing.assert_allclose(got, keras_s(layers(keras)), atol=2e-3)
    # the other order is another image: the fill stays 0 where the brightness came first
    first = trained_on([reglab.layers.RandomBrightness((0.2, 0.2)),
                        reglab.layers.RandomRotation((0.05, 0.05), fill_mode="constant")],
                       monkeypatch=monkeypatch)
    assert (first == 0).any() and not np.allclose(first, got)


def test_a_rescaling_before_is_taken_as_keras_computes_it(monkeypatch):
    def layers(api):
        L = api.layers
        return [L.Rescaling(1 / 255, offset=-0.5), L.RandomBrightness((0.3, 0.3),
                                                                      value_range=(-0.5, 0.5)),
                L.RandomContrast((0.0, 0.0), value_range=(-0.5, 0.5))]
    raw = trained_on(layers(reglab), monkeypatch=monkeypatch)  # before the model's Rescaling
    got = raw * np.float32(1 / 255) - np.float32(0.5)
    np.testing.assert_allclose(got, keras_s(layers(keras)), atol=1e-6)
    assert (got == 0.5).any()  # clipped at the top of the range, in the rescaled units


def test_the_draws_span_keras_s_ranges_per_image(monkeypatch):
    x = np.full((512, 4, 4, 1), 100.0, dtype="float32")
    bright = trained_on([reglab.layers.RandomBrightness((-0.1, 0.3))], x, monkeypatch)
    deltas = bright[:, 0, 0, 0] - 100
    assert (bright == bright[:, :1, :1, :1]).all()  # one delta per image
    assert -25.5 <= deltas.min() < -23 and 74 < deltas.max() < 76.5
    x[:, :2] = 50.0  # each image's mean is 75, its pixels 25 from it
    contrast = trained_on([reglab.layers.RandomContrast(0.4, value_range=(0, 1000))], x,
                          monkeypatch)
    factors = (contrast[:, 3, 0, 0] - 75) / 25
    assert 1 <= factors.min() < 1.01 and 1.39 < factors.max() < 1.4  # Keras 3.15: [1, 1.4)
    assert len(np.unique(np.round(factors, 5))) > 400  # one factor per image


def test_a_reversed_contrast_range_and_a_zero_rescaling_are_refused(monkeypatch):
    # Keras keeps (255, 0) as given and clips every pixel to 0 with it; Brightness sorts it
    with pytest.raises(reglab.errors.ConfigError, match="RandomContrast: 'value_range' must "
                                                        "be"):
        reglab.layers.RandomContrast(0.2, value_range=(255, 0))
    assert reglab.layers.RandomBrightness(0.2, value_range=(255, 0)).value_range == [0, 255]
    with pytest.raises(reglab.errors.ConfigError, match="RandomBrightness: the Rescaling "
                                                        "before it has scale 0"):
        trained_on([reglab.layers.Rescaling(0.0, offset=0.7),
                    reglab.layers.RandomBrightness(0.2, value_range=(0, 1))],
                   monkeypatch=monkeypatch)
