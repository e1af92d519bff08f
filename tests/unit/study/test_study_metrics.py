"""The metrics a study records per run (reglab.study.metrics), against hand-computed values:
expected calibration error (softmax and one-unit sigmoid outputs), the generalization gaps'
signs, and the kernel statistics."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.layers import Dense
from reglab.optimizers import Adam
from reglab.study.metrics import expected_calibration_error, final_metrics, weight_statistics

# --- expected calibration error ----------------------------------------------------------------


def test_ece_is_zero_when_confidence_equals_accuracy():
    # ten samples at confidence 0.8, eight of them right: accuracy 0.8 in the one bin
    probabilities = np.tile([0.8, 0.15, 0.05], (10, 1))
    labels = np.array([0] * 8 + [1, 2])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_known_miscalibration():
    # bin (0.8, 0.9]: 4 samples at 0.85, all right -> |1 - 0.85| = 0.15, share 0.5
    # bin (0.6, 0.7]: 4 samples at 0.65, one right -> |0.25 - 0.65| = 0.40, share 0.5
    probabilities = np.array([[0.85, 0.10, 0.05]] * 4 + [[0.65, 0.25, 0.10]] * 4)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    expected = 0.5 * 0.15 + 0.5 * 0.40
    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(expected)


def test_ece_averages_confidence_within_a_bin():
    # 0.71 and 0.79 share the bin (0.7, 0.8]: mean confidence 0.75, both right -> 0.25
    probabilities = np.array([[0.71, 0.29], [0.21, 0.79]])
    labels = np.array([0, 1])
    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(0.25)


def test_ece_takes_one_hot_and_column_labels_as_class_indices():
    probabilities = np.array([[0.85, 0.10, 0.05]] * 4 + [[0.65, 0.25, 0.10]] * 4)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    reference = expected_calibration_error(probabilities, labels, bins=10)
    one_hot = np.eye(3)[labels]
    assert expected_calibration_error(probabilities, one_hot, bins=10) == pytest.approx(reference)
    assert expected_calibration_error(probabilities, labels[:, None], bins=10) == \
        pytest.approx(reference)


def _sigmoid_case(n=100, wrong=5, confidence=0.97):
    """Half the samples predicted class 1 at p=confidence, half class 0 at p=1-confidence;
    ``wrong`` of them have the other label."""
    positive = np.where(np.arange(n) % 2 == 0, confidence, 1.0 - confidence)
    labels = (positive > 0.5).astype(np.int64)
    labels[:wrong] = 1 - labels[:wrong]
    return positive[:, None], labels


def test_ece_of_one_sigmoid_unit_uses_the_predicted_class_confidence():
    # 95 % accuracy at confidence 0.97 in every sample: ECE = |0.95 - 0.97| = 0.02
    # (taking max/argmax over the one column gave confidence p, prediction always 0: 0.5).
    probabilities, labels = _sigmoid_case()
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.02)
    assert expected_calibration_error(probabilities[:, 0], labels) == pytest.approx(0.02)
    assert expected_calibration_error(probabilities, labels[:, None].astype(np.float32)) == \
        pytest.approx(0.02)
    assert expected_calibration_error(probabilities, labels.astype(bool)) == pytest.approx(0.02)


def test_ece_of_one_sigmoid_unit_equals_that_of_the_two_column_softmax():
    rng = np.random.default_rng(0)
    positive = rng.uniform(size=200)
    labels = (rng.uniform(size=200) < positive).astype(np.int64)  # calibrated by construction
    two_columns = np.stack([1.0 - positive, positive], axis=1)
    one = expected_calibration_error(positive[:, None], labels)
    assert one == pytest.approx(expected_calibration_error(two_columns, labels))
    assert one < 0.15


def test_ece_of_one_sigmoid_unit_perfectly_calibrated():
    # p = 0.3: predicted class 0 at confidence 0.7, and 7 of the 10 labels are 0
    probabilities = np.full((10, 1), 0.3)
    labels = np.array([0] * 7 + [1] * 3)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_one_sigmoid_unit_at_one_half_predicts_class_zero():
    probabilities = np.full((4, 1), 0.5)
    assert expected_calibration_error(probabilities, np.zeros(4)) == pytest.approx(0.5)
    assert expected_calibration_error(probabilities, np.ones(4)) == pytest.approx(0.5)


def test_ece_rejects_labels_of_another_length():
    with pytest.raises(ValueError, match="one label per prediction"):
        expected_calibration_error(np.full((4, 3), 1 / 3), np.zeros(5))


# --- weight statistics -------------------------------------------------------------------------


def test_weight_statistics_of_a_hand_made_kernel_skip_biases():
    kernel = torch.tensor([[0.0, 0.0005, -0.002], [3.0, -4.0, 0.0]])
    weights = {(0, "kernel"): kernel, (0, "bias"): torch.tensor([0.0, 5.0, 0.0]),
               (1, "gamma"): torch.zeros(3), (2, "kernel"): np.zeros((3, 1))}
    stats = weight_statistics(weights, {0: "dense", 1: "batch_normalization", 2: "dense_1"})
    assert set(stats) == {f"{layer}.{key}" for layer in ("dense", "dense_1")
                          for key in ("zeros", "small", "l1_norm", "l2_norm")}
    assert stats["dense.zeros"] == pytest.approx(2 / 6)
    assert stats["dense.small"] == pytest.approx(3 / 6)  # 0, 0.0005 and 0 are below 1e-3
    assert stats["dense.l1_norm"] == pytest.approx(0.0005 + 0.002 + 3.0 + 4.0)
    assert stats["dense.l2_norm"] == pytest.approx(math.sqrt(0.0005**2 + 0.002**2 + 9 + 16))
    assert stats["dense_1.zeros"] == 1.0 and stats["dense_1.small"] == 1.0
    assert stats["dense_1.l1_norm"] == 0.0 and stats["dense_1.l2_norm"] == 0.0


def test_weight_statistics_of_a_bfloat16_kernel():
    stats = weight_statistics({(0, "kernel"): torch.tensor([[1.0, -2.0]], dtype=torch.bfloat16)},
                              {0: "dense"})
    assert stats["dense.l1_norm"] == 3.0 and stats["dense.l2_norm"] == pytest.approx(math.sqrt(5))


# --- final_metrics: the gaps' signs, with a population whose logs are known ---------------------


class _KnownPopulation:
    """A population stand-in whose evaluate/predict return set values per split."""

    size = 2
    metric_names = ["accuracy"]
    layer_names = ["dense"]
    logs = {"train": [{"loss": 0.20, "accuracy": 0.90}, {"loss": 0.40, "accuracy": 0.80}],
            "val": [{"loss": 0.45, "accuracy": 0.75}, {"loss": 0.50, "accuracy": 0.78}],
            "test": [{"loss": 0.50, "accuracy": 0.70}, {"loss": 0.30, "accuracy": 0.85}]}

    def evaluate(self, x, y):
        return self.logs[x]

    def predict(self, x):
        probabilities, _ = _sigmoid_case(n=4, wrong=0, confidence=0.9)
        return np.stack([probabilities, probabilities])

    def member_weights(self, member_id):
        return {(0, "kernel"): torch.full((2, 2), float(member_id)), (0, "bias"): torch.ones(2)}


def test_final_metrics_gaps_are_train_minus_test_accuracy_and_test_minus_train_loss():
    data = SimpleNamespace(y_train="yt", y_val="yv", y_test=np.array([1, 0, 1, 0]))
    metrics = final_metrics(_KnownPopulation(), data, "train", "val", "test")
    assert metrics[0]["gap_accuracy"] == pytest.approx(0.90 - 0.70)  # overfit: positive
    assert metrics[0]["gap_loss"] == pytest.approx(0.50 - 0.20)
    assert metrics[1]["gap_accuracy"] == pytest.approx(0.80 - 0.85)  # better on test: negative
    assert metrics[1]["gap_loss"] == pytest.approx(0.30 - 0.40)
    assert metrics[0]["train_accuracy"] == 0.90 and metrics[1]["val_loss"] == 0.50
    for member_id in (0, 1):
        assert metrics[member_id]["test_ece"] == pytest.approx(0.1)  # all right at 0.9
    assert metrics[0]["dense.zeros"] == 1.0 and metrics[1]["dense.l1_norm"] == 4.0
    assert not any("bias" in key for key in metrics[0])


def test_final_metrics_without_test_data_have_no_gaps():
    data = SimpleNamespace(y_train="yt", y_val=None, y_test=None)
    metrics = final_metrics(_KnownPopulation(), data, "train", None, None)
    assert "gap_accuracy" not in metrics[0] and "gap_loss" not in metrics[0]
    assert "test_ece" not in metrics[0] and metrics[0]["train_loss"] == 0.20


def test_final_metrics_of_a_trained_sigmoid_population_match_its_own_outputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)
    members = [Member([Dense(1, activation="sigmoid", input_shape=(4,))], Adam(0.05), seed=s)
               for s in (0, 1)]
    population = Population(members, loss="binary_crossentropy", metrics=["accuracy"])
    population.fit(x[:64], y[:64], batch_size=16, epochs=15)
    data = SimpleNamespace(y_train=y[:64], y_val=None, y_test=y[64:])
    metrics = final_metrics(population, data, x[:64], None, x[64:])
    train, test = population.evaluate(x[:64], y[:64]), population.evaluate(x[64:], y[64:])
    probabilities = population.predict(x[64:])
    for m in (0, 1):
        assert metrics[m]["gap_accuracy"] == pytest.approx(train[m]["accuracy"]
                                                           - test[m]["accuracy"])
        assert metrics[m]["gap_loss"] == pytest.approx(test[m]["loss"] - train[m]["loss"])
        positive = probabilities[m, :, 0]
        assert ((positive > 0.5) == y[64:]).mean() == pytest.approx(test[m]["accuracy"])
        two_columns = np.stack([1.0 - positive, positive], axis=1)  # the softmax path's ECE
        assert metrics[m]["test_ece"] == pytest.approx(
            expected_calibration_error(two_columns, y[64:]))
        assert test[m]["accuracy"] >= 0.85 and metrics[m]["test_ece"] < 0.5
