"""Population's arguments checked where they enter: a ConfigError that names the argument
and what it received (never a torch or Python error from deep inside, never a silently
wrong run), and Keras's ``shuffle='batch'``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.engine.epoch import within_batches
from reglab.errors import ConfigError
from reglab.layers import Dense, Dropout


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)


def member(seed=0, **kwargs):
    return Member([Dense(4, activation="relu", input_shape=(5,)), Dropout(0.2),
                   Dense(3, activation="softmax")], "adam", seed=seed, **kwargs)


@pytest.mark.parametrize("members, message", [
    (None, "'members' must be a list of Member. Got None"),
    ("member", "'members' must be a list of Member"),
    (7, "'members' must be a list of Member"),
])
def test_members_that_are_not_a_list_of_members(members, message):
    with pytest.raises(ConfigError, match=message):
        Population(members)


def test_one_member_alone_is_named():
    with pytest.raises(ConfigError, match=r"Got one Member: pass \[member\]"):
        Population(member())


def test_early_stopping_must_be_a_rule():
    with pytest.raises(ConfigError, match="member 1: 'early_stopping' must be an "
                                          "EarlyStoppingRule.*Got 'val_loss'"):
        Population([member(), member(early_stopping="val_loss")])


@pytest.mark.parametrize("metrics", ["accuracy", 3, {"accuracy"}])
def test_metrics_must_be_a_list_of_names(metrics):
    with pytest.raises(ConfigError, match="'metrics' must be a list of metric names"):
        Population([member()], metrics=metrics)


def test_no_metrics_as_keras_takes_none():
    x, y = data()
    result = Population([member()], metrics=None).fit(x, y, epochs=1, batch_size=8)
    assert "loss" in result[0].history and "accuracy" not in result[0].history


@pytest.mark.parametrize("device", ["tpu", "meta", "mps", 3.5])
def test_devices_other_than_cpu_and_cuda(device):
    with pytest.raises(ConfigError, match="'device' must be 'cpu' or 'cuda'"):
        Population([member()], device=device)


def test_a_torch_loss_module_is_named_with_the_argument_order_it_expects():
    with pytest.raises(ConfigError, match=r"CrossEntropyLoss\(\) is a torch loss.*"
                                          r"loss\(y_true, y_pred\)"):
        Population([member()], loss=torch.nn.CrossEntropyLoss())


@pytest.mark.parametrize("kwargs, message", [
    ({"eval_batch_size": -5}, "'eval_batch_size' must be an int >= 1. Got -5"),
    ({"eval_batch_size": 0}, "'eval_batch_size' must be an int >= 1. Got 0"),
    ({"eval_batch_size": 2.5}, "'eval_batch_size' must be an int >= 1. Got 2.5"),
    ({"initial_epoch": 1.5}, "'initial_epoch' must be an int >= 0. Got 1.5"),
    ({"initial_epoch": -3}, "'initial_epoch' must be an int >= 0. Got -3"),
    ({"shuffle": "yes"}, "'shuffle' must be True, False or 'batch'"),
    ({"shuffle": 1}, "'shuffle' must be True, False or 'batch'"),
    ({"observers": object()}, r"'observers' must be a list of observers. Got object"),
    ({"resume": {"format": 1}}, "'resume' must be a Population.checkpoint"),
])
def test_fit_arguments(kwargs, message):
    x, y = data()
    population = Population([member()])
    before = population.member_weights(0)
    with pytest.raises(ConfigError, match=message):
        population.fit(x, y, epochs=2, batch_size=8, validation_data=(x, y), **kwargs)
    after = population.member_weights(0)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing trained


def test_evaluate_needs_targets():
    x, _ = data()
    with pytest.raises(ConfigError, match="evaluate: 'y' is needed"):
        Population([member()]).evaluate(x, None)


def test_member_ids():
    population = Population([member(), member(1)])
    with pytest.raises(ConfigError, match=r"'member_ids' must be a list of member ids. "
                                          r"Got 0: pass \[0\]"):
        population.remove_members(0)
    with pytest.raises(ConfigError, match="'member_ids' must be a list"):
        population.discard_members("0")
    with pytest.raises(ConfigError, match="'member_id' must be an int in"):
        population.member_weights(True)
    assert population.add_members([]) == []
    assert population.size == 2
    with pytest.raises(ConfigError, match="'members' must be a list of Member"):
        population.add_members(member())


def test_shuffle_batch_keeps_each_batch_s_samples_in_their_batch():
    keys = torch.stack([torch.randperm(11, generator=torch.Generator().manual_seed(s))
                        for s in range(3)])
    bounds = [(0, 4), (4, 8), (8, 11)]
    order = within_batches(keys, bounds)
    for row in order:
        assert sorted(row.tolist()) == list(range(11))
        for lo, hi in bounds:
            assert sorted(row[lo:hi].tolist()) == list(range(lo, hi))
    assert not torch.equal(order, torch.arange(11).expand(3, 11))  # shuffled inside


def test_shuffle_batch_trains_on_the_batches_of_an_unshuffled_epoch():
    # without dropout a batch's gradient does not depend on the order of its rows: the
    # weights after shuffle='batch' match shuffle=False to round-off, and differ from True
    x, y = data(48)

    def trained(shuffle):
        m = Member([Dense(4, activation="relu", input_shape=(5,)), Dense(3, activation="softmax")],
                   "sgd", seed=3)
        population = Population([m])
        population.fit(x, y, epochs=2, batch_size=8, shuffle=shuffle)
        return population.member_weights(0)

    unshuffled, by_batch, shuffled = trained(False), trained("batch"), trained(True)
    for key in unshuffled:
        torch.testing.assert_close(by_batch[key], unshuffled[key], rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(shuffled[k], unshuffled[k], atol=1e-4) for k in unshuffled)


def test_weights_too_large_to_allocate_name_the_layer(monkeypatch):
    """An allocator's failure while drawing initial weights becomes a MemoryError that names
    the layer, the weight, its shape and the bytes asked for (torch's own message kept);
    any other RuntimeError from an initializer passes through unchanged."""
    import reglab.engine.state as state_module

    real = state_module.generator

    def failing(message):
        def generator(seed, purpose):
            if purpose.endswith("/kernel") and "dense_1" not in purpose:
                raise RuntimeError(message)
            return real(seed, purpose)
        return generator

    monkeypatch.setattr(state_module, "generator", failing(
        "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"))
    with pytest.raises(MemoryError) as caught:
        Population([member(0), member(1)])
    text = str(caught.value)
    assert "layer 'dense'" in text and "kernel of shape (5, 4) for 2 member(s)" in text
    assert "160 bytes on cpu" in text and "can't allocate memory" in text
    monkeypatch.setattr(state_module, "generator", failing("some other failure"))
    with pytest.raises(RuntimeError, match="^some other failure$"):
        Population([member(0)])
