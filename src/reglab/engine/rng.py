"""Random streams keyed by (seed, purpose): the basis of common random numbers.

Every random draw in training comes from a generator derived from a member's
seed and what the numbers are for ('init/dense_1/kernel', and per epoch
'shuffle', 'noise/dropout', 'augment'). Members that share a seed therefore
share initial weights, batch order, masks and augmentations, whatever else is
in the population; a member trained alone draws exactly the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reglab.utils.seeds import derive_seed  # the formula lives torch-free, for the data too

__all__ = ["SeedStreams", "derive_seed", "epoch_purpose", "generator"]


def generator(seed: int, purpose: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch.Generator for ``(seed, purpose)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, purpose))
    return g


Group = tuple[int, int]  # (seed, epochs the member has trained): members in one group share draws


def epoch_purpose(purpose: str, epoch: int) -> str:
    """The stream of ``purpose`` for a member's ``epoch``-th epoch (counted across fits)."""
    return f"{purpose}/epoch{epoch}"


class SeedStreams:
    """Generators for a population's groups of members, created on first use.

    Training streams are keyed by (seed, the member's own epoch count): a member's draws in
    its k-th epoch depend on nothing but its seed and k, even when it stopped earlier than
    a neighbour with the same seed and resumes in a later ``fit``.
    """

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

    def forget(self) -> None:
        """Drops cached generators (at an epoch's start: each epoch's streams are new), and
        what was drawn ahead from them (:meth:`drawn_ahead`)."""
        self._generators.clear()
        self.__dict__.get("_numpy", {}).clear()
        self.__dict__.get("_ahead", {}).clear()

    def drawn_ahead(self, key, make):
        """The object kept under ``key`` until the next :meth:`forget`, made by ``make()`` on
        first use: a consumer's numbers drawn ahead from this epoch's streams."""
        ahead = self.__dict__.setdefault("_ahead", {})
        if key not in ahead:
            ahead[key] = make()
        return ahead[key]

    def draw(self, groups: Sequence[Group], purpose: str, kind: str, shape: Sequence[int],
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(len(groups), *shape)`` numbers, one row per group from its own stream."""
        rows = []
        for seed, epoch in groups:
            g = self.get(seed, epoch_purpose(purpose, epoch))
            if kind == "uniform":
                rows.append(torch.rand(tuple(shape), generator=g, device=self.device, dtype=dtype))
            elif kind == "normal":
                rows.append(torch.randn(tuple(shape), generator=g, device=self.device, dtype=dtype))
            else:
                raise ValueError(f"SeedStreams.draw: kind must be 'uniform' or 'normal'. Got {kind!r}.")
        return torch.stack(rows)

    def permutations(self, groups: Sequence[Group], n: int) -> torch.Tensor:
        """``(len(groups), n)``: each group's shuffle of ``range(n)`` for its epoch.

        Drawn on the CPU whatever the device, so that a seed's batch order is the same on
        the CPU and on CUDA (it is drawn once per epoch, so this costs little).
        """
        return torch.stack([
            torch.randperm(n, generator=self.get(seed, epoch_purpose("shuffle", epoch), "cpu"))
            for seed, epoch in groups]).to(self.device)
