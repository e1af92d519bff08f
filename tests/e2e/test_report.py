"""The report end to end: a tiny image study -> `reglab run` -> report.html, checked in the
file, against the store, and in headless Chromium."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reglab.cli import main

pytestmark = pytest.mark.e2e

SECTIONS = ("verdict", "curves", "gap", "weights", "paths", "augmentation", "run-info")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking")

STUDY = """
name = "tiny <b>report</b>"
description = "A tiny image study & its report."
seeds = 3
[data]
dataset = "data.npz"
validation_split = 0.25
[model]
input_shape = [64]
layers = [{ type = "Dense", units = 16, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "Adam", learning_rate = 0.01 }
epochs = 5
batch_size = 32
[variants.baseline]
[variants.l1]
kernel_regularizer = { type = "L1", l1 = 0.01 }
[variants.proximal_l1]
kernel_regularizer = { type = "ProximalL1", l1 = 0.01 }
[variants.l2]
kernel_regularizer = { type = "L2", l2 = 0.01 }
[variants."dropout_$1_$2"]
dropout = 0.2
[variants.early_stopping]
early_stopping = { monitor = "val_loss", patience = 0, min_delta = 0.5 }
[variants.augmentation]
augment = { rotation_range = 20, width_shift_range = 0.1 }
[variants.l2_path]
kernel_regularizer = { type = "L2", l2 = { log = [1e-4, 1e-1], n = 4 } }
"""


def write_image_study(directory: Path) -> Path:
    """8x8 one-channel images: class k brightens row 2 + k, under uniform noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 240)
    x = rng.random((240, 8, 8, 1)).astype("float32") * 0.8
    for i, label in enumerate(y):
        x[i, 2 + label, 1:7, 0] += 0.25
    np.savez(directory / "data.npz", x=x, y=y, x_test=x[:60], y_test=y[:60])
    path = directory / "study.toml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    study = write_image_study(root)
    out = root / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'}" in result.output
    return out


def test_the_page_is_self_contained_and_escaped(study_dir):
    html = (study_dir / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    sources = re.findall(r'<img src="([^"]*)"', html)
    plots = sorted(p.name for p in (study_dir / "plots").glob("*.png"))
    assert plots == ["augmentation-augmentation.png", "first-layer-weights.png",
                     "generalization-gap.png", "learning-curves-accuracy.png",
                     "learning-curves-loss.png", "path-l2-path-kernel-regularizer-l2.png"]
    assert len(sources) == len(plots)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "tiny &lt;b&gt;report&lt;/b&gt;" in html and "<b>report</b>" not in html
    assert "A tiny image study &amp; its report." in html
    # every embedded image is the PNG file written beside the page
    files = {p.name: p.read_bytes() for p in (study_dir / "plots").glob("*.png")}
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in sources]
    assert sorted(embedded) == sorted(files.values())
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for data in embedded)


def test_the_verdict_matches_the_store(study_dir):
    html = (study_dir / "report.html").read_text()
    with sqlite3.connect(study_dir / "study.db") as db:
        rows = db.execute("SELECT variant, point, metrics FROM runs").fetchall()
    validation: dict[str, list[float]] = {}
    for variant, point, metrics in rows:
        point = json.loads(point)
        label = variant + (f"[l2={point['kernel_regularizer.l2']:.3g}]" if point else "")
        validation.setdefault(label, []).append(json.loads(metrics)["val_accuracy"])
    best = max(validation, key=lambda k: np.mean(validation[k]))
    assert re.search(rf"Best on validation accuracy: <b>{re.escape(best)}</b>", html)
    for label in validation:  # one row per variant label
        assert f'<td class="name">{label}</td>' in html


def test_the_report_and_show_agree_on_the_verdicts_and_the_min_effect(study_dir):
    html = (study_dir / "report.html").read_text()
    shown = CliRunner().invoke(main, ["show", str(study_dir)])
    assert shown.exit_code == 0, shown.output
    in_report = dict(re.findall(r'<tr(?: class="best")?>\n<td class="name">([^<]*)</td>.*?'
                                r'<td class="name"><span class="[a-z]*">([^<]*)</span></td></tr>',
                                html, flags=re.S))
    labels = list(in_report)
    assert len(labels) == 11 and in_report["baseline"] == "baseline"
    for label in labels:
        line = next(x for x in shown.output.splitlines() if x.startswith(label + " "))
        assert line.endswith(in_report[label]), (label, line)
    (shown_effect,) = re.findall(r"min effect δ = ([0-9.e-]+): (.*)\.\n", shown.output)
    note = re.search(r'<p class="note" id="min-effect">Minimum effect δ = ±([^:]*): ([^<]*)\.</p>',
                     html)
    assert note is not None and tuple(map(unescape, note.groups())) == shown_effect
    assert "n = 60 test samples" in shown_effect[1]


def test_the_regularization_path_choices(study_dir):
    """Best l2 on validation accuracy and glmnet's 1-SE choice, recomputed here with numpy."""
    from reglab.report.collect import collect
    from reglab.report.figures import regularization_paths, tutorial_value

    results = collect(study_dir)
    paths = regularization_paths(results)
    assert [title for title, _, _ in paths] == ["l2_path: kernel_regularizer.l2"]
    (choice,) = paths[0][2]
    values: dict[float, list[float]] = {}
    for record in results.runs:
        if record.variant == "l2_path":
            values.setdefault(record.point["kernel_regularizer.l2"], []).append(
                record.metrics["val_accuracy"])
    xs = sorted(values)
    means = [np.mean(values[x]) for x in xs]
    ses = [np.std(values[x], ddof=1) / math.sqrt(len(values[x])) for x in xs]
    best = int(np.argmax(means))
    within = [x for x, m in zip(xs, means) if m >= means[best] - ses[best]]
    assert choice.best == xs[best] and choice.one_se == max(within)
    assert choice.tutorial == 0.01  # the l2 variant, otherwise the same as the sweep
    spec_variant = next(v for v in results.spec.variants if v.name == "l2_path")
    assert tutorial_value(results, spec_variant, "kernel_regularizer.l1") is None


def test_histograms_and_sparsity_use_the_stored_kernels(study_dir):
    from reglab.report.collect import collect

    results = collect(study_dir)
    assert results.penalty_labels() == ["baseline", "l1", "proximal_l1", "l2"]
    for record in results.finished:
        layer, kernel = results.kernels[record.run_id]
        assert layer == "dense" and kernel.shape == (64, 16)
        assert record.metrics["dense.zeros"] == pytest.approx(float(np.mean(kernel == 0)))
    proximal = [results.kernels[r.run_id][1] for r in results.finished
                if r.variant == "proximal_l1"]
    assert min(float(np.mean(k == 0)) for k in proximal) > 0.2  # soft-thresholding zeroes
    assert results.l1_kind("proximal_l1") == "proximal" and results.l1_kind("l1") == "subgradient"
    html = (study_dir / "report.html").read_text()
    assert '<td class="name">proximal</td>' in html and '<td class="name">subgradient</td>' in html


def test_report_command_and_bad_directories(study_dir, tmp_path):
    cli = CliRunner()
    (study_dir / "report.html").unlink()
    result = cli.invoke(main, ["report", str(study_dir)])
    assert result.exit_code == 0, result.output
    assert (study_dir / "report.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli.invoke(main, ["report", str(empty)])
    assert result.exit_code == 2
    assert f"{empty}: not a study directory (it has no study.db)" in result.output
    assert list(empty.iterdir()) == []  # nothing written


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


PROBE = """<script>
window.addEventListener('load', function () {
  var images = Array.from(document.images);
  var result = {
    images: images.length,
    loaded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    sections: Array.from(document.querySelectorAll('section[id]')).map(function (s) {
      return [s.id, s.querySelector('h2') ? s.querySelector('h2').textContent : ''];
    })
  };
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def test_the_report_in_headless_chromium(study_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; scripts/test.sh installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    # The page has no script of its own: the probe goes into a copy beside it.
    probe = study_dir / "probe.html"
    probe.write_text((study_dir / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [browser, *CHROMIUM_FLAGS, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">([^<]*)</pre>', dom.stdout)
    assert found, dom.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["images"] == 6 and result["loaded"] == result["images"]
    assert [s[0] for s in result["sections"]] == list(SECTIONS)
    assert all(title.strip() for _, title in result["sections"])
    shot = tmp_path / "screen.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, "--hide-scrollbars", "--window-size=1280,900",
                    f"--screenshot={shot}", (study_dir / "report.html").as_uri()],
                   capture_output=True, timeout=120, cwd=tmp_path)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000


def test_learning_curves_mark_the_early_stopping_epochs(study_dir):
    from reglab.report.collect import collect
    from reglab.report.figures import learning_curves

    results = collect(study_dir)
    stopped = sorted(r.stopped_epoch + 1 for r in results.finished
                     if r.variant == "early_stopping" and r.status == "stopped_early")
    assert stopped, "the study's early_stopping variant should stop (min_delta=0.5)"
    figure = learning_curves(results, "loss")
    (axis,) = [ax for ax in figure.axes if ax.get_title() == "early_stopping"]
    marks = sorted(line.get_xdata()[0] for line in axis.get_lines()
                   if line.get_linestyle() == ":")
    assert marks == stopped
    # the curve is the mean over seeds of the stored epochs
    runs = [r for r in results.finished if r.variant == "baseline"]
    (baseline_axis,) = [ax for ax in figure.axes if ax.get_title() == "baseline"]
    train = baseline_axis.get_lines()[0].get_ydata()
    stored = np.array([[e["loss"] for e in results.epochs[r.run_id]] for r in runs])
    np.testing.assert_allclose(train, stored.mean(axis=0))
