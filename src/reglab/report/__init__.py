"""Reports of studies: one self-contained HTML page with the plots, and the plots as PNG files.

    >>> from reglab.report import write_report      # doctest: +SKIP
    >>> write_report("runs/tutorial")                # -> runs/tutorial/report.html

matplotlib (Agg) draws, jinja2 renders; importing this package imports neither.
"""

from __future__ import annotations


def write_report(directory):
    """Writes ``directory/report.html`` (and ``directory/plots/``); see :mod:`reglab.report.page`."""
    from reglab.report.page import write_report as write

    return write(directory)


__all__ = ["write_report"]
