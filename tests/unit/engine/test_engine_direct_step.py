"""The step without autograd's graph (engine/direct_step.py): every member's weights, logs and
predictions after training are bit for bit those of the whole-graph backward, for each kind of
layer, loss, reduction and population it takes; and it is not used where it would not be."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab import losses
from reglab.engine import Member, Population, direct_step
from reglab.layers import (
    BatchNormalization,
    Dense,
    Dropout,
    Flatten,
    GaussianNoise,
    MixUp,
    SpatialDropout1D,
)
from reglab.layers.layer import Layer
from reglab.regularizers import L1, L1L2, L2, Regularizer

FEATURES, CLASSES = 12, 5
APPLIES = direct_step.applies


def data(samples=70, seed=0, shape=(FEATURES,), classes=CLASSES):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=samples)
    return x, y


def mlp(hidden=32, activation="relu", rate=0.25, reg=None, last="softmax", units=CLASSES,
        middle=()):
    return [Dense(hidden, activation=activation, input_shape=(FEATURES,),
                  kernel_regularizer=reg), *middle, Dropout(rate),
            Dense(units, activation=last, kernel_regularizer=reg)]


def train(make_members, direct: bool, monkeypatch, fit=None, **population_kwargs):
    """The members' weights, logs and predictions after training with or without the direct
    step; asserts which path the steps took."""
    taken = []

    def spy(state, loss):
        taken.append(APPLIES(state, loss))
        return taken[-1] and direct
    monkeypatch.setattr(direct_step, "applies", spy)
    population = Population(make_members(), **population_kwargs)
    x, y = data()
    fit_kwargs = {"batch_size": 16, "epochs": 2, **(fit or {})}
    x, y = fit_kwargs.pop("x", x), fit_kwargs.pop("y", y)
    result = population.fit(x, y, **fit_kwargs)
    weights = {m: population.member_weights(m) for m in population.member_ids}
    logs = [r.history for r in result.members]
    return weights, logs, population.predict(x), taken


def assert_same(make_members, monkeypatch, expect_direct=True, **kwargs):
    mine = train(make_members, True, monkeypatch, **kwargs)
    theirs = train(make_members, False, monkeypatch, **kwargs)
    assert all(mine[3]) == expect_direct and any(mine[3]) == expect_direct
    for m, weights in theirs[0].items():
        for key, value in weights.items():
            assert torch.equal(mine[0][m][key], value), (m, key)
    assert mine[1] == theirs[1]
    np.testing.assert_array_equal(mine[2], theirs[2])


def members(layers, seeds=(0, 1, 0), optimizer="adam", **kwargs):
    return lambda: [Member(layers(i), optimizer=optimizer, seed=s, **kwargs)
                    for i, s in enumerate(seeds)]


@pytest.mark.parametrize("hidden", [32, 20])  # shared first GEMM / per-member products
@pytest.mark.parametrize("batch", [16, 10])  # batched products / one per member
def test_mlp_with_penalties_and_dropout_trains_bit_for_bit_as_autograds(hidden, batch,
                                                                        monkeypatch):
    regs = [None, L2(1e-3), L1L2(1e-4, 1e-3)]
    assert_same(members(lambda i: mlp(hidden, reg=regs[i], rate=[0.0, 0.3, 0.5][i])),
                monkeypatch, fit={"batch_size": batch})


@pytest.mark.parametrize("seeds", [(3,), (0, 1, 2, 0)])
def test_populations_of_one_and_of_mixed_seeds(seeds, monkeypatch):
    assert_same(members(lambda i: mlp(reg=L1(1e-3)), seeds=seeds), monkeypatch)


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adamw"])
def test_other_optimizers(optimizer, monkeypatch):
    assert_same(members(lambda i: mlp(), optimizer=optimizer), monkeypatch)


def test_layers_autograd_differentiates_alone(monkeypatch):
    # tanh has no written-out gradient; batch normalization keeps statistics; Gaussian
    # noise and spatial dropout draw their own noise; Flatten reshapes.
    def layers(i):
        return [Dense(16, activation="tanh", input_shape=(FEATURES,)), BatchNormalization(),
                GaussianNoise(0.1), Dense(8, activation="elu"), Flatten(),
                Dense(CLASSES, activation="softmax")]
    assert_same(members(layers), monkeypatch)


def test_spatial_dropout_and_a_flatten_in_front(monkeypatch):
    from reglab.layers import Reshape

    def layers(i):
        return [Reshape((3, 4), input_shape=(FEATURES,)), Dense(16, activation="relu"),
                SpatialDropout1D(0.3), Flatten(), Dense(CLASSES, activation="softmax")]
    assert_same(members(layers), monkeypatch)


def test_frozen_layer_keeps_its_weights(monkeypatch):
    def layers(i):
        first = Dense(16, activation="relu", input_shape=(FEATURES,), trainable=False)
        return [first, Dense(CLASSES, activation="softmax")]
    assert_same(members(layers), monkeypatch)


@pytest.mark.parametrize("loss", [
    losses.SparseCategoricalCrossentropy(reduction="sum"),
    losses.SparseCategoricalCrossentropy(label_smoothing=0.1),
    losses.SparseCategoricalCrossentropy(from_logits=True),
    "mse",
])
def test_other_losses_and_reductions(loss, monkeypatch):
    last = None if isinstance(loss, losses.SparseCategoricalCrossentropy) and loss.from_logits \
        else "softmax"
    if loss == "mse":
        x, y = data()
        fit = {"y": np.eye(CLASSES, dtype=np.float32)[y]}
    else:
        fit = None
    assert_same(members(lambda i: mlp(last=last)), monkeypatch, loss=loss, fit=fit,
                metrics=())


def test_sample_weights_and_float64(monkeypatch):
    weights = np.random.default_rng(1).uniform(0.2, 2.0, size=70)
    assert_same(members(lambda i: mlp()), monkeypatch, fit={"sample_weight": weights},
                dtype=torch.float64)


def test_soft_targets_of_a_batch_transform(monkeypatch):
    def layers(i):
        return [MixUp(0.3, input_shape=(FEATURES,)), *mlp()[0:1], Dense(CLASSES, "softmax")]
    assert_same(members(layers), monkeypatch)


class Custom(Regularizer):
    def __call__(self, w):
        return 1e-3 * torch.sum(w ** 4)


@pytest.mark.parametrize("reason", ["custom", "activity"])
def test_not_taken_where_autograd_must_see_the_whole_objective(reason, monkeypatch):
    def layers(i):
        if reason == "custom":
            return mlp(reg=Custom() if i == 1 else None)
        first = Dense(16, activation="relu", input_shape=(FEATURES,),
                      activity_regularizer=L2(1e-3))
        return [first, Dense(CLASSES, activation="softmax")]
    assert_same(members(layers), monkeypatch, expect_direct=False)


def test_a_subclass_with_its_own_forward_is_differentiated_by_autograd(monkeypatch):
    calls = []

    class Doubled(Dense):
        def forward(self, x, weights, values, ctx, input_shape):
            if ctx.training:
                calls.append(torch.is_grad_enabled())
            return 2 * super().forward(x, weights, values, ctx, input_shape)

    def layers(i):
        return [Doubled(16, activation="relu", input_shape=(FEATURES,)),
                Dense(CLASSES, activation="softmax")]
    assert_same(members(layers), monkeypatch)
    assert calls and all(calls)  # trained under autograd, in both paths


class Constant(Layer):
    """An output that does not depend on the input: the layers before get no gradient."""

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, weights, values, ctx, input_shape):
        return torch.ones_like(x)


def test_a_layer_whose_output_does_not_depend_on_its_input(monkeypatch):
    def layers(i):
        return [Dense(16, activation="relu", input_shape=(FEATURES,)), Constant(),
                Dense(CLASSES, activation="softmax")]
    assert_same(members(layers), monkeypatch)
    first = train(members(layers), True, monkeypatch)[0]
    start = Population(members(layers)()).member_weights(0)
    assert torch.equal(first[0][(0, "kernel")], start[(0, "kernel")])  # untouched
    assert not torch.equal(first[0][(2, "kernel")], start[(2, "kernel")])


def test_two_weights_whose_gradient_autograd_gives_as_one_tensor(monkeypatch):
    # y = relu(x @ (base + delta)): autograd returns one tensor for both gradients; each
    # weight must own its gradient (L2's gradient and clipping edit them in place).
    from reglab import initializers, optimizers
    from reglab.layers.layer import WeightSpec

    class SumKernel(Layer):
        def __init__(self, units, regularizer=None, **kwargs):
            super().__init__(**kwargs)
            self.units, self.regularizer = units, regularizer

        def structure(self):
            return ("SumKernel", self.units)

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], self.units)

        def weight_specs(self, input_shape):
            init = initializers.get("glorot_uniform")
            return [WeightSpec(name, (input_shape[-1], self.units), init,
                               regularizer=self.regularizer) for name in ("base", "delta")]

        def forward(self, x, weights, values, ctx, input_shape):
            return torch.relu(torch.matmul(x, weights["base"] + weights["delta"]))

    def layers(i):
        return [Dense(16, activation="relu", input_shape=(FEATURES,)), SumKernel(8, L2(0.05)),
                Dense(CLASSES, activation="softmax")]
    assert_same(lambda: [Member(layers(i), optimizer=optimizers.SGD(0.1), seed=s)
                         for i, s in enumerate((0, 1))], monkeypatch)
    assert_same(lambda: [Member(layers(i), optimizer=optimizers.Adam(clipnorm=0.05), seed=s)
                         for i, s in enumerate((0, 1))], monkeypatch)


class ReadsAWeight(losses.SparseCategoricalCrossentropy):
    """A user's loss that reads more than the predictions (a weight of the population)."""

    population = None

    def per_sample(self, y_true, y_pred):
        kernel = ReadsAWeight.population.state.weights[(0, "kernel")]
        return super().per_sample(y_true, y_pred) + 0.1 * torch.sum(kernel ** 2)


def test_a_users_loss_takes_the_whole_graph(monkeypatch):
    # the direct step differentiates a loss with respect to the predictions only: a user's
    # subclass or function may read anything else, so it is left to autograd's whole graph
    from reglab.engine import population as population_module

    real_init = population_module.Population.__init__

    def remember(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        ReadsAWeight.population = self
    monkeypatch.setattr(population_module.Population, "__init__", remember)
    assert_same(members(lambda i: mlp()), monkeypatch, loss=ReadsAWeight(), metrics=(),
                expect_direct=False)

    def function(y_true, y_pred):
        return losses.sparse_categorical_crossentropy(y_true, y_pred)
    assert_same(members(lambda i: mlp()), monkeypatch, loss=function, expect_direct=False)
    # reglab's own function, wrapped, is reglab's loss
    assert_same(members(lambda i: mlp()), monkeypatch,
                loss=losses.LossFunctionWrapper(losses.sparse_categorical_crossentropy))


def test_no_trainable_weight_reaching_the_output_fails_as_autograd_does(monkeypatch):
    def layers(i):
        return [Dense(16, activation="relu", input_shape=(FEATURES,)), Constant(),
                Dense(CLASSES, activation="softmax", trainable=False)]
    for direct in (True, False):
        with pytest.raises(RuntimeError, match="does not require grad"):
            train(members(layers), direct, monkeypatch)


def test_a_penalty_turned_on_mid_epoch_is_differentiated_from_the_next_step(monkeypatch):
    """``set_hyperparameter`` from an observer takes effect at the next step: raising an
    orthogonal regularizer's factor from 0 makes its penalty one autograd must differentiate,
    so the step after it takes the whole graph (its gradient reaches the weights)."""
    from reglab.regularizers import OrthogonalRegularizer

    def fit(direct):
        taken = []

        def spy(state, loss):
            taken.append(APPLIES(state, loss))
            return taken[-1] and direct
        monkeypatch.setattr(direct_step, "applies", spy)
        population = Population([Member([
            Dense(16, activation="relu", input_shape=(FEATURES,),
                  kernel_regularizer=OrthogonalRegularizer(0.0)),
            Dense(CLASSES, activation="softmax")], "adam", seed=0)])
        (member_id,) = population.member_ids

        class TurnOn:
            def on_train_batch_end(self, step):
                if step == 1:
                    population.set_hyperparameter(member_id, "dense.kernel.factor", 0.5)
        x, y = data(64)
        result = population.fit(x, y, batch_size=8, epochs=1, observers=[TurnOn()])
        monkeypatch.undo()
        return population.member_weights(member_id), result.members[0].history, taken

    weights, history, taken = fit(True)
    graph_weights, graph_history, _ = fit(False)
    assert taken == [True, True] + [False] * 6  # asked at every step
    assert history == graph_history
    for key, value in graph_weights.items():
        assert torch.equal(weights[key], value), key


def mixed(policy, hidden=32, last_policy="float32", middle=False, rate=0.3):
    """An MLP whose hidden layers compute in ``policy`` (weights float32), its output layer
    in ``last_policy``: the layers' casts, and their gradients, around each product."""
    def layers(i):
        extra = [Dense(24, activation="linear", dtype=policy)] if middle else []
        return [Dense(hidden, activation="relu", input_shape=(FEATURES,), dtype=policy,
                      kernel_regularizer=[None, L2(1e-3), L1(1e-3)][i]),
                *extra, Dropout(rate, dtype=policy),
                Dense(CLASSES, activation="softmax", dtype=last_policy)]
    return layers


@pytest.mark.parametrize("hidden", [32, 20])  # one GEMM per seed group / per-member products
@pytest.mark.parametrize("batch", [16, 10])
def test_mixed_bfloat16_trains_bit_for_bit_as_autograds(hidden, batch, monkeypatch):
    assert_same(members(mixed("mixed_bfloat16", hidden)), monkeypatch,
                fit={"batch_size": batch})


@pytest.mark.parametrize("policy, last", [
    ("mixed_bfloat16", "mixed_bfloat16"),  # bfloat16 logits, cast to float32 for the loss
    ("mixed_float16", "float32"),  # float16 without loss scaling (SGD takes no scale)
])
def test_other_precisions_and_layers_between(policy, last, monkeypatch):
    assert_same(members(mixed(policy, last_policy=last, middle=True), optimizer="sgd"),
                monkeypatch)
    assert_same(members(mixed(policy, last_policy=last, middle=True), seeds=(4,)),
                monkeypatch)


def test_mixed_precision_beside_layers_autograd_differentiates(monkeypatch):
    # batch normalization computes in float32 inside; tanh has no written-out gradient
    def layers(i):
        return [Dense(16, activation="relu", input_shape=(FEATURES,), dtype="mixed_bfloat16"),
                BatchNormalization(dtype="mixed_bfloat16"),
                Dense(8, activation="tanh", dtype="mixed_bfloat16"),
                Dropout(0.2, dtype="mixed_bfloat16"), Dense(CLASSES, activation="softmax")]
    assert_same(members(layers), monkeypatch)


@pytest.mark.parametrize("dropout", [
    lambda i: Dropout(0.3, dtype="mixed_float16"),  # torch's dropout (no float16 kernel)
    lambda i: Dropout([1.0, 0.5, 0.3][i], dtype="mixed_bfloat16"),  # a rate of 1 among them
    lambda i: Dropout(0.3, noise_shape=(None, 32), dtype="mixed_bfloat16"),
])
def test_a_dropout_in_another_policy_than_the_layer_before_it(dropout, monkeypatch):
    # the torch dropout divides by a float32 keep probability: its gradient comes in
    # float32, which autograd rounds to the dropout's input dtype before the cast back
    def layers(i):
        return [Dense(32, activation="relu", input_shape=(FEATURES,)), dropout(i),
                Dense(CLASSES, activation="softmax")]
    assert_same(members(layers, seeds=(0, 1, 2)), monkeypatch)
    assert_same(members(layers, seeds=(0, 1, 2)), monkeypatch, dtype=torch.float64)
