"""The metrics a study records per run, at the epoch whose weights are kept.

Train, validation and test loss and accuracy; the generalization gap (train − test
accuracy, and test − train loss); per-layer kernel sparsity (exact zeros, and
|w| < 1e-3) with L1 and L2 norms; expected calibration error on the test set, and the
test set's size (``test_samples``).
"""

from __future__ import annotations

import numpy as np

SMALL = 1e-3
ECE_BINS = 15


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE with equal-width confidence bins: sum over bins of |accuracy − confidence| × share.

    ``probabilities`` is ``(N, C)`` softmax outputs, or ``(N, 1)``/``(N,)`` outputs of one
    sigmoid unit (the probability of class 1): then the predicted class is ``p > 0.5`` and
    the confidence ``max(p, 1 − p)``, the probability of the predicted class. ``labels`` are
    class indices ``(N,)`` or ``(N, 1)``, or one-hot ``(N, C)``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p.reshape(len(p), -1)
    labels = np.asarray(labels)
    if p.shape[1] > 1 and labels.ndim == 2 and labels.shape[1] == p.shape[1]:
        labels = labels.argmax(axis=-1)  # one-hot
    labels = labels.reshape(-1)
    if len(labels) != len(p):
        raise ValueError(f"expected_calibration_error: expected one label per prediction "
                         f"({len(p)}). Got labels of shape {np.shape(labels)}.")
    if p.shape[1] == 1:  # one sigmoid unit: binary classification
        positive = p[:, 0]
        predicted = positive > 0.5
        confidence = np.where(predicted, positive, 1.0 - positive)
        correct = predicted == (labels > 0.5)
    else:
        confidence = p.max(axis=-1)
        correct = p.argmax(axis=-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def weight_statistics(weights: dict, layer_names: dict[int, str]) -> dict[str, float]:
    """Per kernel: exact-zero fraction, fraction with |w| < 1e-3, L1 and L2 norms (biases
    and other weights are skipped)."""
    out = {}
    for (index, name), tensor in weights.items():
        if name != "kernel":
            continue
        w = (tensor.detach().cpu().double().numpy() if hasattr(tensor, "detach")
             else np.asarray(tensor, dtype=np.float64))
        prefix = layer_names[index]
        out[f"{prefix}.zeros"] = float((w == 0).mean())
        out[f"{prefix}.small"] = float((np.abs(w) < SMALL).mean())
        out[f"{prefix}.l1_norm"] = float(np.abs(w).sum())
        out[f"{prefix}.l2_norm"] = float(np.sqrt((w**2).sum()))
    return out


def final_metrics(population, data, x_fit, x_val, x_test) -> dict[int, dict[str, float]]:
    """Every member's final metrics (its kept weights are the population's current ones)."""
    splits = {"train": (x_fit, data.y_train), "val": (x_val, data.y_val),
              "test": (x_test, data.y_test)}
    results: dict[int, dict[str, float]] = {m: {} for m in range(population.size)}
    for split, (x, y) in splits.items():
        if x is None or y is None:
            continue
        for member_id, logs in enumerate(population.evaluate(x, y)):
            results[member_id].update({f"{split}_{k}": v for k, v in logs.items()})
    if x_test is not None and data.y_test is not None:
        from reglab.datasets.regimes import class_keys

        # calibration is of class probabilities: none for a regression's targets
        probabilities = population.predict(x_test) if getattr(data, "class_labels", True) \
            and class_keys(np.asarray(data.y_test)) is not None else None
        for member_id in results:
            if probabilities is not None:
                results[member_id]["test_ece"] = expected_calibration_error(
                    probabilities[member_id], np.asarray(data.y_test))
            # the test set's size: the resolution of its accuracy, which sets the default
            # minimum effect of the verdicts (reglab.study.report_table.resolve_min_effect)
            results[member_id]["test_samples"] = float(len(data.y_test))
    names = dict(enumerate(population.layer_names))
    for member_id, metrics in results.items():
        # The gap of the study's first metric ('accuracy', 'acc', ... as the logs name it).
        name = population.metric_names[0] if population.metric_names else "accuracy"
        if f"train_{name}" in metrics and f"test_{name}" in metrics:
            metrics["gap_accuracy"] = metrics[f"train_{name}"] - metrics[f"test_{name}"]
        if "train_loss" in metrics and "test_loss" in metrics:
            metrics["gap_loss"] = metrics["test_loss"] - metrics["train_loss"]
        metrics.update(weight_statistics(population.member_weights(member_id), names))
    return results


def first_kernel(population, member_id: int) -> tuple[str, np.ndarray] | None:
    """``(layer name, kernel)`` of the member's first layer with a kernel, or None."""
    weights = population.member_weights(member_id)
    for (index, name), tensor in sorted(weights.items()):
        if name == "kernel":
            return population.layer_names[index], tensor.detach().cpu().numpy()
    return None
