"""A study trains with each of Keras's regression losses (``training.loss``), and the test
loss it stores is Keras's own function of the targets and the trained model's predictions.

The model is one Dense unit without a bias, so the kernel the store keeps with the run is the
whole model: Keras's loss of ``softplus(x_test @ kernel)`` is an independent reference."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reglab.study import StudySpecError, parse_study  # noqa: E402
from reglab.study.runner import run_study  # noqa: E402
from reglab.study.spec import LOSSES  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STUDY = """
seeds = 1
[data]
dataset = "train.npz"
test = "test.npz"
[model]
input_shape = [3]
layers = [{ type = "Dense", units = 1, activation = "softplus", use_bias = false }]
[training]
loss = "LOSS"
metrics = []
epochs = 2
batch_size = 32
[variants.baseline]
"""

REGRESSION_LOSSES = ("mean_absolute_error", "mae", "mean_absolute_percentage_error", "mape",
                     "mean_squared_logarithmic_error", "msle", "huber", "log_cosh", "poisson",
                     "mean_squared_error", "mse")


def softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


@pytest.mark.parametrize("loss", REGRESSION_LOSSES)
def test_a_study_trains_on_a_regression_loss_and_stores_keras_s_test_loss(tmp_path, loss):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)).astype("float32")
    y = (np.abs(x @ np.array([0.5, -1.0, 2.0])) + 0.5).astype("float32")[:, None]  # > 0
    np.savez(tmp_path / "train.npz", x=x[:160], y=y[:160])
    np.savez(tmp_path / "test.npz", x=x[160:], y=y[160:])
    study = tmp_path / "study.toml"
    study.write_text(STUDY.replace("LOSS", loss))
    store = run_study(study, tmp_path / "out", log=lambda *args, **kwargs: None)
    try:
        (run,) = store.runs()
        _, kernel = store.kernel(run.run_id)
    finally:
        store.close()
    assert run.status == "done" and run.epochs_run == 2
    predictions = softplus(x[160:].astype("float64") @ kernel.astype("float64"))
    expected = float(np.mean(np.asarray(keras.losses.get(loss)(y[160:], predictions))))
    assert run.metrics["test_loss"] == pytest.approx(expected, rel=2e-5)


def test_the_study_s_losses_are_those_keras_names_and_other_names_are_refused(tmp_path):
    for name in LOSSES:
        assert callable(keras.losses.get(name)), name
    study = tmp_path / "study.toml"
    study.write_text(STUDY.replace("LOSS", "logcosh"))  # Keras 3 calls it log_cosh
    with pytest.raises(StudySpecError, match=r"training.loss: unknown loss 'logcosh'\. Did "
                                             r"you mean 'log_cosh'\?"):
        parse_study(study)
