"""Reports of studies: one self-contained HTML page with the plots, and the plots as PNG files.

    >>> from reglab.report import write_report      # doctest: +SKIP
    >>> write_report("runs/tutorial")                # -> runs/tutorial/report.html

matplotlib (Agg) draws, jinja2 renders; importing this package imports neither.
"""

from __future__ import annotations

from pathlib import Path

#: the page and the plots' directory, in the study's directory
REPORT_NAME = "report.html"
PLOTS_DIR = "plots"


def write_report(directory):
    """Writes ``directory/report.html`` (and ``directory/plots/``); see :mod:`reglab.report.page`."""
    from reglab.report.page import write_report as write

    return write(directory)


def remove_report(directory) -> None:
    """Removes the report a study's directory holds (the page, the plots' PNG files, and
    their directory where nothing else is in it): a study started over shows none until its
    own is written, rather than the old study's."""
    directory = Path(directory)
    (directory / REPORT_NAME).unlink(missing_ok=True)
    plots = directory / PLOTS_DIR
    if plots.is_dir():
        for png in plots.glob("*.png"):
            png.unlink(missing_ok=True)
        try:
            plots.rmdir()
        except OSError:  # a user's files in it: left as they are
            pass


__all__ = ["remove_report", "write_report"]
