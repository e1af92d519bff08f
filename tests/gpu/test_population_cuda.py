"""The population engine on CUDA: the same training as on the CPU, up to round-off.

Run with ``pytest -m gpu`` on a machine with a CUDA device; skipped elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import EarlyStoppingRule, Member, Population
from reglab.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from reglab.regularizers import ProximalL1, l2

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _members(rate=0.0):
    def one(reg, seed):
        return Member([Dense(32, activation="relu", input_shape=(20,), kernel_regularizer=reg),
                       Dropout(rate), Dense(3, activation="softmax", kernel_regularizer=reg)],
                      optimizer="adam", seed=seed,
                      early_stopping=EarlyStoppingRule(monitor="loss", patience=1))
    return [one(reg, seed) for reg in (None, l2(0.01), ProximalL1(1e-3)) for seed in (0, 1)]


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 20))
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)


def test_cuda_matches_cpu_without_dropout():
    x, y = _data()
    results = {}
    for device in ("cpu", "cuda"):
        pop = Population(_members(), device=device, dtype=torch.float64)
        result = pop.fit(x, y, batch_size=32, epochs=3, validation_data=(x, y))
        results[device] = (result, [pop.member_weights(i) for i in range(pop.size)])
    (cpu, cpu_w), (gpu, gpu_w) = results["cpu"], results["cuda"]
    for a, b in zip(cpu.members, gpu.members, strict=True):
        assert a.status == b.status and a.epochs_run == b.epochs_run
        np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-8)
    for wa, wb in zip(cpu_w, gpu_w, strict=True):
        for key in wa:
            np.testing.assert_allclose(wa[key].numpy(), wb[key].numpy(), rtol=1e-7, atol=1e-9)


def test_cuda_dropout_and_conv_train_and_stay_on_device():
    rng = np.random.default_rng(1)
    x = rng.random((64, 12, 12, 1)).astype("float32")
    y = rng.integers(0, 3, 64)
    members = [Member([Conv2D(4, 3, padding="same", activation="relu", input_shape=(12, 12, 1)),
                       MaxPooling2D(), Flatten(), Dropout(rate), Dense(3, activation="softmax")],
                      seed=seed) for rate in (0.0, 0.5) for seed in (0, 1)]
    pop = Population(members, device="cuda")
    result = pop.fit(x, y, batch_size=16, epochs=2)
    assert all(np.isfinite(m.history["loss"]).all() for m in result.members)
    assert all(w.is_cuda for w in pop.state.weights.values())
