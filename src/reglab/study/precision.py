"""``[training] precision = "auto"``: bfloat16 where it is clearly faster here, else float32.

Whether bfloat16 products pay depends on the processor, not on the study: a Zen 4 EPYC
multiplies bfloat16 matrices about twice as fast as float32 ones (``avx512_bf16``), an Intel
Xeon whose AMX is not exposed (as in some virtual machines) about half as fast (its
``vdpbf16ps`` has float32's peak and the products pay for the layout), and a CPU without
bfloat16 instructions computes them in float32 on widened operands
(``reglab/layers/products.py``), no faster. ``"auto"`` measures once, when a study starts
training, and records the precision chosen in the store: ``reglab show`` and the report say
which, and a resumed study keeps it on any machine (its runs go on in the precision they
began in). Float16 is never chosen (it needs loss scaling; Keras's guide prefers bfloat16
where it is available).

On CUDA: bfloat16 on a GPU with bfloat16 tensor cores (compute capability 8.0 or newer).
On a CPU: bfloat16 when torch has native bfloat16 matrix kernels here and a product of a
population's shape (a seed group's first layer at batch 128) takes at most
``1 / MIN_SPEEDUP`` of float32's time, with the torch threads the jobs train with, the two
timed in alternate rounds for ~0.3 s (each dtype's fastest round). The gaps seen are 2x
either way, so the choice does not flip with a busy machine's noise; where it is close,
float32 (the reference) is kept. The reason is recorded beside the choice.
"""

from __future__ import annotations

import dataclasses
import math
import time

AUTO = "auto"
#: the speed-up of bfloat16 products over float32 ones that makes ``"auto"`` choose them
MIN_SPEEDUP = 1.25
#: the timed product: (batch, inputs) @ (inputs, a seed group's kernels side by side)
SHAPE = (128, 784, 576)
#: seconds of timing per dtype (after the warm-up), in rounds of ``CALLS`` products
BUDGET_S, CALLS = 0.15, 4


@dataclasses.dataclass(frozen=True)
class Choice:
    """The precision ``"auto"`` resolved to, and why (a line for the user)."""

    precision: str
    reason: str
    #: False for a choice kept from the study's first start
    measured: bool = True


def choose(device: str = "cpu", threads: int | None = None) -> Choice:
    """What ``"auto"`` means on ``device`` in this process (see the module's docstring),
    timed with ``threads`` torch threads (the jobs'; None: this process's)."""
    import torch

    if device == "cuda":
        return _choose_cuda(torch)
    from reglab.layers import products

    if not products.native_half_products("bfloat16"):
        return Choice("float32", "this CPU has no bfloat16 matrix instructions")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        speedup = bfloat16_speedup()
    finally:
        if threads:
            torch.set_num_threads(before)
    verdict = "bfloat16" if speedup >= MIN_SPEEDUP else "float32"
    return Choice(verdict, f"this CPU's bfloat16 products ran {speedup:.2f}x as fast as its "
                           f"float32 ones; bfloat16 is chosen from {MIN_SPEEDUP}x")


def _choose_cuda(torch) -> Choice:
    """bfloat16 on a GPU with bfloat16 tensor cores (compute capability 8.0 or newer, or
    ROCm's own answer); ``torch.cuda.is_bf16_supported()`` alone also says yes where it is
    only emulated (a V100, a T4), slower than float32."""
    if not torch.cuda.is_available():
        return Choice("float32", "no CUDA device here")
    index = torch.cuda.current_device()
    name = torch.cuda.get_device_name(index)
    if torch.version.hip:
        native = torch.cuda.is_bf16_supported()
    else:
        native = torch.cuda.get_device_capability(index)[0] >= 8
    if native:
        return Choice("bfloat16", f"{name} has bfloat16 tensor cores")
    return Choice("float32", f"{name} has no bfloat16 tensor cores (compute capability < 8.0)")


def bfloat16_speedup(shape: tuple[int, int, int] = SHAPE, budget_s: float = BUDGET_S) -> float:
    """float32's time over bfloat16's for one ``(m, k) @ (k, n)`` product on this CPU: each
    dtype's fastest round of ``CALLS`` products, the two timed in alternate rounds for about
    ``budget_s`` each (the fastest round is the one least disturbed by the machine's other
    work)."""
    import torch

    m, k, n = shape
    generator = torch.Generator().manual_seed(0)
    a32, b32 = torch.rand(m, k, generator=generator), torch.rand(k, n, generator=generator)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    out32, out16 = a32.new_empty(m, n), a16.new_empty(m, n)

    def seconds(a, b, out) -> float:
        start = time.perf_counter()
        for _ in range(CALLS):
            torch.mm(a, b, out=out)
        return time.perf_counter() - start

    seconds(a32, b32, out32), seconds(a16, b16, out16)  # warm-up: kernels chosen, caches
    best32 = best16 = math.inf
    spent = 0.0
    rounds = 0
    while rounds < 3 or spent < 2 * budget_s:
        t32, t16 = seconds(a32, b32, out32), seconds(a16, b16, out16)
        best32, best16 = min(best32, t32), min(best16, t16)
        spent += t32 + t16
        rounds += 1
    return best32 / max(best16, 1e-12)


def resolve(requested: str, recorded: str | None, device: str, measure=None) -> Choice | None:
    """The precision a study trains in: None when it is not ``"auto"`` (the study's own);
    else the one ``recorded`` in its store by an earlier start (a resumed study keeps it),
    else ``measure(device)`` (default :func:`choose`, here; an executor may run it where
    its jobs train)."""
    if requested != AUTO:
        return None
    if recorded is not None and recorded != AUTO:
        return Choice(recorded, "as chosen at the study's first start, kept on resuming",
                      measured=False)
    return (measure or choose)(device)


def with_precision(spec, precision: str):
    """``spec`` with ``[training] precision`` set to ``precision``."""
    return dataclasses.replace(spec, training=dataclasses.replace(spec.training,
                                                                  precision=precision))


def widened_note(precision: str) -> str | None:
    """The note for a half ``precision`` this CPU has no matrix instructions for (its
    products then run in float32 on widened operands, ``layers/products.py``), else None."""
    from reglab.layers import products

    if precision in ("float32", AUTO) or products.native_half_products(precision):
        return None
    return (f"note: this CPU has no {precision} matrix instructions: the products are "
            f"computed in float32 and rounded to {precision} (the same numbers, at about "
            "float32's speed)")


def describe(requested: str, trained: str | None = None, reason: str | None = None) -> str:
    """The precision a study trains in, for ``reglab show`` and the report:
    ``requested`` is its file's, ``trained`` the one recorded when it started (what
    ``"auto"`` resolved to), ``reason`` why ``"auto"`` chose it."""
    trained = trained if trained not in (None, AUTO) else requested
    if trained == AUTO:
        return 'auto (chosen when the study starts training)'
    if trained == "float32":
        text = "float32"
    else:
        scaling = ", dynamic loss scaling" if trained == "float16" else ""
        text = (f"{trained} compute, float32 weights and losses (the output layer in "
                f"float32){scaling}")
    if requested != AUTO:
        return text
    return text + (f' (chosen by precision = "auto": {reason})' if reason
                   else ' (chosen by precision = "auto")')
