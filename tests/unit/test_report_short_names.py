"""Variant names in the report's panel titles: a long one is cut in its middle, so that it
keeps its start and end and stays within its panel; a short one is kept whole."""

from __future__ import annotations

import pytest

from reglab.report.figures import short


@pytest.mark.parametrize("width", [5, 22, 40])
def test_a_long_name_is_cut_to_the_width_keeping_its_start_and_end(width):
    name = "l2_" + "x" * 60 + "_strength_1e-3"
    got = short(name, width)
    assert len(got) == width and "…" in got
    assert got.startswith(name[:(width - 1 + 1) // 2]) and got.endswith(name[-((width - 1) // 2):])


def test_a_short_name_is_kept_and_dollars_stay_literal():
    assert short("dropout_0.5", 40) == "dropout_0.5"
    assert short("cost$5", 40) == r"cost\$5"
