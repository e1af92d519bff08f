"""``Population.fit(batch_sizes=...)``: an epoch's batches of given sizes in turn (a Python
generator's batches as they came). The default cutting is one such list; a short batch
mid-epoch is one step of its own, as a hand-written loop over the same batches takes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.errors import ConfigError
from reglab.layers import Dense
from reglab.optimizers import SGD

RNG = np.random.default_rng(3)
X = RNG.normal(size=(70, 6)).astype("float32")
Y = RNG.integers(0, 4, 70)


def population(members=1):
    return Population([Member([Dense(8, activation="relu", input_shape=(6,)),
                               Dense(4, activation="softmax")], SGD(0.1), seed=seed)
                       for seed in range(members)])


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_default_cutting_given_as_sizes_trains_bit_for_bit_the_same(shuffle):
    by_size, by_sizes = population(2), population(2)
    a = by_size.fit(X, Y, batch_size=16, epochs=2, shuffle=shuffle)
    b = by_sizes.fit(X, Y, batch_size=16, epochs=2, shuffle=shuffle,
                     batch_sizes=[16, 16, 16, 16, 6])
    for m in range(2):
        assert a.members[m].history == b.members[m].history
        for key, value in by_size.member_weights(m).items():
            assert torch.equal(by_sizes.member_weights(m)[key], value), key


def test_a_short_batch_mid_epoch_is_a_step_of_its_own():
    """Against plain PyTorch on the member's initial weights: SGD on batches of 20, 5, 20,
    25 in turn (each step the batch's mean loss)."""
    sizes = [20, 5, 20, 25]
    ours = population()
    start = {k: v.clone() for k, v in ours.member_weights(0).items()}
    ours.fit(X, Y, batch_size=25, epochs=1, shuffle=False, batch_sizes=sizes)
    w0, b0 = start[0, "kernel"].clone().requires_grad_(), start[0, "bias"].clone().requires_grad_()
    w1, b1 = start[1, "kernel"].clone().requires_grad_(), start[1, "bias"].clone().requires_grad_()
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    lo = 0
    for size in sizes:
        xb, yb = x[lo:lo + size], y[lo:lo + size]
        probs = torch.softmax(torch.relu(xb @ w0 + b0) @ w1 + b1, dim=-1)
        loss = -torch.log(probs.gather(1, yb[:, None]).clamp(1e-7, 1 - 1e-7)).mean()
        grads = torch.autograd.grad(loss, (w0, b0, w1, b1))
        with torch.no_grad():
            for p, g in zip((w0, b0, w1, b1), grads):
                p -= 0.1 * g
        lo += size
    for key, ref in (((0, "kernel"), w0), ((0, "bias"), b0), ((1, "kernel"), w1), ((1, "bias"), b1)):
        np.testing.assert_allclose(ours.member_weights(0)[key].numpy(), ref.detach().numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=str(key))


@pytest.mark.parametrize("sizes, message", [
    ([20, 20, 20], "add up to the 70 samples of x. Got 3 sizes adding up to 60"),
    ([35, 36], "add up to the 70 samples"),
    ([70, 0], "'batch_sizes' must be an int >= 1. Got 0"),
    ([30.0, 40], "'batch_sizes' must be an int >= 1. Got 30.0"),
    (70, "'batch_sizes' must be a sequence of ints >= 1. Got 70"),
    ("70", "'batch_sizes' must be a sequence"),
])
def test_sizes_that_do_not_cut_the_samples_are_refused_by_name(sizes, message):
    ours = population()
    before = {k: v.clone() for k, v in ours.member_weights(0).items()}
    with pytest.raises(ConfigError, match=message):
        ours.fit(X, Y, batch_size=32, epochs=1, batch_sizes=sizes)
    for key, value in before.items():  # nothing trained
        assert torch.equal(ours.member_weights(0)[key], value)
