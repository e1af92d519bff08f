"""MixUp and CutMix against references written here from the papers' definitions.

mixup (Zhang et al. 2018): ``x = lam * x_i + (1 - lam) * x_j``, the same for the one-hot
labels, ``lam ~ Beta(alpha, alpha)``. CutMix (Yun et al. 2019, the authors' ``rand_bbox``):
a box of sides ``W * sqrt(1 - lam)``, ``H * sqrt(1 - lam)`` (truncated) around a uniform
centre, clipped to the image, filled from the partner; labels mixed by the box's actual
area. Both with one draw per sample, as Keras 3 draws them, in the order reglab documents
(partners, weights, then centres), from the generator keyed by the member's seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.engine.rng import derive_seed
from reglab.layers import CutMix, Dense, Flatten, LabelSmoothing, MixUp

N, H, W, C, K = 12, 6, 5, 2, 3


def batch():
    rng = np.random.default_rng(42)
    return rng.random((N, H, W, C)).astype(np.float64), rng.integers(0, K, N)


def seen_batch(layers, seed, epochs=1):
    """The (x, y) the model's first ordinary layer and the loss see, per epoch, when one
    member trains on ``batch()`` as a single batch."""
    x, y = batch()
    member = Member([*layers, Flatten(), Dense(K, activation="softmax")], "sgd", seed=seed,
                    input_shape=(H, W, C))
    population = Population([member], dtype=torch.float64)
    flatten = population.plan.layers[len(layers)].layer
    loss = population.loss
    seen_x, seen_y = [], []
    forward, per_sample = flatten.forward, loss.per_sample

    def capture_x(xb, weights, values, ctx, shape):
        if ctx.training:
            seen_x.append(xb.detach().clone())
        return forward(xb, weights, values, ctx, shape)

    def capture_y(y_true, y_pred):
        seen_y.append(y_true.detach().clone())
        return per_sample(y_true, y_pred)

    flatten.forward, loss.per_sample = capture_x, capture_y
    population.fit(x, y, batch_size=N, epochs=epochs, shuffle=False)
    return [t.reshape(N, H, W, C).numpy() for t in seen_x], [t.reshape(N, K).numpy()
                                                            for t in seen_y]


def generator(seed, layer, epoch=0):
    return np.random.default_rng(derive_seed(seed, f"transform/{layer}/epoch{epoch}"))


def reference_mixup(x, labels, alpha, rng):
    perm = rng.permutation(len(x))
    lam = rng.beta(alpha, alpha, size=len(x))
    onehot = np.eye(K)[labels]
    mixed_x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[perm]
    return mixed_x, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[perm]


def reference_cutmix(x, labels, beta, rng):
    perm = rng.permutation(len(x))
    lam = rng.beta(beta, beta, size=len(x))
    cx, cy = rng.integers(0, W, size=len(x)), rng.integers(0, H, size=len(x))
    out, onehot = x.copy(), np.eye(K)[labels]
    mixed_labels = np.empty_like(onehot)
    for i in range(len(x)):  # rand_bbox, sample by sample
        cut_rat = np.sqrt(1.0 - lam[i])
        cut_w, cut_h = int(W * cut_rat), int(H * cut_rat)
        bbx1, bbx2 = np.clip(cx[i] - cut_w // 2, 0, W), np.clip(cx[i] + cut_w // 2, 0, W)
        bby1, bby2 = np.clip(cy[i] - cut_h // 2, 0, H), np.clip(cy[i] + cut_h // 2, 0, H)
        out[i, bby1:bby2, bbx1:bbx2, :] = x[perm[i], bby1:bby2, bbx1:bbx2, :]
        share = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (W * H))
        mixed_labels[i] = share * onehot[i] + (1 - share) * onehot[perm[i]]
    return out, mixed_labels


@pytest.mark.parametrize("alpha,seed", [(0.2, 0), (1.0, 3)])
def test_mixup_draws_the_papers_mixture(alpha, seed):
    (x_seen,), (y_seen,) = seen_batch([MixUp(alpha)], seed)
    x, labels = batch()
    x_ref, y_ref = reference_mixup(x, labels, alpha, generator(seed, "mix_up"))
    np.testing.assert_allclose(x_seen, x_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y_seen, y_ref, rtol=1e-12, atol=1e-14)
    assert not np.allclose(x_seen, x)  # it mixed


@pytest.mark.parametrize("factor,seed", [(1.0, 0), (0.5, 7)])
def test_cutmix_draws_the_papers_boxes(factor, seed):
    (x_seen,), (y_seen,) = seen_batch([CutMix(factor)], seed)
    x, labels = batch()
    x_ref, y_ref = reference_cutmix(x, labels, factor, generator(seed, "cut_mix"))
    np.testing.assert_array_equal(x_seen, x_ref)
    np.testing.assert_allclose(y_seen, y_ref, rtol=1e-12, atol=1e-14)
    assert (x_seen != x).any()


def test_zero_strengths_and_smoothing():
    x, labels = batch()
    (x_seen,), (y_seen,) = seen_batch([MixUp(0.0), CutMix(0.0), LabelSmoothing(0.3)], 0)
    np.testing.assert_array_equal(x_seen, x)
    np.testing.assert_allclose(y_seen, np.eye(K)[labels] * 0.7 + 0.1, rtol=1e-12)


def test_draws_change_with_the_epoch_and_the_seed():
    xs, _ = seen_batch([MixUp(0.5)], 0, epochs=2)
    assert not np.allclose(xs[0], xs[1])
    (other,), _ = seen_batch([MixUp(0.5)], 1)
    assert not np.allclose(xs[0], other)


def test_a_sigmoid_output_smooths_towards_one_half():
    smoothing = LabelSmoothing(0.2)
    _, y = smoothing.transform(torch.zeros(2, 1), torch.tensor([[1.0], [0.0]]), 0.2, None)
    np.testing.assert_allclose(y.numpy(), [[0.9], [0.1]])


def test_cutmix_needs_images():
    with pytest.raises(Exception, match="CutMix: expects images"):
        Population([Member([CutMix(), Dense(2)], seed=0, input_shape=(8,))])


def test_mixing_layers_work_behind_an_image_data_generator_flow():
    """ImageDataGenerator(...).flow(...) augments; the model's MixUp then mixes each batch
    (and its labels), as in a Keras pipeline of augmentation followed by MixUp."""
    from reglab.models import Sequential
    from reglab.preprocessing.image import ImageDataGenerator

    x, labels = batch()
    x = x[..., :1]  # one channel, as Keras's ImageDataGenerator expects 1, 3 or 4
    model = Sequential([MixUp(0.5, input_shape=(H, W, 1)), Flatten(),
                        Dense(K, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    seen = []
    loss = model._build().loss
    per_sample = loss.per_sample

    def capture(y_true, y_pred):
        seen.append(y_true.detach().clone())
        return per_sample(y_true, y_pred)

    loss.per_sample = capture
    flow = ImageDataGenerator(horizontal_flip=True).flow(x.astype("float32"), labels,
                                                        batch_size=6, seed=0)
    history = model.fit(flow, epochs=2, verbose=0).history
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    targets = torch.cat([t.reshape(-1, K) for t in seen])
    assert targets.is_floating_point() and ((targets > 0) & (targets < 1)).any()  # mixed
    np.testing.assert_allclose(targets.sum(dim=1).numpy(), 1.0, rtol=1e-6)


def test_a_binary_accuracy_scores_smoothed_targets_on_their_side_of_one_half():
    """Targets the batch transforms made (here 0.9 / 0.1 from LabelSmoothing(0.2)) are scored
    on their side of 0.5; taken as they are (Keras's rule for a user's targets) no prediction
    would ever match them."""
    rng = np.random.default_rng(5)
    x, y = rng.random((N, 8)), rng.integers(0, 2, N).astype(np.float64)
    member = Member([LabelSmoothing(0.2), Dense(1, activation="sigmoid")], "sgd", seed=0,
                    input_shape=(8,))
    population = Population([member], loss="binary_crossentropy", metrics=["accuracy"],
                            dtype=torch.float64)
    before = population.predict(x)[0, :, 0]  # the weights the one step's forward pass sees
    result = population.fit(x, y, batch_size=N, epochs=1, shuffle=False)
    expected = np.mean((before > 0.5) == (y > 0.5))
    assert 0 < expected
    assert result.members[0].history["accuracy"][0] == pytest.approx(expected, abs=1e-12)
