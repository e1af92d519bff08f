"""Weight averaging against independent references.

``use_ema`` (Keras 3's optimizer argument) against the EMA written out here over the same
trajectory, and a whole training with ``ema_overwrite_frequency`` replayed by hand; SWA
against ``torch.optim.swa_utils.AveragedModel`` fed the same weights at each epoch's end,
and its batch-normalization pass against the statistics computed here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from references import keras_sparse_crossentropy
from reglab.engine import Member, Population
from reglab.layers import BatchNormalization, Dense
from reglab.models import Sequential
from reglab.optimizers import SGD, Adam

F64 = torch.float64
KEYS = [(0, "kernel"), (0, "bias")]


def data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


class Trajectory:
    """Observer: each member's weights after every step."""

    def __init__(self):
        self.steps = []

    def on_train_begin(self, population):
        self.population = population

    def on_train_batch_end(self, step):
        self.steps.append(self.population.member_weights(0))


def test_use_ema_matches_a_hand_written_average_after_100_steps():
    x, y = data()
    member = Member([Dense(3, activation="softmax", input_shape=(5,))],
                    Adam(0.01, use_ema=True, ema_momentum=0.95), seed=0)
    population = Population([member], dtype=F64)
    trajectory = Trajectory()
    result = population.fit(x, y, batch_size=4, epochs=1, shuffle=False, observers=[trajectory])
    assert len(trajectory.steps) == 100
    average = None
    for step, weights in enumerate(trajectory.steps):
        momentum = 0.0 if step == 0 else 0.95  # Keras: no momentum at iteration 0
        average = {k: weights[k].clone() if average is None
                   else momentum * average[k] + (1 - momentum) * weights[k] for k in weights}
    final = population.member_weights(0)  # fit ends with the average (finalize_variable_values)
    for key in KEYS:
        np.testing.assert_allclose(final[key].numpy(), average[key].numpy(), rtol=1e-6,
                                   atol=1e-9)
        assert not torch.allclose(final[key], trajectory.steps[-1][key])  # not the raw weights
    assert result.members[0].weights is not None


def test_ema_overwrite_frequency_replayed_by_hand():
    """SGD on one Dense softmax layer, trained here in float64 with Keras's order: the step,
    the average, every 5th step the weights take the average; the final weights are the
    average."""
    x, y = data(60)
    model = Sequential([Dense(3, activation="softmax", input_shape=(5,))], seed=2)
    model.compile(optimizer=SGD(0.5, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=5),
                  loss="sparse_categorical_crossentropy")
    w = [torch.tensor(a, dtype=F64) for a in model.get_weights()]
    model.fit(x.astype("float32"), y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    average = None
    for iteration, lo in enumerate(list(range(0, 60, 4)) * 2):
        kernel, bias = (t.clone().requires_grad_(True) for t in w)
        probs = torch.softmax(torch.tensor(x[lo:lo + 4]) @ kernel + bias, dim=-1)
        keras_sparse_crossentropy(probs, torch.tensor(y[lo:lo + 4])).mean().backward()
        w = [kernel.detach() - 0.5 * kernel.grad, bias.detach() - 0.5 * bias.grad]
        momentum = 0.0 if iteration == 0 else 0.8
        average = [t.clone() if average is None else momentum * a + (1 - momentum) * t
                   for a, t in zip(average or w, w)]
        if (iteration + 1) % 5 == 0:
            w = [a.clone() for a in average]
    for actual, expected in zip(model.get_weights(), average):
        np.testing.assert_allclose(actual, expected.numpy(), rtol=2e-5, atol=1e-6)


def test_validation_logs_report_the_averaged_weights_as_such():
    x, y = data(40)
    member = Member([Dense(3, activation="softmax", input_shape=(5,))],
                    Adam(0.05, use_ema=True), seed=0)
    history = Population([member]).fit(x, y, batch_size=8, epochs=2,
                                       validation_data=(x, y)).members[0].history
    assert len(history["val_ema_loss"]) == 2 and len(history["val_ema_accuracy"]) == 2
    assert history["val_ema_loss"] != history["val_loss"]


class EpochEnds:
    def __init__(self):
        self.weights = []

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_end(self, epoch, logs):
        self.weights.append(self.population.member_weights(0))


@pytest.mark.parametrize("start", [0, 2])
def test_swa_matches_torch_averaged_model(start):
    x, y = data(64)
    members = [Member([Dense(3, activation="softmax", input_shape=(5,))],
                      SGD(0.1, swa_start=start), seed=0),
               Member([Dense(3, activation="softmax", input_shape=(5,))], SGD(0.1), seed=0)]
    population = Population(members, dtype=F64)
    epochs = EpochEnds()
    population.fit(x, y, batch_size=8, epochs=5, shuffle=False, observers=[epochs])
    module = nn.Linear(5, 3).double()
    swa = AveragedModel(module)
    for epoch, weights in enumerate(epochs.weights):  # the raw weights at each epoch's end
        if epoch >= start:
            with torch.no_grad():
                module.weight.copy_(weights[(0, "kernel")].T)
                module.bias.copy_(weights[(0, "bias")])
            swa.update_parameters(module)
    averaged = population.member_weights(0)
    np.testing.assert_allclose(averaged[(0, "kernel")].numpy(),
                               swa.module.weight.detach().T.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(averaged[(0, "bias")].numpy(), swa.module.bias.detach().numpy(),
                               rtol=1e-12, atol=1e-14)
    # The member without SWA ends with its last weights; with SWA they differ from them.
    assert torch.equal(population.member_weights(1)[(0, "kernel")],
                       epochs.weights[-1][(0, "kernel")])


def test_swa_recomputes_batch_normalization_statistics_over_the_training_data():
    x, y = data(48)
    member = Member([Dense(4, input_shape=(5,)), BatchNormalization(momentum=0.9),
                     Dense(3, activation="softmax")], SGD(0.05, swa_start=1), seed=0)
    population = Population([member], dtype=F64)
    population.fit(x, y, batch_size=16, epochs=3, shuffle=False)
    w = population.member_weights(0)
    hidden = torch.tensor(x) @ w[(0, "kernel")] + w[(0, "bias")]  # with the averaged weights
    batches = [hidden[lo:lo + 16] for lo in range(0, 48, 16)]
    mean = torch.stack([b.mean(0) for b in batches]).mean(0)  # every batch weighs the same
    variance = torch.stack([b.var(0, unbiased=False) for b in batches]).mean(0)
    np.testing.assert_allclose(w[(1, "moving_mean")].numpy(), mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(w[(1, "moving_variance")].numpy(), variance.numpy(), rtol=1e-10)
    # torch's update_bn gives the same means (its variances are unbiased, Keras's are not).
    module = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)).double()
    with torch.no_grad():
        module[0].weight.copy_(w[(0, "kernel")].T)
        module[0].bias.copy_(w[(0, "bias")])
    torch.optim.swa_utils.update_bn([torch.tensor(x[lo:lo + 16]) for lo in range(0, 48, 16)],
                                    module)
    np.testing.assert_allclose(w[(1, "moving_mean")].numpy(), module[1].running_mean.numpy(),
                               rtol=1e-10)
