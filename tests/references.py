"""Independent references written for the tests: Keras's formulas in plain torch."""

from __future__ import annotations

import torch

KERAS_EPSILON = 1e-7  # keras.backend.epsilon()


def keras_sparse_crossentropy(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Keras 3's sparse crossentropy from probabilities: normalize, clip, log, pick."""
    p = torch.clamp(probs / probs.sum(dim=-1, keepdim=True), KERAS_EPSILON, 1 - KERAS_EPSILON)
    return -torch.log(p.gather(-1, y.reshape(-1, 1).long())).reshape(-1)
