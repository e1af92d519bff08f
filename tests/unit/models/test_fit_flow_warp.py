"""``Model.fit`` on an ``ImageDataGenerator.flow`` standardizes the images once and warps each
batch itself; what it trains on must be what Keras's order (warp, then standardize) gives:
``interpolation_order`` honoured, ``cval`` filled as a raw pixel value, and the batches read
in Keras's order where no warp of standardized images can give the same."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import reglab
from engine_observers import record_augmented_batches
from reglab.augment import sample_transforms, warp
from reglab.models import fit_data
from reglab.preprocessing.image import ImageDataGenerator


def images(n=24, channels=1, seed=0):
    return np.round(np.random.default_rng(seed).uniform(0, 255, (n, 6, 6, channels))) \
        .astype("float32")


def trained_batches(datagen, x, monkeypatch):
    """The augmented batches ``fit`` trains on, as the engine hands them to the model."""
    seen = record_augmented_batches(monkeypatch)
    model = reglab.Sequential([reglab.Input(x.shape[1:]), reglab.layers.Flatten(),
                               reglab.layers.Dense(2, activation="softmax")], seed=1)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(datagen.flow(x, np.arange(len(x)) % 2, batch_size=8, seed=0), epochs=2,
              verbose=0)
    assert seen, "the engine warped no batch"
    return torch.cat([s.reshape(-1) for s in seen]).numpy()


def test_nearest_interpolation_and_a_raw_cval_reach_the_trained_batches(monkeypatch):
    x = images()
    datagen = ImageDataGenerator(rotation_range=90, width_shift_range=0.4, fill_mode="constant",
                                 cval=255.0, rescale=1 / 255, interpolation_order=0)
    values = trained_batches(datagen, x, monkeypatch)
    # nearest sampling: every pixel is one of the rescaled pixels, or cval rescaled (1.0) as
    # Keras fills it before standardizing (not 255 beside [0, 1] pixels); no blend
    allowed = np.unique(np.append(x * np.float32(1 / 255), np.float32(255) * np.float32(1 / 255)))
    assert np.isin(values, allowed).all()
    assert values.max() <= 1.0 and (values == np.float32(1.0)).mean() > 0.05


@pytest.mark.parametrize("interpolation_order", [0, 1])
@pytest.mark.parametrize("options", [
    dict(rescale=1 / 255),
    dict(featurewise_center=True, featurewise_std_normalization=True),
    dict(rescale=0.5, featurewise_center=True),
])
def test_the_engine_s_warp_of_standardized_images_is_keras_s_order(options,
                                                                 interpolation_order):
    x = images(6, 1, seed=2)
    datagen = ImageDataGenerator(rotation_range=40, zoom_range=0.3, fill_mode="constant",
                                 cval=17.0, interpolation_order=interpolation_order, **options)
    if options.get("featurewise_center"):
        datagen.fit(x)
    spec = datagen.standardized_warp(1)
    transforms = sample_transforms(spec, 6, 6, 6, torch.Generator().manual_seed(4))
    engine = warp(torch.from_numpy(datagen.standardize_array(x)), transforms, spec.fill_mode,
                  spec.cval, spec.interpolation).numpy()
    keras_order = datagen.standardize_array(
        warp(torch.from_numpy(x), transforms, "constant", 17.0,
             datagen.interpolation).numpy())
    np.testing.assert_allclose(engine, keras_order, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options, channels", [
    (dict(samplewise_center=True, rotation_range=10), 1),
    (dict(samplewise_std_normalization=True, width_shift_range=0.2), 1),
    (dict(featurewise_center=True, rotation_range=10, fill_mode="constant", cval=3.0), 3),
])
def test_without_such_a_warp_fit_reads_the_flow_s_batches_in_keras_order(options, channels):
    x = images(8, channels, seed=3)
    x[..., 0] += 40  # the channels' means differ
    with pytest.warns(UserWarning, match="samplewise_center") if \
            options.get("samplewise_std_normalization") else contextlib.nullcontext():
        datagen = ImageDataGenerator(**options)
    if options.get("featurewise_center"):
        datagen.fit(x)
    assert datagen.standardized_warp(channels) is None
    data = fit_data.resolve_inputs(datagen.flow(x, np.zeros(8), batch_size=4), None, None,
                                   None, None, None)
    assert data.generator is not None and data.augment is None


@pytest.mark.parametrize("options", [
    dict(samplewise_center=True),  # no warp: the orders agree
    dict(rotation_range=10, fill_mode="nearest", featurewise_center=True),
    dict(rotation_range=10, fill_mode="constant", cval=3.0, rescale=0.5),
])
def test_with_such_a_warp_fit_warps_standardized_tensors(options):
    x = images(8, 3, seed=5)
    datagen = ImageDataGenerator(**options)
    if options.get("featurewise_center"):
        datagen.fit(x)
    data = fit_data.resolve_inputs(datagen.flow(x, np.zeros(8), batch_size=4), None, None,
                                   None, None, None)
    assert data.generator is None and data.augment == datagen.standardized_warp(3)
    if options.get("cval"):
        assert data.augment.cval == pytest.approx(1.5)


@pytest.mark.parametrize("options", [
    dict(horizontal_flip=True, samplewise_center=True),
    dict(vertical_flip=True, featurewise_center=True, fill_mode="constant", cval=3.0),
])
def test_flips_alone_are_warped_by_the_engine_whatever_the_standardization(options):
    """A flip fills nothing and keeps each image's statistics: the engine's road, with the
    features Keras's order cannot resume (BackupAndRestore, the model's own streams)."""
    x = images(8, 3, seed=6)
    x[..., 0] += 40
    datagen = ImageDataGenerator(**options)
    if options.get("featurewise_center"):
        datagen.fit(x)
    data = fit_data.resolve_inputs(datagen.flow(x, np.zeros(8), batch_size=4), None, None,
                                   None, None, None)
    assert data.generator is None and data.augment is not None


def test_random_affine_honours_nearest_interpolation():
    from reglab.augment import AffineSpec, random_affine

    x = torch.from_numpy(images(4, 1, seed=7))
    spec = AffineSpec(rotation_range=30, zoom_range=0.2, interpolation="nearest")
    out = random_affine(x, spec, torch.Generator().manual_seed(0))
    assert np.isin(out.numpy(), x.numpy()).all()  # every pixel one of the images', no blend


def test_validation_split_with_a_flow_is_refused_as_keras_refuses_it():
    from reglab.errors import ConfigError

    x = images(8, 1, seed=8)
    model = reglab.Sequential([reglab.Input(x.shape[1:]), reglab.layers.Flatten(),
                               reglab.layers.Dense(2, activation="softmax")], seed=1)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    for datagen in (ImageDataGenerator(rotation_range=10),
                    ImageDataGenerator(rotation_range=10, samplewise_center=True)):
        with pytest.raises(ConfigError, match="'validation_split' needs arrays, not an "
                                              "ImageDataGenerator flow.*subset='validation'"):
            model.fit(datagen.flow(x, np.zeros(8), batch_size=4), validation_split=0.25,
                      verbose=0)
