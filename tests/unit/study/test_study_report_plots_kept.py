"""The report replaces only the PNGs an earlier report wrote into ``plots/``: a directory
the user gave as ``--out`` may hold pictures of their own there."""

from __future__ import annotations

import json

from reglab.report import page


def _png(figures, name):
    figures.add_png("curves", name, b"\x89PNG fake", 1, 1, "alt", "caption")


def test_stale_plots_of_an_earlier_report_go_and_the_user_s_stay(tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "holiday.png").write_bytes(b"mine")
    first = page._Figures(plots)
    _png(first, "learning curves")
    _png(first, "weights of dense")
    first.remove_stale()
    assert json.loads((plots / page.WRITTEN).read_text()) == ["learning-curves",
                                                               "weights-of-dense"]
    second = page._Figures(plots)
    _png(second, "learning curves")
    second.remove_stale()
    assert sorted(p.name for p in plots.glob("*.png")) == ["holiday.png", "learning-curves.png"]
    (tmp_path / "outside.png").write_bytes(b"mine too")
    (plots / page.WRITTEN).write_text('["../outside", "holiday.png", 3]')  # tampered with
    page._Figures(plots).remove_stale()  # deletes nothing but names of its own kind
    assert (plots / "holiday.png").exists() and (tmp_path / "outside.png").exists()
