"""The fused softmax + sparse crossentropy's gradient with respect to the logits by the
native kernel (``native/crossentropy_kernels.c``), for the case it takes: CPU float32
probabilities ``(P, B, K)`` and ``p``, ``clipped`` ``(P, B)``, each contiguous, int64
labels and a float32 incoming gradient ``(P, B)`` of any strides (an expanded row is read
in place). :func:`backward` returns None otherwise, or when a label lies outside the
classes, and the caller runs its torch path (:func:`reglab.engine.softmax_crossentropy.backward_values`),
whose bits these are.
"""

from __future__ import annotations

import torch

from reglab import native


def _takes(probs, label, p, clipped, grad_loss) -> bool:
    if not (probs.dim() == 3 and native.float32_rows(probs) and probs.shape[2] > 0):
        return False
    rows = probs.shape[:2]
    return (_dense(p, torch.float32, rows) and p.is_contiguous()
            and _dense(clipped, torch.float32, rows) and clipped.is_contiguous()
            and _dense(label, torch.int64, rows) and _dense(grad_loss, torch.float32, rows))


def _dense(t: torch.Tensor, dtype: torch.dtype, shape: torch.Size) -> bool:
    """A strided CPU tensor of ``dtype`` and ``shape`` (read at its strides)."""
    return t.dtype == dtype and t.shape == shape and t.is_cpu and t.layout == torch.strided


def backward(probs: torch.Tensor, label: torch.Tensor, p: torch.Tensor, clipped: torch.Tensor,
             grad_loss: torch.Tensor) -> torch.Tensor | None:
    """``coef * (probs - onehot(label))`` with ``coef = grad_loss`` where ``clipped == p``,
    else 0 (see the kernel's comment); None where the kernel does not take the case."""
    lib = native.library()
    if lib is None or not _takes(probs, label, p, clipped, grad_loss):
        return None
    grad = torch.empty_like(probs)
    members, batch, classes = probs.shape
    status = lib.reglab_crossentropy_backward_f32(
        probs.data_ptr(), label.data_ptr(), label.stride(0), label.stride(1), p.data_ptr(),
        clipped.data_ptr(), grad_loss.data_ptr(), grad_loss.stride(0), grad_loss.stride(1),
        members, batch, classes, grad.data_ptr())
    return grad if status == 0 else None
