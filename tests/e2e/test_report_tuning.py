"""The report's Tuning section end to end: a tiny tuning study -> `reglab run` -> report.html,
its figures checked against Optuna's journal and its table against the store; a grid
study's report has no such section."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
from html import unescape
from pathlib import Path
from string import Template

import numpy as np
import pytest
from click.testing import CliRunner

from reglab.cli import main

pytestmark = pytest.mark.e2e

GRID_SECTIONS = ("verdict", "curves", "gap", "weights", "paths", "augmentation", "run-info")
TUNING_SECTIONS = ("verdict", "tuning", *GRID_SECTIONS[1:])
TUNING_PLOTS = ("tuning-history.png", "tuning-importances.png",
                "tuning-intermediate-values.png", "tuning-parameters.png")
# a variant name with markup and math characters: escaped on the page, plain in the figures
ODD = "dropout_$1_<i>"

STUDY = Template("""
name = "tiny-tune-report"
$top
[data]
dataset = "data.npz"
validation_split = 0.25
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "Adam", learning_rate = 0.01 }
epochs = $epochs
batch_size = 16
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = $l2 }
$learning_rate
[variants."$odd"]
dropout = $dropout
""")

TUNING = STUDY.substitute(
    epochs=4, odd=ODD, top='[tune]\ntrials = 8\nbatch = 4\nsampler = "random"\n'
                          'pruner = "successive_halving"\nconfirm_seeds = 2',
    l2="{ log = [1e-5, 1e-1] }", learning_rate="learning_rate = { log = [1e-3, 1e-1] }",
    dropout="{ linear = [0.0, 0.6] }")
GRID = STUDY.substitute(epochs=2, odd=ODD, top="seeds = 2", l2=0.01, learning_rate="", dropout=0.2)


def _write(directory: Path, text: str) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((160, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(directory / "data.npz", x=x, y=y, x_test=x[:40], y_test=y[:40])
    path = directory / "study.toml"
    path.write_text(text)
    return path


def _run(root: Path, text: str) -> Path:
    study = _write(root, text)
    out = root / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'}" in result.output
    return out


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("tuned"), TUNING)


def _journal(out: Path) -> list:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    return optuna.load_study(study_name="reglab", storage=storage).get_trials(deepcopy=False)


def _headings(html: str) -> list[tuple[str, str]]:
    """``(section id, its <h2>)`` in page order."""
    return re.findall(r'<section id="([^"]+)">\n<h2>([^<]*)</h2>', html)


def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]


def test_the_tuning_section_follows_the_verdict_and_the_numbers_follow_it(tuned):
    html = (tuned / "report.html").read_text()
    headings = _headings(html)
    assert [key for key, _ in headings] == list(TUNING_SECTIONS)
    assert [title.split(". ", 1)[0] for _, title in headings] == [
        str(i) for i in range(1, len(TUNING_SECTIONS) + 1)]
    assert headings[1][1] == "2. Tuning" and headings[2][1] == "3. Learning curves"
    nav = re.search(r"<nav>(.*)</nav>", html).group(1)
    assert re.findall(r'href="#([^"]+)"', nav) == list(TUNING_SECTIONS)


def test_the_tuning_figures_are_embedded_and_written_beside_the_page(tuned):
    html = (tuned / "report.html").read_text()
    section = _section(html, "tuning")
    shown = re.findall(r'<a href="plots/([^"]+)">', section)
    assert sorted(shown) == sorted(TUNING_PLOTS)
    files = {p.name for p in (tuned / "plots").glob("*.png")}
    assert set(TUNING_PLOTS) <= files
    embedded = [base64.b64decode(s) for s in
                re.findall(r'<img src="data:image/png;base64,([^"]*)"', section)]
    assert sorted(embedded) == sorted((tuned / "plots" / f).read_bytes() for f in TUNING_PLOTS)
    # the variant's name is escaped on the page (captions and table)
    assert "<i>" not in html and "dropout_$1_&lt;i&gt;" in html


def test_the_tuning_table_is_the_store_s_summary_and_the_journal_s_trials(tuned):
    html = (tuned / "report.html").read_text()
    table = _section(html, "tuning")
    cells = {unescape(k): unescape(v) for k, v in re.findall(
        r'<tr><td class="name">([^<]*)</td><td class="name">([^<]*)</td></tr>', table)}
    with sqlite3.connect(tuned / "study.db") as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'tuning'").fetchone()
    summary = json.loads(value)
    trials = _journal(tuned)
    states = [t.state.name for t in trials]
    assert cells["trials asked"] == str(len(trials)) == "8"
    assert cells["trials complete"] == str(states.count("COMPLETE"))
    assert cells["trials pruned"] == str(states.count("PRUNED")) != "0"
    assert cells["trials failed"] == "0"
    assert cells["model-epochs trained"] == str(summary["model_epochs"]) == str(
        sum(t.user_attrs["model_epochs"] for t in trials))
    assert cells["model-epochs saved by pruning"] == str(summary["pruning_saved"])
    assert summary["pruning_saved"] > 0
    assert cells["trials per population (at most)"] == "4"
    assert cells["tuning time"] == f"{summary['wall_time']:.1f} s"
    chosen = summary["chosen"]
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert chosen["number"] == best.number
    assert cells["chosen trial"] == f"{best.number}, by the best on validation"
    assert cells["chosen variant"] == chosen["variant"]
    assert cells["chosen trial's val_accuracy"] == f"{best.value:.4f}"
    for path, value in chosen["point"]:
        assert f"{path}={value:.6g}" in cells["chosen values"]


def _read(out: Path):
    from reglab.report.collect import collect
    from reglab.report.tuning import journal_file, read_trials

    results = collect(out)
    return read_trials(results, journal_file(results))


def test_the_history_plots_the_journal_s_values_and_the_running_best(tuned):
    from matplotlib.colors import to_rgb

    from reglab.report.tuning import PRUNED_COLOR, optimization_history

    tuning = _read(tuned)
    trials = _journal(tuned)
    figure = optimization_history(tuning)
    (ax,) = figure.axes
    complete = {t.number: t.value for t in trials if t.state.name == "COMPLETE"}
    pruned = {t.number: t.intermediate_values[max(t.intermediate_values)]
              for t in trials if t.state.name == "PRUNED"}
    assert pruned
    dots, crosses, rings = {}, {}, {}
    for collection in ax.collections:
        points = {int(x): y for x, y in collection.get_offsets()}
        edge = tuple(np.round(collection.get_edgecolor()[0][:3], 3))
        if not len(collection.get_facecolor()):
            rings.update(points)
        elif edge == tuple(np.round(to_rgb(PRUNED_COLOR), 3)):
            crosses.update(points)
        else:
            dots.update(points)
    best = max(complete, key=lambda n: (complete[n], -n))
    assert rings == pytest.approx({best: complete[best]})  # the confirmed trial
    assert dots == pytest.approx(complete)
    assert crosses == pytest.approx(pruned)
    (line,) = ax.get_lines()
    values = [complete[n] for n in sorted(complete)]
    running = np.maximum.accumulate(values)
    np.testing.assert_allclose(line.get_ydata(), [*running, running[-1]])
    np.testing.assert_allclose(line.get_xdata(), [*sorted(complete), len(trials) - 1])


def test_one_panel_per_parameter_on_its_scale(tuned):
    from reglab.report.tuning import parameter_panels

    tuning = _read(tuned)
    figure = parameter_panels(tuning)
    panels = {ax.get_title().replace(r"\$", "$"): ax for ax in figure.axes if ax.get_visible()}
    assert list(panels) == ["variant", "l2:kernel_regularizer.l2", "l2:learning_rate",
                            f"{ODD}:dropout"]
    assert panels["l2:kernel_regularizer.l2"].get_xscale() == "log"
    assert panels["l2:learning_rate"].get_xscale() == "log"
    assert panels[f"{ODD}:dropout"].get_xscale() == "linear"
    names = [t.get_text().replace(r"\$", "$") for t in panels["variant"].get_xticklabels()]
    assert names == ["baseline", "l2", ODD]
    # every complete trial that drew the parameter, at its value and objective
    trials = [t for t in _journal(tuned) if t.state.name == "COMPLETE"]
    for name in ("l2:kernel_regularizer.l2", f"{ODD}:dropout"):
        drawn = sorted((t.params[name], t.value) for t in trials if name in t.params)
        plotted = sorted(tuple(p) for c in panels[name].collections
                         if len(c.get_facecolor()) for p in c.get_offsets())
        np.testing.assert_allclose(plotted, drawn)


def test_intermediate_values_show_where_pruning_stopped(tuned):
    from reglab.report.tuning import intermediate_values

    figure = intermediate_values(_read(tuned))
    (ax,) = figure.axes
    trials = _journal(tuned)
    curves = {c.get_label(): c.get_segments() for c in ax.collections}
    assert sum(len(segments) for segments in curves.values()) == len(trials)
    stopped = sorted(tuple(c[-1]) for c in curves["pruned"])
    expected = sorted((max(t.intermediate_values) + 1,
                       t.intermediate_values[max(t.intermediate_values)])
                      for t in trials if t.state.name == "PRUNED")
    np.testing.assert_allclose(stopped, expected)
    assert max(epoch for epoch, _ in expected) < 4  # pruned before the last epoch
    (crosses,) = [line for line in ax.get_lines() if line.get_marker() == "x"]
    np.testing.assert_allclose(sorted(zip(crosses.get_xdata(), crosses.get_ydata())), expected)
    for trial in trials:  # every curve is the journal's intermediate values
        label = "pruned" if trial.state.name == "PRUNED" else \
            trial.params["variant"].replace("$", r"\$")
        steps = sorted(trial.intermediate_values)
        curve = [[s + 1, trial.intermediate_values[s]] for s in steps]
        assert any(np.allclose(segment, curve) for segment in curves[label]), trial.number


def test_a_grid_study_has_no_tuning_section(tmp_path):
    out = _run(tmp_path, GRID)
    html = (out / "report.html").read_text()
    headings = _headings(html)
    assert [key for key, _ in headings] == list(GRID_SECTIONS)
    assert [title.split(". ", 1)[0] for _, title in headings] == [
        str(i) for i in range(1, len(GRID_SECTIONS) + 1)]
    assert 'id="tuning"' not in html and 'href="#tuning"' not in html
    assert not list((out / "plots").glob("tuning-*.png"))


def test_a_journal_that_cannot_be_read_is_a_note(tuned, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tuned, out)
    (out / "optuna.journal").write_text("not a journal\n")
    result = CliRunner().invoke(main, ["report", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    section = _section((out / "report.html").read_text(), "tuning")
    assert "Optuna&#39;s journal (optuna.journal) could not be read:" in section
    assert "<img" not in section and "trials asked</td><td class=\"name\">8<" in section
    assert not list((out / "plots").glob("tuning-*.png"))  # the earlier ones removed


# ---- importances: a failure or a partial answer is said, not drawn as if whole ----------------


def _study(trials: int, conditional: bool = True):
    """An in-memory study over two variants, each with its own parameter (as a tuning's)."""
    import optuna

    from reglab.report.tuning import TuningTrials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        variant = trial.suggest_categorical("variant", ["l2", "dropout"])
        if variant == "l2" or not conditional:
            return 1 - trial.suggest_float("l2:kernel_regularizer.l2", 1e-5, 1e-1, log=True)
        return trial.suggest_float("dropout:dropout", 0.0, 0.6)

    study.optimize(objective, n_trials=trials)
    names = ("variant", "l2:kernel_regularizer.l2", "dropout:dropout")
    return TuningTrials("val_accuracy", "maximize", study.get_trials(), ("l2", "dropout"),
                        tuple(n for n in names if any(n in t.params for t in study.trials)),
                        study, None)


def test_importances_of_too_few_trials_are_a_note():
    from reglab.report.tuning import importances

    figure, note = importances(_study(2))
    assert figure is None and "at least 4 complete trials" in note and "has 2" in note


def test_importances_that_optuna_cannot_compute_are_a_note(monkeypatch):
    import optuna

    from reglab.report.tuning import importances

    def fails(study, **_):
        raise RuntimeError("no spread\nsecond line")

    monkeypatch.setattr(optuna.importance, "get_param_importances", fails)
    figure, note = importances(_study(12))
    assert figure is None
    assert note == "Optuna could not compute parameter importances: no spread"


def test_importances_name_the_parameters_an_evaluator_left_out(monkeypatch):
    """An evaluator that assesses only the parameters of every complete trial (fANOVA, the
    default before Optuna 5) leaves the variants' own parameters out: the caption says so."""
    import optuna

    from reglab.report.tuning import importances

    def in_every_trial(study, **_):
        complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        common = set.intersection(*(set(t.params) for t in complete))
        return {name: 1.0 / len(common) for name in sorted(common)}

    monkeypatch.setattr(optuna.importance, "get_param_importances", in_every_trial)
    figure, caption = importances(_study(16))
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["variant"]
    assert "Not assessed: l2:kernel_regularizer.l2, dropout:dropout" in caption
    figure, caption = importances(_study(16, conditional=False))
    assert "Not assessed" not in caption and len(figure.axes[0].get_yticklabels()) == 2


def test_optuna_s_default_importances_cover_a_conditional_space():
    from reglab.report.tuning import importances

    figure, caption = importances(_study(30))
    if figure is None:  # an Optuna whose default evaluator needs scikit-learn
        pytest.skip(caption)
    labels = {t.get_text() for t in figure.axes[0].get_yticklabels()}
    if "Not assessed" in caption:  # an Optuna whose default evaluator skips them
        assert labels == {"variant"}
    else:
        assert labels == {"variant", "l2:kernel_regularizer.l2", "dropout:dropout"}
        assert "a variant's own ones too" in caption


# ---- the table's other cases, and a minimized objective ----------------------------------------


def _results(meta: dict):
    from types import SimpleNamespace

    from reglab.tune.spec import TuneSpec

    return SimpleNamespace(spec=SimpleNamespace(tune=TuneSpec(objective="val_loss",
                                                              direction="minimize")),
                           meta=meta)


def test_the_table_names_the_1_se_rule_and_a_tuning_without_a_chosen_trial():
    from reglab.report.tuning import summary_rows

    meta = {"tuning": {"trials": {"complete": 3, "pruned": 1, "failed": 0}, "asked": 4,
                       "model_epochs": 11, "pruning_saved": 1, "wall_time": 2.25,
                       "population_size": 4, "journal": "optuna.journal",
                       "chosen": {"number": 2, "variant": "l2", "rule": "one_se",
                                  "point": [["kernel_regularizer.l2", 0.00123456789]],
                                  "value": 0.5, "best_number": 1, "standard_error": 0.0125}}}
    rows = dict(summary_rows(_results(meta), None))
    assert rows["objective"] == "val_data_loss (val_loss without the penalties) (minimize)"
    assert rows["chosen trial"] == "2, by the 1-SE rule (SE 0.0125; the best was trial 1)"
    assert rows["chosen values"] == "kernel_regularizer.l2=0.00123457"
    assert rows["chosen trial's val_data_loss"] == "0.5000" and rows["tuning time"] == "2.2 s"
    del meta["tuning"]["chosen"]
    assert dict(summary_rows(_results(meta), None))["chosen trial"] == \
        "none (no trial completed)"
    rows = dict(summary_rows(_results({}), None))
    assert rows["chosen trial"] == "none yet (the tuning has not finished)"
    assert rows["trials asked"] == rows["model-epochs trained"] == "—"


def test_the_running_best_of_a_minimized_objective_is_the_lowest_so_far():
    import dataclasses

    from reglab.report.tuning import optimization_history

    tuning = _study(12)
    values = [1 - t.value for t in tuning.complete]
    trials = list(tuning.trials)
    for trial, value in zip(trials, values):
        trial.value = value
    figure = optimization_history(dataclasses.replace(tuning, direction="minimize",
                                                      trials=trials))
    (line,) = figure.axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata()[:-1], np.minimum.accumulate(values))


def test_population_based_training_shows_the_schedule_and_no_importances():
    """With population-based training a trial's parameters are only its starting values:
    no importances of them, and the chosen trial's schedule (what was confirmed) is shown."""
    import dataclasses

    from reglab.report.tuning import importances, summary_rows

    tuning = dataclasses.replace(_study(12), scheduler="pbt", chosen=3)
    figure, note = importances(tuning)
    assert figure is None and "population-based training" in note
    chosen = tuning.trials[3]
    chosen.set_user_attr("schedule", [[0, {"kernel_regularizer.l2": 0.001}],
                                      [2, {"kernel_regularizer.l2": 0.002}],
                                      [3, {"kernel_regularizer.l2": 0.004}]])
    chosen.set_user_attr("copies", [{"epoch": 1, "from": 0, "values": {}},
                                    {"epoch": 2, "from": 1, "values": {}}])
    results = _results({"tuning": {"chosen": {
        "number": 3, "variant": "l2", "rule": "best", "value": 0.5,
        "point": [["kernel_regularizer.l2", 0.01]]}}})
    results.spec.tune = dataclasses.replace(results.spec.tune, scheduler="pbt")
    rows = dict(summary_rows(results, tuning))
    assert rows["chosen trial's starting values"] == "kernel_regularizer.l2=0.01"
    assert rows["chosen schedule (confirmed)"] == (
        "epochs 1–2: kernel_regularizer.l2=0.001; epoch 3: kernel_regularizer.l2=0.002; "
        "from epoch 4: kernel_regularizer.l2=0.004")
    assert rows["exploits (a trial copied another's state)"] == "2"
