"""Keras 3's gradient clipping (``clipnorm``, ``clipvalue``, ``global_clipnorm``), side by
side with Keras itself (torch backend) from the same weights, with regularizers whose
gradients are part of what is clipped; and each member of a population clipped as alone."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab.engine.clipping import clip_  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

CLIPPINGS = [("clipnorm", 0.05), ("global_clipnorm", 0.08), ("clipvalue", 0.004)]
OPTIMIZERS = ["SGD", "Adam", "AdamW", "RMSprop"]


def pair(optimizer: str, clipping: dict):
    def build(api):
        r = api.regularizers
        model = api.Sequential([
            api.Input((5,)),
            api.layers.Dense(6, activation="relu", kernel_regularizer=r.L2(0.05),
                             bias_regularizer=r.L1(0.02)),
            api.layers.Dense(3, activation="softmax", kernel_regularizer=r.L1L2(0.01, 0.03)),
        ])
        model.compile(optimizer=getattr(api.optimizers, optimizer)(learning_rate=0.05,
                                                                   **clipping),
                      loss="sparse_categorical_crossentropy")
        return model
    keras.utils.set_random_seed(5)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def batches(count=6, size=16):
    rng = np.random.default_rng(1)
    return [(rng.normal(size=(size, 5)).astype("float32") * 3, rng.integers(0, 3, size))
            for _ in range(count)]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(("kind", "threshold"), CLIPPINGS)
def test_clipped_training_is_keras_s_step_after_step(optimizer, kind, threshold):
    theirs, ours = pair(optimizer, {kind: threshold})
    unclipped = pair(optimizer, {})[1]
    for x, y in batches():
        np.testing.assert_allclose(ours.train_on_batch(x, y), theirs.train_on_batch(x, y),
                                   rtol=2e-5, atol=1e-6)
        unclipped.train_on_batch(x, y)
    # Adam turns round-off in a near-zero gradient into a step's worth: 2e-5 after 6 steps
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    # the thresholds are small enough that clipping changed the training
    assert max(np.abs(a - b).max() for a, b in zip(ours.get_weights(),
                                                     unclipped.get_weights())) > 1e-3


def test_fit_with_a_loss_scale_optimizer_clips_the_unscaled_gradients():
    theirs, ours = pair("Adam", {"global_clipnorm": 0.08})
    x = np.concatenate([b[0] for b in batches()])
    y = np.concatenate([b[1] for b in batches()])
    wrapped = reglab.optimizers.LossScaleOptimizer(ours.optimizer, initial_scale=2.0**10)
    ours.compile(optimizer=wrapped, loss="sparse_categorical_crossentropy")
    theirs.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    ours.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_clip_formulas_against_closed_forms_with_zero_and_non_finite_members():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.3, 0.4], [float("inf"), 1.0]])
    b = torch.tensor([[12.0], [0.0], [0.0], [0.0]])
    c = torch.tensor([1.0, 1.0, 1.0, 1.0])
    norm = [g.clone(), b.clone()]
    clip_("clipnorm", norm, c)
    np.testing.assert_allclose(norm[0][:3].numpy(), [[0.6, 0.8], [0, 0], [0.3, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(norm[1][:, 0].numpy(), [1.0, 0.0, 0.0, 0.0])
    assert torch.isnan(norm[0][3, 0]) and norm[0][3, 1] == 0  # inf * c / inf, 1 / inf
    whole = [g.clone(), b.clone()]
    clip_("global_clipnorm", whole, c)  # member 0: norm 13
    np.testing.assert_allclose(whole[0][0].numpy(), [3 / 13, 4 / 13], rtol=1e-6)
    np.testing.assert_allclose(whole[1][0].numpy(), [12 / 13], rtol=1e-6)
    np.testing.assert_allclose(whole[0][1:3].numpy(), [[0, 0], [0.3, 0.4]], rtol=1e-6)
    assert torch.isnan(whole[0][3]).all() and torch.isnan(whole[1][3]).all()
    value = [g.clone()]
    clip_("clipvalue", value, torch.tensor([3.5, 1.0, 0.35, 2.0]))
    np.testing.assert_allclose(value[0].numpy(), [[3, 3.5], [0, 0], [0.3, 0.35], [2, 1]])


@pytest.mark.parametrize(("arguments", "match"), [
    (dict(clipnorm=1.0, clipvalue=0.5), r"Adam: only one of 'clipnorm', 'clipvalue' and "
                                        r"'global_clipnorm' can be set"),
    (dict(clipnorm=0.0), r"Adam: 'clipnorm' must be a float in the range \(0.0, "
                         r"3.4028234663852886e\+38\]. Got 0.0"),
    (dict(global_clipnorm=float("nan")), r"'global_clipnorm' must be a float in the range"),
    (dict(clipvalue="1"), r"'clipvalue' must be a float in the range .*Got '1'"),
])
def test_bad_clipping_arguments_are_refused_by_name(arguments, match):
    with pytest.raises(ConfigError, match=match):
        reglab.optimizers.Adam(**arguments)


def test_clipping_round_trips_through_the_config_and_is_part_of_the_structure():
    opt = reglab.optimizers.SGD(0.1, momentum=0.9, clipnorm=2.0)
    again = reglab.optimizers.SGD.from_config(opt.get_config())
    assert again.clipnorm == 2.0 and again.clipping == "clipnorm"
    assert again.hyperparameters()["clipnorm"] == 2.0
    assert opt.structure() != reglab.optimizers.SGD(0.1, momentum=0.9).structure()
    assert opt.structure() == reglab.optimizers.SGD(0.3, momentum=0.9, clipnorm=5.0).structure()
    wrapped = reglab.optimizers.LossScaleOptimizer(opt)
    assert wrapped.clipping == "clipnorm"


def test_a_threshold_beyond_float32_is_refused():
    with pytest.raises(ConfigError, match=r"SGD: 'clipnorm' must be a float in the range "
                                          r"\(0.0, 3.4028234663852886e\+38\]. Got 1e\+39"):
        reglab.optimizers.SGD(clipnorm=1e39)
