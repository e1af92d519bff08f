"""Keras 3's initializers beyond Glorot and He, against Keras's own draws (the same
formulas: spreads, bounds, orthogonality; the random streams differ) and their configs."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab import initializers  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RANDOM = [  # (name, arguments, the distribution's kind)
    ("normal", {}, "normal"), ("random_normal", {}, "normal"),
    ("truncated_normal", {}, "truncated"), ("lecun_normal", {}, "truncated"),
    ("lecun_uniform", {}, "uniform"), ("variance_scaling", {}, "truncated"),
    ("RandomNormal", dict(mean=0.3, stddev=0.2), "normal"),
    ("TruncatedNormal", dict(mean=-1.0, stddev=2.0), "truncated"),
    ("VarianceScaling", dict(scale=2.0, mode="fan_avg", distribution="uniform"), "uniform"),
    ("VarianceScaling", dict(scale=0.5, mode="fan_out", distribution="untruncated_normal"),
     "normal"),
    ("VarianceScaling", dict(scale=3.0, mode="fan_in", distribution="normal"), "truncated"),
]


def ours_and_theirs(name, arguments, shape):
    keras.utils.set_random_seed(1)
    if arguments:
        mine = getattr(initializers, name)(**arguments)
        reference = getattr(keras.initializers, name)(**arguments, seed=1)
    else:
        mine, reference = initializers.get(name), keras.initializers.get(name)
    drawn = mine(shape, torch.Generator().manual_seed(0), torch.float64).numpy()
    return drawn, np.asarray(keras.ops.convert_to_numpy(reference(shape)), dtype=np.float64)


@pytest.mark.parametrize(("name", "arguments", "kind"), RANDOM,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(RANDOM)])
@pytest.mark.parametrize("shape", [(300, 200), (3, 3, 24, 40)])
def test_random_initializers_draw_keras_s_distribution(name, arguments, kind, shape):
    drawn, reference = ours_and_theirs(name, arguments, shape)
    assert drawn.shape == reference.shape == shape
    spread, n = reference.std(), drawn.size
    # two samples' means and spreads agree within 5 of their standard errors
    assert drawn.mean() == pytest.approx(reference.mean(), abs=5 * spread * math.sqrt(2 / n))
    assert drawn.std() == pytest.approx(spread, rel=5 * math.sqrt(1 / n))
    # where the distribution is cut: a normal cut at two of its standard deviations has
    # 0.8796 of them; a uniform's limit is sqrt(3) of them (Keras's torch backend cuts by
    # redrawing 4 times, so a rare value of its escapes: its spread is the reference)
    reach = np.abs(drawn - drawn.mean()).max()
    if kind == "truncated":
        assert 0.95 * 2 * spread / 0.87962566 < reach <= 1.03 * 2 * spread / 0.87962566
    elif kind == "uniform":
        assert 0.98 * math.sqrt(3) * spread < reach <= 1.03 * math.sqrt(3) * spread
    else:
        assert reach > 3.2 * spread


@pytest.mark.parametrize("shape", [(40, 30), (30, 40), (3, 3, 8, 16)])
def test_orthogonal_gives_orthonormal_columns_or_rows_times_its_gain(shape):
    w = initializers.Orthogonal(gain=1.5)(shape, torch.Generator().manual_seed(2),
                                          torch.float64).reshape(-1, shape[-1])
    reference = keras.ops.convert_to_numpy(keras.initializers.Orthogonal(gain=1.5, seed=2)(
        shape)).reshape(-1, shape[-1])
    small = min(w.shape)
    product = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    reference_product = (reference.T @ reference if w.shape[0] >= w.shape[1]
                         else reference @ reference.T)
    np.testing.assert_allclose(product.numpy(), 2.25 * np.eye(small), atol=1e-10)
    np.testing.assert_allclose(reference_product, 2.25 * np.eye(small), atol=1e-4)


def test_constant_and_identity_are_keras_s():
    for mine, theirs, shape in [(initializers.Constant(0.7), keras.initializers.Constant(0.7),
                                 (4, 3)),
                                (initializers.Identity(gain=2.0),
                                 keras.initializers.Identity(gain=2.0), (4, 6)),
                                (initializers.get("identity"), keras.initializers.get("identity"),
                                 (5, 5))]:
        np.testing.assert_array_equal(mine(shape).numpy(),
                                      keras.ops.convert_to_numpy(theirs(shape)))
    with pytest.raises(ConfigError, match=r"Identity: the weight must have two axes"):
        initializers.Identity()((2, 2, 2))
    with pytest.raises(ConfigError, match=r"Orthogonal: the weight must have at least two axes"):
        initializers.Orthogonal()((5,))


@pytest.mark.parametrize("name", ["RandomNormal", "TruncatedNormal", "VarianceScaling",
                                  "LecunNormal", "LecunUniform", "Orthogonal", "Constant",
                                  "Identity"])
def test_configs_round_trip_with_keras(name):
    theirs = getattr(keras.initializers, name)()
    mine = initializers.get({"class_name": name, "config": theirs.get_config()})
    assert type(mine).__name__ == name
    again = getattr(keras.initializers, name).from_config(mine.get_config())
    assert {k: v for k, v in again.get_config().items() if k != "seed"} == \
        {k: v for k, v in theirs.get_config().items() if k != "seed"}


def test_a_model_with_the_new_initializers_builds_saves_and_loads(tmp_path):
    model = reglab.Sequential([
        reglab.layers.Dense(8, activation="selu", kernel_initializer="lecun_normal",
                            bias_initializer=reglab.initializers.Constant(0.1),
                            input_shape=(4,)),
        reglab.layers.Dense(3, kernel_initializer=reglab.initializers.Orthogonal(gain=0.5))])
    model.compile(optimizer="adam", loss="mse")
    kernel, bias = model.layers[0].get_weights()
    assert abs(kernel).max() <= 2 * math.sqrt(1 / 4) / 0.87962566103423978 + 1e-6
    np.testing.assert_array_equal(bias, np.full(8, 0.1, dtype="float32"))
    model.save(tmp_path / "model.keras")
    loaded = reglab.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.layers[1].kernel_initializer, reglab.initializers.Orthogonal)
    assert loaded.layers[1].kernel_initializer.gain == 0.5


@pytest.mark.parametrize(("build", "match"), [
    (lambda: initializers.RandomNormal(stddev="0.1"), r"RandomNormal: 'stddev' must be a finite"),
    (lambda: initializers.VarianceScaling(scale=0), r"'scale' must be a finite number > 0"),
    (lambda: initializers.VarianceScaling(mode="fan"), r"'mode' must be 'fan_in', 'fan_out'"),
    (lambda: initializers.VarianceScaling(distribution="cauchy"), r"'distribution' must be"),
    (lambda: initializers.LecunNormal(input_axes=[0]), r"'input_axes' and 'output_axes' are "
                                                       r"not supported yet"),
    (lambda: initializers.Constant(float("nan")), r"Constant: 'value' must be a finite number"),
])
def test_bad_initializer_arguments_are_refused_by_name(build, match):
    with pytest.raises(ConfigError, match=match):
        build()
