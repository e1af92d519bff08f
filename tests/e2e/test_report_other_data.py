"""The report of studies on other data than the tutorial's: a regression ranked on an error
(its gap is the table's, test − train, in its figures too), images kept as an archive's
(N, H, W) or standardized (their augmentation grid drawn, and visible), one epoch (learning
curves of one point each)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reglab.cli import main

pytestmark = pytest.mark.e2e

REGRESSION = """
seeds = 3
[data]
dataset = "reg.csv"
label_column = "target"
validation_split = 0.2
test_split = 0.2
[model]
input_shape = [4]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 1 }]
[training]
loss = "mse"
metrics = ["mae"]
epochs = 3
batch_size = 16
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = [1e-4, 1e-1] }
"""

IMAGES = """
seeds = 2
[data]
dataset = "gray.npz"
validation_split = 0.25
standardize = true
[model]
input_shape = [8, 8, 1]
layers = [{ type = "Flatten" }, { type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
epochs = 1
batch_size = 32
[variants.baseline]
[variants.flip]
augment = { horizontal_flip = true, width_shift_range = 2 }
"""


def _run(directory: Path, study: str) -> Path:
    path = directory / "study.toml"
    path.write_text(study)
    out = directory / "out"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def regression(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("regression")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(0, 0.3, 160)
    rows = ["f0,f1,f2,f3,target"] + [",".join(f"{v:.6f}" for v in (*row, t))
                                     for row, t in zip(x, y)]
    (root / "reg.csv").write_text("\n".join(rows) + "\n")
    return _run(root, REGRESSION)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 120)
    x = rng.random((120, 8, 8)).astype("float32") * 0.3  # (N, H, W): no channel axis
    for i, label in enumerate(y):
        x[i, 2 + label, 1:7] += 0.7
    np.savez(root / "gray.npz", x=x, y=y, x_test=x[:30], y_test=y[:30])
    return _run(root, IMAGES)


def _stored(directory: Path) -> list[tuple[str, dict]]:
    import json

    with sqlite3.connect(directory / "study.db") as conn:
        return [(variant + (point if point != "{}" else ""), json.loads(metrics))
                for variant, point, metrics in conn.execute(
                    "SELECT variant, point, metrics FROM runs")]


def test_a_regression_s_gap_figure_shows_the_table_s_test_minus_train_error(regression):
    from reglab.report.collect import collect
    from reglab.report.figures import generalization_gap

    results = collect(regression)
    figure = generalization_gap(results)
    axes = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["test − train mae", "test − train loss"]
    # the stored gap_accuracy is train − test of the first metric: the table turns an
    # error's around, and so does the figure
    baseline = [m for label, m in _stored(regression) if label == "baseline"]
    expected = np.mean([m["test_mae"] - m["train_mae"] for m in baseline])
    assert expected == pytest.approx(-np.mean([m["gap_accuracy"] for m in baseline]))
    (line,) = [line for line in axes[0].get_lines() if line.get_linestyle() == "--"]
    assert line.get_xdata()[0] == pytest.approx(expected)
    html = (regression / "report.html").read_text()
    assert "Test − train mae and test − train loss" in html
    assert "Train − test accuracy" not in html


def test_a_regression_s_path_panel_names_its_gap(regression):
    from reglab.report.collect import collect
    from reglab.report.figures import regularization_paths

    ((_, figure, _),) = regularization_paths(collect(regression))
    titles = [ax.get_title() for ax in figure.axes]
    assert "generalization gap (test − train mae)" in titles


def test_one_epoch_curves_draw_their_point(images):
    from reglab.report.collect import collect
    from reglab.report.figures import learning_curves

    figure = learning_curves(collect(images), "loss")
    lines = [line for ax in figure.axes for line in ax.get_lines()
             if line.get_label() in ("train", "validation")]
    assert lines and all(len(line.get_xdata()) == 1 and line.get_marker() == "o"
                         for line in lines)


def test_an_archive_s_gray_images_standardized_get_a_visible_augmentation_grid(images):
    html = (images / "report.html").read_text()
    assert "The training data are not images" not in html
    assert (images / "plots" / "augmentation-flip.png").exists()


def test_standardized_images_are_stretched_over_their_range_not_clipped_to_black():
    from reglab.report.figures import augmentation_grid

    rng = np.random.default_rng(2)
    pictures = rng.normal(size=(8, 6, 6, 1)).astype("float32")  # standardized: about ±3
    ((_, figure),) = augmentation_grid([("flip", {"horizontal_flip": True})], pictures)
    shown = np.stack([ax.images[0].get_array() for ax in figure.axes if ax.images][:8])
    low, high = pictures.min(), pictures.max()
    np.testing.assert_allclose(shown, (pictures[..., 0] - low) / (high - low), rtol=1e-6,
                               atol=1e-6)
