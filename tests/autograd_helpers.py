"""Helpers for tests of hand-written autograd Functions."""

from __future__ import annotations


def forward_and_grads(fn, x, kernel, bias, upstream):
    """``fn(x, kernel, bias)`` on fresh leaves, differentiated against ``upstream``:
    ``(y, dx, dkernel, dbias)`` (``dbias`` None without a bias)."""
    x = x.detach().clone().requires_grad_(True)
    kernel = kernel.detach().clone().requires_grad_(True)
    bias = None if bias is None else bias.detach().clone().requires_grad_(True)
    y = fn(x, kernel, bias)
    (y * upstream).sum().backward()
    return y.detach(), x.grad, kernel.grad, None if bias is None else bias.grad
