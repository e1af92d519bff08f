"""The [tune] section and the search ranges of a tuning study's variants."""

from __future__ import annotations

import json

import pytest

from reglab.study.spec import StudySpec, StudySpecError, parse_study
from reglab.tune import space
from reglab.tune.spec import SearchDimension

BASE = """
name = "t"
[data]
dataset = "fashion_mnist"
validation_split = 0.1
[model]
input_shape = [784]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 10, activation = "softmax" }]
[training]
epochs = 2
"""


def parse(text: str) -> StudySpec:
    return parse_study("study.toml", BASE + text)


def problems(text: str) -> list[str]:
    with pytest.raises(StudySpecError) as caught:
        parse(text)
    return caught.value.problems


def test_every_kind_of_range_and_its_canonical_round_trip():
    spec = parse("""
[tune]
trials = 5
seeds = 2
confirm_seeds = 3
[variants.baseline]
[variants.a]
kernel_regularizer = { type = "L1L2", l1 = { log = [1e-6, 1e-2] }, l2 = { linear = [0, 0.1] } }
dropout = [0.0, 0.25, 0.5]
learning_rate = { log = [1e-4, 1e-2], n = 3 }
early_stopping = { patience = { int = [1, 4] } }
""")
    (a,) = [v for v in spec.variants if v.name == "a"]
    assert a.sweeps == ()
    assert {d.path: d.kind for d in a.search} == {
        "kernel_regularizer.l1": "log", "kernel_regularizer.l2": "linear",
        "dropout": "choice", "learning_rate": "choice", "early_stopping.patience": "int"}
    grid = next(d for d in a.search if d.path == "learning_rate").choices
    assert grid == pytest.approx((1e-4, 1e-3, 1e-2))
    assert spec.seeds == (2, 3, 4)  # fresh seeds after the trials' 0 and 1
    assert spec.tune.trial_seeds == (0, 1)
    again = StudySpec.from_canonical(json.loads(spec.canonical_json()))
    assert again == spec and again.fingerprint() == spec.fingerprint()


def test_a_pbt_section_round_trips():
    spec = parse("[tune]\ntrials = 4\nscheduler = 'pbt'\n"
                 "pbt = { interval = 3, quantile = 0.5, factors = [0.5, 2], resample = 0 }\n"
                 "[variants.a]\ndropout = { linear = [0.1, 0.5] }\n")
    tune = spec.tune
    assert (tune.scheduler, tune.pbt_interval, tune.pbt_quantile, tune.pbt_factors,
            tune.pbt_resample, tune.pruner) == ("pbt", 3, 0.5, (0.5, 2.0), 0.0, "none")
    assert StudySpec.from_canonical(json.loads(spec.canonical_json())) == spec


def test_a_grid_study_s_canonical_form_has_no_tuning_keys():
    spec = parse("[variants.baseline]\n[variants.l2]\n"
                 "kernel_regularizer = { type = 'L2', l2 = [0.1, 0.2] }\n")
    stored = json.loads(spec.canonical_json())
    assert "tune" not in stored and all("search" not in v for v in stored["variants"])
    assert spec.variants[1].sweeps[0].values == (0.1, 0.2)  # still a grid


@pytest.mark.parametrize("text, expected", [
    ("[tune]\ntrials = 3\n[variants.baseline]\nlearning_rate = { log = [1e-4, 1e-2] }\n",
     "variants.baseline: the baseline is what the best trial is confirmed against"),
    ("[tune]\ntrials = 3\n[variants.a]\ndropout = { linear = [0.0, 1.0] }\n",
     "variants.a.dropout: expected a number in [0, 1). Got 1.0."),
    ("[tune]\ntrials = 3\n[variants.a]\nlearning_rate = { log = [0, 1e-2] }\n",
     "variants.a.learning_rate.log: bounds must be > 0"),
    ("[tune]\ntrials = 3\n[variants.a]\nlearning_rate = { log = [1e-2, 1e-4] }\n",
     "variants.a.learning_rate.log: low must be <= high"),
    ("[tune]\ntrials = 3\n[variants.a]\nearly_stopping = { patience = { int = [1.5, 3] } }\n",
     "variants.a.early_stopping.patience.int: expected two ints"),
    ("[tune]\ntrials = 3\n[variants.a]\ndropout = [0.1, 0.1]\n",
     "variants.a.dropout: the choices must be distinct"),
    ("[tune]\ntrials = 3\nsampler = 'grid'\n[variants.a]\ndropout = { linear = [0, 0.5] }\n",
     "variants.a.dropout: the grid sampler needs points"),
    # Optuna's grid sampler lists every point: a 1e10-point range filled the memory at run time
    ("[tune]\ntrials = 3\nsampler = 'grid'\n[variants.a]\n"
     "early_stopping = { patience = { int = [1, 10000000000] } }\n",
     "variants.a: the grid sampler's grid would have 10,000,000,000 points; expected at most "
     "100,000."),
    ("[tune]\n[variants.a]\ndropout = { linear = [0, 0.5] }\n",
     "tune: expected a budget"),

    ("[tune]\ntrials = 3\nobjective = 'test_accuracy'\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "tune.objective: expected a validation log"),
    ("[tune]\ntrials = 3\nselect = 'one_se'\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "tune.one_se: the 1-SE rule picks the strongest regularization"),
    ("[tune]\ntrials = 3\nvariants = ['b']\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "tune.variants: no variant 'b'"),
    ("[tune]\ntrials = 3\n[variants.a]\n", "tune: nothing to search"),
    ("seeds = 3\n[tune]\ntrials = 3\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "seeds: a tuning study sets its seeds in [tune]"),
    ("[tune]\ntrials = 3\nwall_time = -1\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "tune.wall_time: expected seconds > 0"),
    # Optuna's samplers seed numpy's RandomState, which takes [0, 2**32)
    ("[tune]\ntrials = 3\nsampler_seed = 4294967296\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "tune.sampler_seed: expected an int >= 0 and <= 4,294,967,295. Got 4294967296."),
    ("[tune]\nmodel_epochs = 30\nscheduler = 'pbt'\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "tune.trials: population-based training trains 'trials' trials at once"),
    ("[tune]\ntrials = 4\nscheduler = 'pbt'\n[variants.a]\ndropout = [0.1, 0.2]\n"
     "[variants.b]\nlearning_rate = [0.1, 0.2]\n",
     "tune.variants: population-based training perturbs one variant's values"),
    ("[tune]\ntrials = 4\nscheduler = 'pbt'\n[variants.a]\n"
     "early_stopping = { patience = { int = [1, 3] } }\n",
     "variants.a.early_stopping.patience: population-based training changes values"),
    ("[tune]\ntrials = 4\nscheduler = 'pbt'\npruner = 'median'\n[variants.a]\n"
     "dropout = [0.1, 0.2]\n", "tune.pruner: population-based training replaces pruning"),
    ("[tune]\ntrials = 4\nscheduler = 'pbt'\npbt = { quantile = 0.7 }\n[variants.a]\n"
     "dropout = [0.1, 0.2]\n", "tune.pbt.quantile: expected a number in (0, 0.5]"),
    ("[tune]\ntrials = 4\npbt = { interval = 2 }\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "tune.pbt: used only with scheduler = 'pbt'"),
    # a trial reports after epochs 1 and 2: a warm-up of 2 would never let the pruner act
    ("[tune]\ntrials = 4\npruner_warmup = 2\n[variants.a]\ndropout = [0.1, 0.2]\n",
     "tune.pruner_warmup: a trial reports after each of its 2 epochs, and a warm-up of 2 "
     "leaves none after which it may be pruned; expected fewer than training.epochs = 2"),
])
def test_bad_tuning_sections_name_their_place(text, expected):
    if text.startswith("seeds"):
        found = problems_with_top(text)
    else:
        found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_a_grid_over_several_candidates_names_those_with_ranges():
    # the baseline counts as a candidate: the variant with ranges is named, and how to pick it
    (found,) = problems("[tune]\ntrials = 3\nsampler = 'grid'\n[variants.baseline]\n"
                        "[variants.a]\ndropout = { linear = [0, 0.5], n = 3 }\n")
    assert found.startswith("tune.sampler: the grid sampler searches one variant's grid")
    assert found.endswith('Got 2 candidate variants (baseline, a), 1 with ranges (a); name one '
                          'with tune.variants = ["a"].')


def problems_with_top(text: str) -> list[str]:
    with pytest.raises(StudySpecError) as caught:
        parse_study("study.toml", text + BASE)
    return caught.value.problems


def test_a_tuning_study_needs_a_validation_split():
    text = (BASE.replace("validation_split = 0.1", "validation_split = 0.0")
            + "[tune]\ntrials = 2\n[variants.a]\ndropout = [0.1, 0.2]\n")
    with pytest.raises(StudySpecError) as caught:
        parse_study("s.toml", text)
    assert any(p.startswith("data.validation_split: a tuning study chooses")
               for p in caught.value.problems)


class FakeTrial:
    """Records what a trial was asked; answers the low end of each range."""

    def __init__(self, picks=None):
        self.asked, self.picks = [], picks or {}

    def suggest_categorical(self, name, choices):
        self.asked.append((name, "categorical", tuple(choices)))
        return self.picks.get(name, choices[-1])

    def suggest_int(self, name, low, high):
        self.asked.append((name, "int", (low, high)))
        return low

    def suggest_float(self, name, low, high, log=False):
        self.asked.append((name, "log" if log else "float", (low, high)))
        return low


def test_a_trial_draws_its_variant_then_that_variant_s_values_only():
    spec = parse("""
[tune]
trials = 3
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = { log = [1e-6, 1e-2] } }
[variants.drop]
dropout = { linear = [0.1, 0.5] }
early_stopping = { patience = { int = [2, 5] } }
""")
    trial = FakeTrial({"variant": "drop"})
    variant, point = space.suggest(trial, spec)
    assert variant == "drop"
    assert trial.asked == [("variant", "categorical", ("baseline", "l2", "drop")),
                           ("drop:dropout", "float", (0.1, 0.5)),
                           ("drop:early_stopping.patience", "int", (2, 5))]
    assert point == (("dropout", 0.1), ("early_stopping.patience", 2))
    (run,) = space.trial_runs(spec, 7, variant, point)
    assert run.run_id == "trial=7/drop[dropout=0.1,early_stopping.patience=2]/seed=0"
    assert run.changes == {"dropout": 0.1, "early_stopping": {"patience": 2}}
    params = {"variant": "drop", "drop:dropout": 0.1, "drop:early_stopping.patience": 2}
    assert space.from_params(spec, params) == (variant, point)
    plan = space.confirmation_plan(spec, variant, point)
    assert sorted(r.run_id for r in plan.runs) == sorted(
        [f"baseline/seed={s}" for s in spec.seeds]
        + [f"drop[dropout=0.1,early_stopping.patience=2]/seed={s}" for s in spec.seeds])


def test_the_corner_plan_builds_each_end_of_each_range():
    spec = parse("""
[tune]
trials = 3
[variants.a]
kernel_regularizer = { type = "L2", l2 = { log = [1e-6, 1e-2] } }
dropout = [0.0, 0.5]
""")
    points = {r.point for r in space.corner_plan(spec).runs}
    assert points == {(("kernel_regularizer.l2", l2), ("dropout", d))
                      for l2 in (1e-6, 1e-2) for d in (0.0, 0.5)}
    assert SearchDimension("x", "int", 1, 3).grid() == (1, 2, 3)


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "grid"])
def test_a_resumed_sampler_takes_its_seed_whatever_the_sampler_seed(sampler):
    """A resumed study reseeds its sampler with sampler_seed and the trials asked: that seed
    stays in numpy's RandomState range (sampler_seed 5,000 once made it 5e9, refused)."""
    pytest.importorskip("optuna")
    from reglab.tune.runner import make_sampler

    spec = parse(f"[tune]\ntrials = 3\nsampler = '{sampler}'\nsampler_seed = 4294967295\n"
                 "[variants.a]\ndropout = [0.1, 0.2]\n")
    for asked in (0, 1, 7):
        sampler_object = make_sampler(spec, asked)
        sampler_object.reseed_rng()  # draws a seed from the seeded RandomState


def test_a_searched_monitor_checks_each_choice():
    """A tuning study's list is a choice: each monitor in it must be one the runs log."""
    text = ("[tune]\ntrials = 3\n[variants.a]\nearly_stopping = { monitor = "
            "['val_loss', 'val_accuracy'], patience = { int = [1, 5] } }\n")
    assert [v.name for v in parse(text).variants] == ["a"]
    with pytest.raises(StudySpecError, match=r"early_stopping.monitor: expected a value the "
                                             r"runs log: .*Got 'val_acc'"):
        parse(text.replace("'val_accuracy'", "'val_acc'"))


@pytest.mark.parametrize(("objective", "expected"), [
    ("val_accuracy", "maximize"), ("val_acc", "maximize"), ("val_auc", "maximize"),
    ("val_loss", "minimize"), ("val_data_loss", "minimize"), ("val_mae", "minimize"),
    ("val_mse", "minimize"), ("val_mean_squared_error", "minimize"),
    ("val_sparse_categorical_crossentropy", "minimize")])
def test_the_default_direction_minimizes_losses_and_errors(objective, expected):
    from reglab.tune.spec import default_direction

    assert default_direction(objective) == expected


@pytest.mark.parametrize("search, said", [
    ("dropout = { linear = [0.0, inf] }", "variants.a.dropout.linear: expected [low, high]"),
    ("dropout = { int = [false, true] }", "variants.a.dropout.int: expected [low, high]"),
    ("dropout = { linear = [0.0, 0.6], step = 0.25 }", "variants.a.dropout: a search range is"),
    ("dropout = [0.3, 0.3]", "variants.a.dropout: the choices must be distinct"),
])
def test_a_wrong_range_is_said_once_without_a_follow_on(search, said):
    """A range that cannot be read is named at its place, once: no second 'Got None' for
    the value it left empty."""
    found = problems(f"[tune]\ntrials = 3\n[variants.baseline]\n[variants.a]\n{search}\n")
    assert len(found) == 1 and found[0].startswith(said) and "Got None" not in found[0]


def test_epochs_from_the_command_line_are_checked_against_the_budget(tmp_path):
    """--epochs past what tune.model_epochs allows one trial is refused before anything
    runs (the file's own check saw only the file's epochs; no trial was asked, and the
    message blamed the ranges)."""
    from reglab.study.runner import prepare_study

    path = tmp_path / "study.toml"
    path.write_text(BASE + "[tune]\nmodel_epochs = 8\nseeds = 2\n[variants.baseline]\n"
                           "[variants.a]\ndropout = [0.1, 0.3]\n")
    prepare_study(path, epochs=4)  # 2 seeds x 4 epochs fit 8
    with pytest.raises(StudySpecError, match=r"--epochs 5: one trial takes 2 seed\(s\) × 5 "
                                             r"epochs = 10 model-epochs, more than the budget "
                                             r"tune.model_epochs = 8.*at most 4 epochs"):
        prepare_study(path, epochs=5)


def test_a_pruner_warmup_is_checked_against_the_epochs_it_runs(tmp_path):
    from reglab.study.runner import prepare_study

    path = tmp_path / "study.toml"
    path.write_text(BASE + "[tune]\ntrials = 4\npruner_warmup = 1\n[variants.a]\n"
                           "dropout = [0.1, 0.3]\n")
    assert prepare_study(path).spec.tune.pruner_warmup == 1  # may be pruned after epoch 2
    with pytest.raises(StudySpecError, match=r"--epochs 1: tune.pruner_warmup = 1 leaves no "
                                             r"epoch after which a trial may be pruned"):
        prepare_study(path, epochs=1)


@pytest.mark.parametrize("override", [{"epochs": 0}, {"epochs": -3}, {"epochs": 1_000_001},
                                      {"seeds": 0}, {"epochs": 2.5}, {"seeds": True}])
def test_the_python_api_checks_its_overrides_as_the_command_line_does(tmp_path, override):
    from reglab.study.runner import prepare_study

    path = tmp_path / "study.toml"
    path.write_text(BASE + "[variants.baseline]\n")
    (name, value), = override.items()
    with pytest.raises(StudySpecError, match=rf"--{name} {value!r}: expected an int in \[1, "):
        prepare_study(path, **override)


def test_a_val_loss_objective_is_named_as_what_it_scores():
    """`objective = "val_loss"` scores the validation loss without the penalties: the outputs
    say so (the stored val_loss, with them, differs from the trial's value)."""
    from reglab.tune.trainer import objective_key, objective_name

    assert objective_key("val_loss") == "val_data_loss"
    assert objective_name("val_loss") == "val_data_loss (val_loss without the penalties)"
    assert objective_name("val_accuracy") == "val_accuracy"
    spec = parse('[tune]\ntrials = 3\nobjective = "val_loss"\n[variants.baseline]\n'
                 '[variants.a]\ndropout = [0.1, 0.3]\n')
    assert "on val_data_loss (val_loss without the penalties) (minimize)" in space.describe(spec)
