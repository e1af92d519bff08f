"""A study grown in place: more seeds, variants or sweep points on a study already stored.

A run trains as it would alone (its population's other members change none of its bits),
so a finished run stays valid when a study grows around it: the store keeps it and trains
only the runs that are new. :func:`extension` says whether a study's canonical JSON grows
the stored one's, and what it adds; anything else that differs (epochs, the model, the
data, a variant's settings, a seed or a point taken away) makes it another study, which
``--restart`` or another directory is for.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from reglab.study.spec import study_wide_keys
from reglab.study.sweeps import set_path

#: the keys an extension may change (``description`` resumes as it is; see
#: ``StudySpec.resumable_keys``)
GROWING = ("seeds", "variants", "description")


@dataclass(frozen=True)
class Extension:
    """What a grown study adds to the stored one."""

    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    points: tuple[str, ...]  # ``variant: path`` of each sweep given more values

    @property
    def adds(self) -> bool:
        """Whether it adds runs (an empty one only reorders the stored study)."""
        return bool(self.seeds or self.variants or self.points)

    def describe(self) -> str:
        """``seeds 5-9, variant l1 and sweep values in l2: kernel_regularizer.l2``; a study
        only reordered: ``nothing (its seeds or variants in another order)``."""
        parts = []
        if self.seeds:
            parts.append(f"seed{'s' if len(self.seeds) > 1 else ''} " + _runs_of(self.seeds))
        if self.variants:
            parts.append(f"variant{'s' if len(self.variants) > 1 else ''} "
                         + ", ".join(self.variants))
        if self.points:
            parts.append("sweep values in " + ", ".join(self.points))
        if not parts:
            return "nothing (its seeds or variants in another order)"
        return " and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + \
            " and " + parts[-1]


def _runs_of(seeds: tuple[int, ...]) -> str:
    """``3, 5-9, 12``: consecutive seeds as a range."""
    spans: list[list[int]] = []
    for seed in seeds:
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}-{b}"
                     for a, b in spans)


def extension(stored: dict, new: dict, study_wide: bool = True) -> Extension | None:
    """What ``new`` (a study's canonical JSON, parsed) adds to ``stored``, when it holds all
    of its runs, trained as they were, and changes nothing else (it may only reorder
    them: an empty Extension); else None. A variant that would reshape every run (a new
    MixUp, CutMix or label smoothing: ``spec.STUDY_WIDE_KEYS``) makes another study. A
    tuning study never grows this way (its budget resumes through
    ``StudySpec.resumable_keys``). ``study_wide=False`` leaves that one check out (to say
    why a study is refused)."""
    if not isinstance(stored, dict) or not isinstance(new, dict) or "tune" in stored \
            or "tune" in new:
        return None
    if {k: v for k, v in stored.items() if k not in GROWING} != \
            {k: v for k, v in new.items() if k not in GROWING}:
        return None
    old_seeds, new_seeds = stored.get("seeds"), new.get("seeds")
    if not isinstance(old_seeds, list) or not isinstance(new_seeds, list) or \
            not set(old_seeds) <= set(new_seeds):
        return None
    grown = _grown_variants(stored.get("variants"), new.get("variants"))
    if grown is None or (study_wide and reshaping(stored, new)):
        return None
    variants, points = grown
    return Extension(tuple(s for s in new_seeds if s not in set(old_seeds)), variants, points)


def _grown_variants(old, new) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``(added variants, variant: path of each grown sweep)`` when every stored variant is
    in ``new`` as it was, but for more values in its sweeps; else None."""
    if not isinstance(old, list) or not isinstance(new, list):
        return None
    by_name = {v.get("name"): v for v in new if isinstance(v, dict)}
    if len(by_name) != len(new):
        return None
    points = []
    for variant in old:
        name = variant.get("name") if isinstance(variant, dict) else None
        if name not in by_name:
            return None
        grown = _grown_sweeps(variant, by_name[name])
        if grown is None:
            return None
        points += [f"{name}: {path}" for path in grown]
    old_names = {v.get("name") for v in old}
    return tuple(n for n in by_name if n not in old_names), tuple(points)


def _grown_sweeps(old: dict, new: dict) -> list[str] | None:
    """The paths of ``old``'s sweeps that ``new`` gives more values (each keeping all of
    its values), when the two are otherwise the same variant; else None."""
    old_sweeps, new_sweeps = old.get("sweeps") or [], new.get("sweeps") or []
    if [s.get("path") for s in old_sweeps] != [s.get("path") for s in new_sweeps]:
        return None
    grown = []
    for before, after in zip(old_sweeps, new_sweeps):
        values, more = before.get("values") or [], after.get("values") or []
        if not set(values) <= set(more):
            return None
        if set(more) != set(values):
            grown.append(before["path"])
    if _without_sweeps(old) != _without_sweeps(new):
        return None
    return grown


def _without_sweeps(variant: dict) -> dict:
    """The variant with each swept number's place (which holds its raw sweep) emptied."""
    plain = copy.deepcopy({k: v for k, v in variant.items() if k != "sweeps"})
    for sweep in variant.get("sweeps") or []:
        try:
            set_path(plain.setdefault("changes", {}), sweep["path"], None)
        except (KeyError, TypeError):
            return plain  # a path the changes do not hold: compared as they are
    return plain


def reshaping(stored: dict, new: dict) -> list[str]:
    """The study-wide keys (``spec.STUDY_WIDE_KEYS``: MixUp, CutMix, label smoothing) that
    ``new``'s variants use and ``stored``'s do not, or the reverse: each would put its layer
    in every run (at strength 0 where a variant has none), so the stored runs would not be
    the grown study's."""
    before = set(study_wide_keys(stored.get("variants") if isinstance(stored, dict) else None))
    after = set(study_wide_keys(new.get("variants") if isinstance(new, dict) else None))
    return sorted(before ^ after)
