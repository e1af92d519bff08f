"""Residual blocks in study files and the stochastic_depth variant key."""

from __future__ import annotations

import pytest

from reglab.study.build import build_member
from reglab.study.plan import plan_study
from reglab.study.spec import StudySpecError, parse_study

BASE = """
name = "res"
seeds = 1
[data]
dataset = "fashion_mnist"
validation_split = 0.1
[model]
input_shape = [20]
LAYERS
[training]
epochs = 1
[variants.baseline]
VARIANTS
"""
BLOCKS = """layers = [
  { type = "Dense", units = 8, activation = "relu" },
  { type = "Residual", repeat = 2, activation = "relu", layers = [
      { type = "Dense", units = 8, activation = "relu" }, { type = "Dense", units = 8 } ] },
  { type = "Dense", units = 3, activation = "softmax" } ]"""


def parse(layers=BLOCKS, variants=""):
    return parse_study("s.toml", BASE.replace("LAYERS", layers).replace("VARIANTS", variants))


def test_blocks_repeat_their_branch_around_a_stochastic_depth_merge():
    spec = parse(variants="[variants.deep]\nstochastic_depth = 0.3\ndropout = 0.1\n")
    baseline, deep = (next(r for r in plan_study(spec).runs if r.variant == name)
                      for name in ("baseline", "deep"))
    member = build_member(spec, deep, (20,))
    names = [type(layer).__name__ for layer in member.layers]
    block = ["Dense", "Dropout", "Dense", "Dropout", "StochasticDepth", "Activation"]
    assert names == ["InputLayer", "Dense", "Dropout", *block, *block, "Dense"]
    graph = [tuple(g) for g in member.graph]
    # the first block: its branch from the stem's Dropout (2), the merge of both
    assert graph[3] == (2,) and graph[7] == (2, 6) and graph[8] == (7,)
    assert graph[13] == (8, 12)  # the second block starts from the first one's output
    rates = [layer.rate for layer in member.layers if type(layer).__name__ == "StochasticDepth"]
    assert rates == [0.3, 0.3]
    plain = build_member(spec, baseline, (20,))
    assert [layer.rate for layer in plain.layers
            if type(layer).__name__ == "StochasticDepth"] == [0.0, 0.0]
    assert len(plan_study(spec).populations) == 1  # values only: one population


@pytest.mark.parametrize("layers, variants, expected", [
    ('layers = [{ type = "Residual", layers = [] }, { type = "Dense", units = 3 }]', "",
     "model.layers[0].layers: expected a non-empty list"),
    ('layers = [{ type = "Residual", repeat = 0, layers = [{ type = "Dense", units = 20 }] },'
     ' { type = "Dense", units = 3 }]', "", "model.layers[0].repeat: expected an int >= 1"),
    ('layers = [{ type = "Residual", layers = [{ type = "Residual", layers = '
     '[{ type = "Dense", units = 20 }] }] }, { type = "Dense", units = 3 }]', "",
     "model.layers[0].layers[0]: a residual block inside a residual block"),
    ('layers = [{ type = "Residual", layers = [{ type = "Dense", unit = 20 }] },'
     ' { type = "Dense", units = 3 }]', "", "model.layers[0].layers[0]: unknown key 'unit'"),
    ('layers = [{ type = "Dense", units = 3 }]', "[variants.deep]\nstochastic_depth = 0.2\n",
     "variants.deep.stochastic_depth: drops residual branches"),
    (BLOCKS, "[variants.deep]\nstochastic_depth = 1.0\n",
     "variants.deep.stochastic_depth: expected a number in [0, 1)"),
])
def test_bad_blocks_name_their_place(layers, variants, expected):
    with pytest.raises(StudySpecError) as error:
        parse(layers, variants)
    assert any(p.startswith(expected) for p in error.value.problems), error.value.problems
