"""The error classes reglab raises at its edges.

Messages follow one shape: ``<where>: <expected>. Got <value!r>.[ <how to fix>]``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ReglabError(Exception):
    """Base class of every error reglab raises on purpose."""


class ConfigError(ReglabError, ValueError):
    """An argument, a name or a specification is invalid."""


class DataError(ReglabError, ValueError):
    """Data is missing, malformed or does not fit the model."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset could be found in none of the places searched."""


class StoreError(ReglabError):
    """A study's store cannot be used: not a study directory, unreadable, or in use."""


class StructureError(ConfigError):
    """Members of one population do not share one structure."""


class UnknownArgumentError(ConfigError, TypeError):
    """A keyword argument a constructor does not have: a ValueError as Keras raises it, and
    the TypeError Python raises for it."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Returns `` Did you mean 'x'?`` for the closest of ``choices``, or ``''``."""
    choices = list(choices)
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.5)
    return f" Did you mean {by_lower[close[0]]!r}?" if close else ""


def unknown_name(where: str, kind: str, name: object, choices: Iterable[str]) -> ConfigError:
    """Builds the error for an unknown identifier, listing the valid ones."""
    choices = sorted(choices)
    return ConfigError(
        f"{where}: unknown {kind} {name!r}. Expected one of: {', '.join(choices)}."
        f"{did_you_mean(str(name), choices)}"
    )
