"""Random streams keyed by (seed, purpose): the basis of common random numbers.

Every random draw in training comes from a generator derived from a member's
seed and what the numbers are for ('shuffle', 'init/dense_1/kernel',
'noise/dropout', 'augment'). Members that share a seed therefore share initial
weights, batch order, masks and augmentations, whatever else is in the
population; a member trained alone draws exactly the same numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` under ``seed``, stable across runs and platforms."""
    digest = hashlib.sha256(f"reglab/{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, purpose: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch.Generator for ``(seed, purpose)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, purpose))
    return g


class SeedStreams:
    """Generators for each distinct seed of a population, created on first use."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self._generators: dict[tuple[int, str, str], torch.Generator] = {}

    def get(self, seed: int, purpose: str, device: str | torch.device | None = None
            ) -> torch.Generator:
        device = self.device if device is None else torch.device(device)
        key = (int(seed), purpose, device.type)
        if key not in self._generators:
            self._generators[key] = generator(seed, purpose, device)
        return self._generators[key]

    def draw(self, seeds: Sequence[int], purpose: str, kind: str, shape: Sequence[int],
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(len(seeds), *shape)`` numbers, one row per seed from its own stream."""
        rows = []
        for seed in seeds:
            g = self.get(seed, purpose)
            if kind == "uniform":
                rows.append(torch.rand(tuple(shape), generator=g, device=self.device, dtype=dtype))
            elif kind == "normal":
                rows.append(torch.randn(tuple(shape), generator=g, device=self.device, dtype=dtype))
            else:
                raise ValueError(f"SeedStreams.draw: kind must be 'uniform' or 'normal'. Got {kind!r}.")
        return torch.stack(rows)

    def permutations(self, seeds: Sequence[int], n: int) -> torch.Tensor:
        """``(len(seeds), n)``: each seed's next shuffle of ``range(n)``.

        Drawn on the CPU whatever the device, so that a seed's batch order is the same on
        the CPU and on CUDA (it is drawn once per epoch, so this costs little).
        """
        return torch.stack([torch.randperm(n, generator=self.get(s, "shuffle", "cpu"))
                            for s in seeds]).to(self.device)
