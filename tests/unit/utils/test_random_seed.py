"""keras.utils.set_random_seed's promise: Python's, NumPy's and torch's generators seeded, and
the models, their training and an unseeded ImageDataGenerator repeated after it; without it,
Python's random.seed repeats a model's initial weights, as it repeats Keras's."""

from __future__ import annotations

import os
import random
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402


def _draws():
    model = reglab.Sequential([reglab.Input((3,)), reglab.layers.Dropout(0.5),
                               reglab.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.arange(24, dtype="float32").reshape(8, 3) / 24
    model.fit(x, np.ones((8, 2), "float32"), batch_size=4, epochs=2, verbose=0)
    flow = reglab.preprocessing.image.ImageDataGenerator().flow(
        np.arange(20, dtype="float32").reshape(20, 1, 1, 1), batch_size=4)
    return (random.random(), np.random.permutation(10).tolist(), float(torch.rand(())),
            [w.tolist() for w in model.get_weights()], next(iter(flow)).ravel().tolist())


def test_every_generator_and_the_model_repeat_after_the_same_seed():
    reglab.utils.set_random_seed(42)
    first = _draws()
    reglab.utils.set_random_seed(42)
    assert _draws() == first
    reglab.utils.set_random_seed(43)
    other = _draws()
    assert all(a != b for a, b in zip(other, first))


def test_keras_s_generators_give_the_same_draws_after_the_same_seed():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":  # pragma: no cover
        pytest.skip("Keras on torch seeds torch")
    keras.utils.set_random_seed(7)
    theirs = (random.random(), np.random.permutation(10).tolist(), float(torch.rand(())))
    reglab.utils.set_random_seed(7)
    assert (random.random(), np.random.permutation(10).tolist(), float(torch.rand(()))) == theirs


def test_python_s_random_seed_alone_repeats_a_new_process_s_initial_weights():
    code = ("import random, reglab; random.seed(1); "
            "m = reglab.Sequential([reglab.Input((3,)), reglab.layers.Dense(2)]); "
            "print(m.get_weights()[0].tolist())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].strip()


@pytest.mark.parametrize("seed", [1.5, "3", True, -1, None, 2**32, 2**70])
def test_a_seed_that_is_not_an_int_numpy_takes_is_refused(seed):
    with pytest.raises(ConfigError, match=r"set_random_seed: 'seed' must be an int in \[0, 2\*\*32\)"):
        reglab.utils.set_random_seed(seed)
