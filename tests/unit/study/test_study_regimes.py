"""[data] train_size, label_noise and noisy_validation: parsing, planning, each run's data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reglab.study import StudySpecError, parse_study
from reglab.study.build import check_study, load_study_data, population_data, regime_data
from reglab.study.plan import plan_study
from reglab.study.regimes import Regime, regime_points, resolve_regime
from reglab.study.spec import StudySpec

STUDY = """
seeds = 3
[data]
dataset = "data.npz"
validation_split = 0.2
DATA
[model]
input_shape = [4]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
epochs = 1
[variants.baseline]
[variants.dropout]
dropout = 0.3
[variants.bn]
batch_norm = true
"""


def study(tmp_path: Path, data: str = "", extra: str = "") -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [150, 100, 50])
    rng.shuffle(y)
    x = rng.random((300, 4)) + y[:, None]
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x[:60], y_test=y[:60])
    path = tmp_path / "study.toml"
    path.write_text(STUDY.replace("DATA", data) + extra)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StudySpecError) as caught:
        parse_study(path)
    return caught.value.problems


def test_values_lists_and_grids(tmp_path):
    spec = parse_study(study(tmp_path, "train_size = [30, 0.5, 240]\nlabel_noise = [0, 0.3]"))
    assert spec.data.train_size == (30, 0.5, 240) and spec.data.label_noise == (0.0, 0.3)
    assert isinstance(spec.data.train_size[0], int) and isinstance(spec.data.train_size[1], float)
    grid = parse_study(study(tmp_path, "train_size = { log = [10, 1000], n = 3 }"))
    assert grid.data.train_size == (10, 100, 1000)
    rates = parse_study(study(tmp_path, "label_noise = { linear = [0, 0.4], n = 3 }"))
    assert rates.data.label_noise == pytest.approx((0.0, 0.2, 0.4))
    matrix = "label_noise = [0, { matrix = [[0.8, 0.2, 0], [0, 1, 0], [0, 0.5, 0.5]] }]"
    spec = parse_study(study(tmp_path, matrix + "\nnoisy_validation = false"))
    assert spec.data.label_noise[1] == ((0.8, 0.2, 0.0), (0.0, 1.0, 0.0), (0.0, 0.5, 0.5))
    assert spec.data.noisy_validation is False
    back = StudySpec.from_canonical(json.loads(spec.canonical_json()))
    assert back == spec and back.fingerprint() == spec.fingerprint()
    hash(back.data)  # a dict key of the executors' data cache


@pytest.mark.parametrize("data", ["train_size = 1.0", "label_noise = 0", "label_noise = 0.0",
                                  "train_size = [1.0]\nlabel_noise = [0]",
                                  "noisy_validation = true", "noisy_validation = false"])
def test_the_default_regime_is_today_s_study(tmp_path, data):
    plain = parse_study(study(tmp_path))
    same = parse_study(study(tmp_path, data))
    if data != "noisy_validation = false":  # without noise it changes nothing, but is written
        assert same.canonical_json() == plain.canonical_json()
        assert same.fingerprint() == plain.fingerprint()
    plan, plain_plan = plan_study(same), plan_study(plain)
    assert [r.run_id for r in plan.runs] == [r.run_id for r in plain_plan.runs]
    assert [(p.key, [r.run_id for r in p.runs]) for p in plan.populations] == \
        [(p.key, [r.run_id for r in p.runs]) for p in plain_plan.populations]
    assert "train_size" not in json.loads(same.canonical_json())["data"]


def test_every_problem_is_reported_at_once_with_its_key(tmp_path):
    found = problems(study(tmp_path, """train_size = [100, 0, 3000.0, 1.5, "all", 100]
label_noise = [-0.1, 0.2, { matrix = [[0.5, 0.4], [0, 1]] }, { matrix = [[1]] }, { rate = 1 }]
noisy_validation = "no"
"""))
    assert found == [
        "data.train_size[1]: expected an int >= 1 (training samples) or a number in (0, 1] (a "
        "fraction of the training split). Got 0.",
        "data.train_size[2]: a float is a fraction, expected in (0, 1]; for a number of samples "
        "write an int (3000). Got 3000.0.",
        "data.train_size[3]: expected an int >= 1 (training samples) or a number in (0, 1] (a "
        "fraction of the training split). Got 1.5.",
        "data.train_size[4]: expected an int >= 1 (training samples) or a number in (0, 1] (a "
        "fraction of the training split). Got 'all'.",
        "data.train_size[5]: the value 100 is listed already, at [0] (runs would be named "
        "alike). Expected distinct values.",
        "data.label_noise[0]: expected a number in [0, 1] (the rate of replaced training "
        "labels) or { matrix = [[...], ...] } (rows: true class, each a distribution over the "
        "noisy class). Got -0.1.",
        "data.label_noise[2].matrix[0]: expected numbers >= 0 that sum to 1 (the distribution "
        "of class 0's noisy label). Got [0.5, 0.4].",
        "data.label_noise[3].matrix: expected a square matrix of numbers, one row per class "
        "(at least 2). Got [[1]].",
        "data.label_noise[4]: expected { matrix = [[...], ...] }. Got {'rate': 1}.",
        "data.noisy_validation: expected true or false. Got 'no'."]


def test_a_tuning_study_searches_in_one_regime_and_refuses_an_axis(tmp_path):
    tune = """
[tune]
objective = "val_accuracy"
trials = 4
"""
    text = study(tmp_path, "label_noise = [0, 0.3]").read_text().replace(
        "[variants.dropout]\ndropout = 0.3", "[variants.dropout]\ndropout = [0.1, 0.5]").replace(
        "seeds = 3\n", "")
    path = tmp_path / "tune.toml"
    path.write_text(text + tune)
    assert any(p.startswith("data.label_noise: a tuning study ([tune]) searches in one data "
                            "regime") for p in problems(path))
    path.write_text(text.replace("label_noise = [0, 0.3]", "label_noise = 0") + tune)
    parse_study(path)  # the default regime is no regime
    path.write_text(text.replace("label_noise = [0, 0.3]",
                                 "label_noise = 0.3\ntrain_size = 60") + tune)
    spec = parse_study(path)
    from reglab.tune.runner import trial_data

    data = load_study_data(spec)
    drawn = trial_data(spec, data)
    assert len(drawn.y_train) == 60 and len(drawn.y_val) == len(data.y_val)
    assert np.array_equal(drawn.x_test, data.x_test) and np.array_equal(drawn.y_test, data.y_test)
    kept = drawn.y_train == data.y_train[subset_rows(data.x_train, drawn.x_train)]
    assert abs((~kept).mean() - 0.3) < 1e-9  # exactly 18 of the 60 replaced
    assert (drawn.y_val != data.y_val).mean() == pytest.approx(0.3, abs=0.5 / len(data.y_val))


def subset_rows(x_all, x_some):
    """The rows of ``x_all`` that ``x_some``'s rows are (the draw keeps the order)."""
    index = {row.tobytes(): i for i, row in enumerate(x_all)}
    return np.array([index[row.tobytes()] for row in x_some])


def test_the_plan_runs_every_regime_and_names_its_runs(tmp_path):
    spec = parse_study(study(tmp_path, "train_size = [30, 120]\nlabel_noise = [0, 0.3]"))
    plan = plan_study(spec)
    assert regime_points(spec.data)[1] == (("train_size", 30), ("label_noise", 0.3))
    assert len(plan.runs) == 4 * 3 * 3
    assert plan.runs[0].run_id == "train_size=30,label_noise=0/baseline/seed=0"
    assert plan.runs[-1].run_id == "train_size=120,label_noise=0.3/bn/seed=2"
    assert plan.describe() == ("3 variants × 4 data regimes (2 train_size × 2 label_noise) × 3 "
                               "seeds = 36 runs in 12 populations")
    for population in plan.populations:  # one training subset (size and seed), both noises
        assert len({(r.regime[0], r.seed) for r in population.runs}) == 1
        assert {dict(r.regime)["label_noise"] for r in population.runs} == {0.0, 0.3}
    single = plan_study(parse_study(study(tmp_path, "train_size = 60")))
    assert single.runs[0].run_id == "baseline/seed=0"  # one value is a setting, not an axis
    assert len(single.populations) == 2 * 3
    assert resolve_regime(single.spec.data, single.runs[0].regime) == Regime(60)


def test_each_run_gets_its_regime_s_data_and_the_test_set_is_never_changed(tmp_path):
    spec = parse_study(study(tmp_path, "train_size = [30, 0.5]\nlabel_noise = [0, 0.3]"))
    data = check_study(plan_study(spec))
    plan = plan_study(spec)
    run = next(r for r in plan.runs if r.regime == (("train_size", 30), ("label_noise", 0.3))
               and r.seed == 1)
    regime, facts = regime_data(spec, run, data)
    assert len(regime.y_train) == 30 and facts["train_samples"] == 30
    assert np.bincount(regime.y_train, minlength=3).sum() == 30
    assert facts["label_noise_rate"] == pytest.approx(9 / 30)  # round(0.3 · 30) labels
    assert facts["val_label_noise_rate"] == pytest.approx(18 / 60)  # noisy validation
    assert regime.x_test is data.x_test and regime.y_test is data.y_test  # never noisy
    assert regime.x_val is data.x_val  # never subsampled
    pool = {tuple(row): label for row, label in zip(data.x_train, data.y_train)}
    clean = np.array([pool[tuple(row)] for row in regime.x_train])  # each row's own label
    assert (clean != regime.y_train).sum() == 9
    clean_run = next(r for r in plan.runs if r.regime == (("train_size", 30),
                                                          ("label_noise", 0.0)) and r.seed == 1)
    clean_data, facts = regime_data(spec, clean_run, data)
    assert np.array_equal(clean_data.x_train, regime.x_train)  # noise changes labels only
    assert "label_noise_rate" not in facts
    half = next(r for r in plan.runs if r.regime[0] == ("train_size", 0.5) and r.seed == 1)
    assert len(regime_data(spec, half, data)[0].y_train) == 120  # half of the 240 left
    population = next(p for p in plan.populations if run in p.runs)
    facts = population_data(spec, population, data)[1]
    assert facts[population.runs.index(run)] == regime_data(spec, run, data)[1]
    clean_val = parse_study(study(tmp_path, "label_noise = 0.3\nnoisy_validation = false"))
    noisy_run = plan_study(clean_val).runs[0]
    kept, facts = regime_data(clean_val, noisy_run, data)
    assert np.array_equal(kept.y_val, data.y_val) and "val_label_noise_rate" not in facts


def test_without_regimes_the_data_are_today_s(tmp_path):
    spec = parse_study(study(tmp_path))
    data = load_study_data(spec)
    assert regime_data(spec, plan_study(spec).runs[0], data) == (data, {})


def test_regimes_that_do_not_fit_the_data_are_named(tmp_path):
    spec = parse_study(study(tmp_path, "train_size = [2, 100, 500]\n"
                                       "label_noise = [0.1, { matrix = [[0.9, 0.1], [0, 1]] }]"))
    with pytest.raises(StudySpecError) as caught:
        check_study(plan_study(spec))
    assert caught.value.problems == [
        "data.train_size[0]: expected at least 3 training samples (one per class, 3 classes). "
        "Got 2.",
        "data.train_size[2]: expected at most the 240 training samples left after the "
        "validation split. Got 500. A fraction in (0, 1] takes a share of them.",
        "data.label_noise[1].matrix: expected 3 × 3, a row and a column per class of the data "
        "(labels 0 to 2). Got 2 × 2."]


def test_a_fraction_keeps_its_point_and_the_whole_split_is_one_population(tmp_path):
    spec = parse_study(study(tmp_path, "train_size = [0.5, 1.0]"))
    plan = plan_study(spec)
    assert {r.run_id.split("/")[0] for r in plan.runs} == {"train_size=0.5", "train_size=1.0"}
    whole = [p for p in plan.populations if p.runs[0].regime == (("train_size", 1.0),)]
    assert len(whole) == 2 and {len(p.runs) for p in whole} == {6, 3}  # seeds together
    assert len(plan.populations) == 2 + 2 * 3  # the half: one population per seed


def test_a_regime_without_baseline_runs_gets_no_verdicts_not_another_baseline():
    from reglab.storage import RunRecord
    from reglab.study.report_table import rank_regimes

    rng = np.random.default_rng(0)
    runs = []
    for regime in ({"label_noise": 0.0}, {"label_noise": 0.3}):
        for variant in ("baseline", "l2", "dropout"):
            for seed in range(3):
                diverged = variant == "baseline" and regime["label_noise"] == 0.3
                runs.append(RunRecord(
                    f"{variant}/{seed}", variant, {}, seed, "p", {},
                    status="diverged" if diverged else "done",
                    metrics={} if diverged else {"test_accuracy": 0.8 + rng.normal(0, 0.01),
                                                 "val_accuracy": 0.8},
                    regime=regime))
    rankings = rank_regimes(runs, dataset="fashion_mnist")
    assert [r.label for r in rankings] == ["label_noise=0"]
    assert rankings[0].ranking.baseline == "baseline"


def test_two_train_sizes_that_are_one_size_are_refused(tmp_path):
    from reglab.study.build import check_regime_data

    data = load_study_data(parse_study(study(tmp_path)))
    half = int(np.floor(0.5 * len(data.y_train) + 0.5))  # a fraction rounds halves up
    spec = parse_study(study(tmp_path, f"train_size = [0.5, {half}, 30]"))
    found = check_regime_data(spec, data)
    assert any(p.startswith("data.train_size[1]: expected sizes that differ") for p in found)
    assert not check_regime_data(parse_study(study(tmp_path, "train_size = [0.5, 30]")), data)


@pytest.mark.parametrize(("noise", "said"), [
    ("[0, 0.001]", "data.label_noise[1]: expected label noise values that replace different "
                   "labels; 0.001 and 0.0 both replace 0 of 240 training labels and 0 of 60 "
                   "validation labels: one regime twice."),
    ("[0.1, 0.101]", "data.label_noise[1]: expected label noise values that replace "
                     "different labels; 0.101 and 0.1 both replace 24 of 240 training labels "
                     "and 6 of 60 validation labels"),
    ("0.001", "data.label_noise: replaces no label (0 of 240 training labels and 0 of 60 "
              "validation labels): the clean data, under a noisy name. Expected 0, or a rate "
              "of at least 0.00208"),
    ("[0, { matrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1]] }]",
     "data.label_noise[1]: expected label noise values that replace different labels"),
])
def test_label_noise_that_replaces_the_labels_of_another_value_is_refused(tmp_path, noise,
                                                                         said):
    """As two train_size values of one count are: the same labels replaced (a rate that
    rounds to another's count, to none, an identity matrix) would be one regime twice, or
    the clean data under a noisy name."""
    from reglab.study.build import check_regime_data

    data = load_study_data(parse_study(study(tmp_path)))
    found = check_regime_data(parse_study(study(tmp_path, f"label_noise = {noise}")), data)
    assert any(p.startswith(said) for p in found), found
    for fine in ("[0, 0.3]", "[0.1, 0.12]", "0.05", "[0, { matrix = [[0.8, 0.2, 0], [0, 1, 0], "
                 "[0, 0.5, 0.5]] }]"):
        assert not check_regime_data(parse_study(study(tmp_path, f"label_noise = {fine}")),
                                     data), fine


def test_runs_whose_store_lost_the_regime_column_are_grouped_by_their_run_ids():
    from reglab.storage import RunRecord
    from reglab.study.regimes import regime_from_run_id
    from reglab.study.report_table import rank_regimes

    assert regime_from_run_id("train_size=1000,label_noise=0.3/dropout/seed=2") == \
        {"train_size": 1000, "label_noise": 0.3}
    assert regime_from_run_id("train_size=1.0/baseline/seed=0") == {"train_size": 1.0}
    assert regime_from_run_id("l2_path[l2=0.001]/seed=3") == {}
    assert regime_from_run_id("trial=3/l2/seed=0") == {}
    rng = np.random.default_rng(1)
    runs = [RunRecord(f"label_noise={noise}/{variant}/seed={seed}", variant, {}, seed, "p", {},
                      status="done", metrics={"test_accuracy": 0.8 + rng.normal(0, 0.01),
                                              "val_accuracy": 0.8})
            for noise in ("0", "0.3") for variant in ("baseline", "dropout")
            for seed in range(3)]  # regime {} as read from a store without the column
    rankings = rank_regimes(runs, dataset="fashion_mnist")
    assert [r.label for r in rankings] == ["label_noise=0", "label_noise=0.3"]
    assert all(len(r.ranking.rows) == 2 for r in rankings)
