"""The weight-penalty math, written once for a single model and for a population.

Every function takes the strengths either as Python floats (one model) or as
tensors of shape ``(P,)`` (one value per member), together with the axis of
``w`` that indexes members. Keras's formulas, exactly: ``l1 * sum(|w|)`` and
``l2 * sum(w**2)`` (no one-half).
"""

from __future__ import annotations

import torch

from reglab.native import penalty as native_penalty


def member_shape(w: torch.Tensor, member_axis: int) -> list[int]:
    """The shape that broadcasts a ``(P,)`` vector along ``member_axis`` of ``w``."""
    shape = [1] * w.dim()
    shape[member_axis] = w.shape[member_axis]
    return shape


def weight_penalty(
    w: torch.Tensor,
    l1: float | torch.Tensor = 0.0,
    l2: float | torch.Tensor = 0.0,
    member_axis: int | None = None,
) -> torch.Tensor:
    """``l1 * sum(|w|) + l2 * sum(w**2)``, per member when ``member_axis`` is set.

    Args:
        w: weights; with ``member_axis`` set, one slice per member along that axis.
        l1: L1 strength, a float or a ``(P,)`` tensor.
        l2: L2 strength, a float or a ``(P,)`` tensor.
        member_axis: the axis of ``w`` that indexes members, or None for one model.

    Returns:
        A scalar tensor, or a ``(P,)`` tensor with one penalty per member.

    Example:
        >>> float(weight_penalty(torch.tensor([1.0, -2.0]), l1=0.5, l2=0.25))
        2.75
    """
    if member_axis is None:
        flat = w.reshape(-1)
        total = w.new_zeros(())
    else:
        flat = w.movedim(member_axis, 0).reshape(w.shape[member_axis], -1)  # (P, n)
        fused = native_penalty.weight_penalty(flat, l1, l2)  # one pass, where it applies
        if fused is not None:
            return fused
        total = w.new_zeros(w.shape[member_axis])
    # The L2 term as the dot product of w with itself: no (P, n) temporary.
    if is_active(l1):
        total = total + l1 * flat.abs().sum(dim=-1)
    if is_active(l2):
        total = total + l2 * torch.linalg.vecdot(flat, flat)
    return total


def along_members(value: float | torch.Tensor, w: torch.Tensor) -> float | torch.Tensor:
    """A ``(P,)`` value viewed to broadcast along axis 0 of the stacked ``w``; floats pass."""
    if isinstance(value, torch.Tensor):
        return value.reshape(member_shape(w, 0))
    return value


def add_penalty_gradient_(grad: torch.Tensor, w: torch.Tensor, l1: float | torch.Tensor,
                          l2: float | torch.Tensor) -> None:
    """Adds the gradient of :func:`weight_penalty` for stacked weights ``(P, ...)``,
    ``l1 * sign(w) + 2 * l2 * w``, to ``grad`` in place (each strength a float or a ``(P,)``
    tensor): the same math as differentiating ``weight_penalty``, in two passes over the
    weights instead of an autograd graph (one, by the native kernel, where it applies)."""
    if not (is_active(l1) or is_active(l2)):
        return  # both parts left to the optimizer (see PopulationState.coupled_sign)
    if native_penalty.add_penalty_gradient_(grad, w, l1, l2):
        return
    if is_active(l1):
        grad.addcmul_(torch.sign(w), torch.as_tensor(along_members(l1, w)))
    if is_active(l2):
        grad.addcmul_(w, torch.as_tensor(along_members(l2, w)) * 2.0)


def activity_penalty(
    outputs: torch.Tensor,
    l1: float | torch.Tensor,
    l2: float | torch.Tensor,
    batch_axis: int,
    member_axis: int | None = None,
) -> torch.Tensor:
    """A layer's activity penalty, divided by the batch size as Keras >= 3.14 does."""
    batch_size = outputs.shape[batch_axis]
    return weight_penalty(outputs, l1, l2, member_axis) / batch_size


def soft_threshold(w: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """The proximal operator of ``threshold * |w|``: ``sign(w) * max(|w| - threshold, 0)``.

    It sets weights within ``threshold`` of zero to exactly zero, which a plain
    (sub)gradient step on the L1 penalty never does.
    """
    return torch.sign(w) * torch.clamp(w.abs() - threshold, min=0.0)


def is_active(value: float | torch.Tensor) -> bool:
    """Whether a strength (or any per-member value) can be non-zero.

    A tensor counts as non-zero without looking (which would synchronize with the device
    every step): the engine keeps values as tensors only when members differ, so some
    member's value is non-zero.
    """
    return isinstance(value, torch.Tensor) or value != 0
