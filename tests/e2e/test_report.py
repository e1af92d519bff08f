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


# ---- the values shown, recomputed from the store (sqlite3 directly) and scipy ---------------

ROW = re.compile(
    r'<tr(?: class="best")?>\n<td class="name">(?P<label>[^<]*)</td><td>(?P<test>[^<]*)</td>'
    r'<td>(?P<gap>[^<]*)</td><td>(?P<delta>[^<]*)</td>\n<td>(?P<p>[^<]*)</td>'
    r'<td>(?P<p_equivalence>[^<]*)</td><td>(?P<wilcoxon>[^<]*)</td><td>(?P<n>[^<]*)</td>')


def _shown_rows(html: str) -> dict[str, dict[str, str]]:
    return {m["label"]: m.groupdict() for m in ROW.finditer(html)}


def _stored_runs(directory: Path) -> list[dict]:
    """The finished runs, straight from the store, labelled as the report labels them."""
    with sqlite3.connect(directory / "study.db") as db:
        rows = db.execute("SELECT variant, point, seed, status, metrics, population "
                          "FROM runs").fetchall()
    runs = []
    for variant, point, seed, status, metrics, population in rows:
        if status not in ("done", "stopped_early"):
            continue
        point = json.loads(point)
        label = variant + (f"[l2={point['kernel_regularizer.l2']:.6g}]" if point else "")
        runs.append({"label": label, "seed": seed, "metrics": json.loads(metrics),
                     "population": population})
    return runs


def _stored_meta(directory: Path) -> dict:
    with sqlite3.connect(directory / "study.db") as db:
        return {key: json.loads(value) for key, value in
                db.execute("SELECT key, value FROM meta").fetchall()}


def _population_of(directory: Path, run_id: str) -> str:
    with sqlite3.connect(directory / "study.db") as db:
        return db.execute("SELECT population FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]


def _t_summary(values) -> tuple[float, float, float]:
    """Mean and two-sided 95 % Student-t interval, by hand with scipy's quantile."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[+-]?\d+\.\d+", cell)]


def test_the_gap_shown_is_train_minus_test_accuracy_in_the_store(study_dir):
    html = (study_dir / "report.html").read_text()
    shown = _shown_rows(html)
    gaps: dict[str, list[float]] = {}
    for run in _stored_runs(study_dir):
        m = run["metrics"]
        gaps.setdefault(run["label"], []).append(m["train_accuracy"] - m["test_accuracy"])
    assert set(shown) == set(gaps) and len(gaps) == 11
    assert any(abs(np.mean(g)) > 0.01 for g in gaps.values())  # a sign error would show
    for label, values in gaps.items():
        mean, low, high = _t_summary(values)
        got = _numbers(shown[label]["gap"])
        assert len(got) == 3, shown[label]["gap"]
        assert got[0] == pytest.approx(mean, abs=5.1e-5), label  # 4 decimals
        assert got[1] == pytest.approx(low, abs=5.1e-4), label   # 3 decimals
        assert got[2] == pytest.approx(high, abs=5.1e-4), label


def test_the_gap_figure_plots_the_stored_gaps(study_dir):
    """The generalization-gap figure: per label, the mean and 95 % t interval of
    train − test accuracy and of test − train loss, recomputed from the store."""
    from reglab.report.collect import collect
    from reglab.report.figures import generalization_gap

    stored: dict[str, dict[str, list[float]]] = {}
    for run in _stored_runs(study_dir):
        m = run["metrics"]
        entry = stored.setdefault(run["label"], {"accuracy": [], "loss": []})
        entry["accuracy"].append(m["train_accuracy"] - m["test_accuracy"])
        entry["loss"].append(m["test_loss"] - m["train_loss"])
    figure = generalization_gap(collect(study_dir))
    axes = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["train − test accuracy", "test − train loss"]
    # the labels are on the first axis (the second shares it); drawn as text, not math
    names = {int(tick): text.get_text().replace(r"\$", "$")
             for tick, text in zip(axes[0].get_yticks(), axes[0].get_yticklabels())}
    for ax, kind in zip(axes, ("accuracy", "loss")):
        plotted = {}
        for container in ax.containers:
            (x,), (y,) = container.lines[0].get_xdata(), container.lines[0].get_ydata()
            (segment,) = container.lines[2][0].get_segments()
            plotted[names[int(y)]] = (x, segment[0][0], segment[1][0])
        assert set(plotted) == set(stored)
        for label, (mean, low, high) in plotted.items():
            expected = _t_summary(stored[label][kind])
            np.testing.assert_allclose((mean, low, high), expected, rtol=1e-9, atol=1e-12,
                                       err_msg=f"{kind}: {label}")
        (baseline_line,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert baseline_line.get_xdata()[0] == pytest.approx(np.mean(stored["baseline"][kind]))


def _holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, written out: the k-th smallest of M is
    multiplied by M − k + 1, then made monotone and capped at 1."""
    order = np.argsort(p_values, kind="stable")
    total = len(p_values)
    adjusted = np.empty(total)
    running = 0.0
    for k, index in enumerate(order):
        running = max(running, min(1.0, (total - k) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _one_sided_t(d: np.ndarray, boundary: float, alternative: str) -> float:
    """scipy's one-sample t-test of mean(d) against ``boundary``; with no spread at all, its
    limit (the mean is either beyond the boundary or it is not)."""
    from scipy import stats

    if np.ptp(d) == 0.0:
        beyond = d[0] > boundary if alternative == "greater" else d[0] < boundary
        return 0.0 if beyond else 1.0
    return float(stats.ttest_1samp(d, boundary, alternative=alternative).pvalue)


def test_the_holm_p_values_are_scipy_s_paired_one_sided_t_tests(study_dir):
    """p (t, Holm): for each variant, d = variant − baseline per seed (test accuracy);
    one-sided t tests of Δ ≤ δ and Δ ≥ −δ for all m variants, Holm over the 2m of them,
    the smaller of a variant's two shown. p equivalent: TOST, Holm over the m."""
    html = (study_dir / "report.html").read_text()
    shown = _shown_rows(html)
    accuracy: dict[str, dict[int, float]] = {}
    samples = set()
    for run in _stored_runs(study_dir):
        accuracy.setdefault(run["label"], {})[run["seed"]] = run["metrics"]["test_accuracy"]
        samples.add(run["metrics"]["test_samples"])
    assert samples == {60.0}
    p = np.mean(list(accuracy["baseline"].values()))
    delta = math.sqrt(p * (1 - p) / 60)  # the default minimum effect: one binomial SE
    note = re.search(r'<p class="note" id="min-effect">Minimum effect δ = ±([0-9.e-]+):', html)
    assert float(note.group(1)) == pytest.approx(delta, rel=1e-3)
    others = [label for label in accuracy if label != "baseline"]
    baseline = accuracy["baseline"]
    differences = {label: np.array([accuracy[label][s] - baseline[s] for s in sorted(baseline)])
                   for label in others}
    up = np.array([_one_sided_t(differences[v], delta, "greater") for v in others])
    down = np.array([_one_sided_t(differences[v], -delta, "less") for v in others])
    equivalent = np.array([max(_one_sided_t(differences[v], delta, "less"),
                               _one_sided_t(differences[v], -delta, "greater"))
                           for v in others])
    directional = _holm(np.concatenate([up, down]))
    m = len(others)
    expected_p = np.minimum(directional[:m], directional[m:])
    expected_equivalence = _holm(equivalent)
    assert any(0.001 < p < 0.999 for p in expected_p)  # not all clipped to 0 or 1
    for i, label in enumerate(others):
        assert float(shown[label]["p"]) == pytest.approx(expected_p[i], abs=5.1e-4), label
        assert float(shown[label]["p_equivalence"]) == pytest.approx(
            expected_equivalence[i], abs=5.1e-4), label
        assert shown[label]["n"] == "3"
        mean_difference = _numbers(shown[label]["delta"])[0]
        assert mean_difference == pytest.approx(differences[label].mean(), abs=5.1e-5)
    assert shown["baseline"]["p"] == "" and shown["baseline"]["delta"] == ""


def test_the_run_information_shows_what_the_store_recorded(study_dir):
    import platform

    import torch

    import reglab

    html = (study_dir / "report.html").read_text()
    section = html[html.index('<section id="run-info">'):]
    cells = dict(re.findall(r'<tr><td class="name">([^<]*)</td><td class="name">([^<]*)</td>'
                            r'</tr>', section))
    meta = _stored_meta(study_dir)
    # what the store recorded is what ran here
    assert meta["versions"] == {"python": platform.python_version(),
                                "torch": torch.__version__, "reglab": reglab.__version__}
    assert meta["device"] == "cpu" and meta["precision"] == "float32"
    # and the page shows it
    shown_versions = dict(item.split(" ", 1) for item in cells["versions"].split(", "))
    assert shown_versions == meta["versions"]
    assert cells["device"] == meta["device"]
    assert cells["precision"] == meta["precision"]
    assert cells["seeds"] == "0, 1, 2" and cells["epochs (at most)"] == "5"
    with sqlite3.connect(study_dir / "study.db") as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
        populations = dict(db.execute("SELECT population, COUNT(*) FROM runs "
                                      "GROUP BY population"))
    shown_statuses = {s: int(n) for n, s in
                      (item.split(" ") for item in cells["runs"].split(", "))}
    assert shown_statuses == statuses and sum(statuses.values()) == 33
    # the populations table: runs per population and its stored training time
    # (l2_path's point 1e-2 repeats l2: its runs are twins, stored as copies of l2's)
    shown_populations = re.findall(r'<tr><td class="name"><code>([^<]*)</code></td>'
                                   r'<td class="name">[^<]*</td><td>(\d+)(?: \(\+(\d+) '
                                   r'twins\))?</td><td>([0-9.]+) s</td></tr>', section)
    walls, copies = meta["population_wall_time"], meta["copies"]
    assert {key for key, *_ in shown_populations} == set(populations) == set(walls)
    assert sorted(copies) == [f"l2_path[kernel_regularizer.l2=0.01]/seed={s}" for s in range(3)]
    for key, runs, twins, wall in shown_populations:
        assert int(runs) + int(twins or 0) == populations[key]
        assert int(twins or 0) == sum(_population_of(study_dir, run) == key for run in copies)
        assert walls[key] > 0 and float(wall) == pytest.approx(walls[key], abs=0.051)


def test_a_killed_report_leaves_no_process_behind(study_dir, tmp_path):
    """`reglab report` draws the augmentation grids in a forked child; a `kill -9` of the
    report while that child works used to leave it waiting on its pipe for ever (holding
    stdout, so `reglab report DIR | tee log` never ended). It now dies with its parent."""
    import signal
    import sys
    import time

    copy = tmp_path / "copy"
    shutil.copytree(study_dir, copy)
    shutil.rmtree(copy / "plots", ignore_errors=True)
    process = subprocess.Popen([sys.executable, "-m", "reglab.cli", "report", str(copy)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children() -> list[int]:
        found = []
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == process.pid:  # its parent
                found.append(int(status.parent.name))
        return found

    deadline = time.monotonic() + 60
    while not children() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child = children()
    if not child:
        pytest.skip("the report ended (or drew in-process) before its child could be seen")
    process.send_signal(signal.SIGKILL)
    process.wait()

    def alive(pid: int) -> bool:  # running, not a zombie waiting for its reaper
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while alive(child[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = alive(child[0])
    if left:
        os.kill(child[0], signal.SIGKILL)
    assert not left, "the augmentation child outlived the killed report"
