"""Matplotlib's own warnings while a report draws stay out of the user's terminal; others
do not."""

from __future__ import annotations

import warnings

import pytest
from matplotlib.figure import Figure

from reglab.report.figures import png_bytes, quiet_drawing


def test_a_huge_log_axis_and_a_missing_glyph_draw_without_warnings():
    figure = Figure(figsize=(3, 2))
    ax = figure.add_subplot()
    ax.plot([1e-4, 1e300], [0.0, 1.0])  # a swept strength that diverged the run
    ax.set_title("dr\u00f8pout_\u65e5\u672c")  # a name the font has no glyph for
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_drawing():
            ax.set_xscale("log")
        assert png_bytes(figure)[:4] == b"\x89PNG"
    assert not [w for w in seen if "overflow" in str(w.message) or "Glyph" in str(w.message)]
    with pytest.warns(UserWarning, match="still said"), quiet_drawing():
        warnings.warn("still said", UserWarning, stacklevel=1)
