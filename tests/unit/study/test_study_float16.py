"""A study with [training] precision = "float16": mixed_float16 hidden layers, each run's
optimizer wrapped in a LossScaleOptimizer, the precision in the fingerprint, the store,
`reglab show` and the report."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
from click.testing import CliRunner

from reglab.cli import main
from reglab.engine import Population
from reglab.optimizers import SGD, LossScaleOptimizer
from reglab.study import parse_study
from reglab.study.build import load_study_data, population_members
from reglab.study.plan import plan_study
from reglab.study.precision import describe

STUDY = """
seeds = [0, 1]
[data]
dataset = "data.npz"
validation_split = 0.25
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "SGD", learning_rate = 0.1 }
epochs = 1
batch_size = 16
precision = "float16"
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = 0.01 }
"""


def write(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((64, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x[:16], y_test=y[:16])
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    return path


def test_float16_gives_hidden_layers_mixed_float16_and_scales_the_loss(tmp_path):
    spec = parse_study(write(tmp_path))
    assert spec.training.precision == "float16"
    assert '"precision":"float16"' in spec.canonical_json()
    float32 = parse_study_text(tmp_path, STUDY.replace('precision = "float16"\n', ""))
    assert '"precision"' not in float32.canonical_json()  # the default: fingerprints as before
    data = load_study_data(spec)
    population = plan_study(spec).populations[0]
    members, _, _ = population_members(spec, population, data)
    built = members[0].layers
    assert [layer.compute_dtype for layer in built] == ["float16"] * (len(built) - 1) + \
        ["float32"]
    for member in members:
        assert isinstance(member.optimizer, LossScaleOptimizer)
        assert isinstance(member.optimizer.inner_optimizer, SGD)
        assert member.optimizer.inner_optimizer.learning_rate == 0.1
    result = Population(members).fit(data.x_train, data.y_train, batch_size=16, epochs=1)
    assert all(np.isfinite(m.history["loss"][0]) for m in result.members)


def parse_study_text(tmp_path, text):
    path = tmp_path / "other.toml"
    path.write_text(text)
    return parse_study(path)


def test_a_float16_study_runs_and_says_its_precision(tmp_path):
    out = tmp_path / "out"
    cli = CliRunner()
    result = cli.invoke(main, ["run", str(write(tmp_path)), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(out / "study.db") as db:
        stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
        statuses = {row[0] for row in db.execute("SELECT status FROM runs")}
    assert json.loads(stored["precision"]) == "float16"
    assert statuses == {"done"}
    shown = cli.invoke(main, ["show", str(out)])
    assert "precision: float16 compute" in shown.output
    assert "dynamic loss scaling" in shown.output
    assert "float16 compute, float32 weights" in (out / "report.html").read_text()
    assert describe("float16").endswith("dynamic loss scaling")
    assert "loss scaling" not in describe("bfloat16")
