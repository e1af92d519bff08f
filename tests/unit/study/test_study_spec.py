"""Study files: parsing, sweeps, and every kind of malformed file reported at once."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from reglab.study import StudySpecError, parse_study
from reglab.study.sweeps import sweep_values

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

BASE = """
seeds = 2
[data]
dataset = "fashion_mnist"
[model]
input_shape = [784]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 10, activation = "softmax" }]
[training]
epochs = 2
[variants.baseline]
"""


def parse(text: str):
    return parse_study("study.toml", text)


def problems(text: str) -> list[str]:
    with pytest.raises(StudySpecError) as caught:
        parse(text)
    return caught.value.problems


def test_the_example_studies_parse():
    tutorial = parse_study(EXAMPLES / "tutorial.toml")
    assert tutorial.seeds == (0, 1, 2, 3, 4)
    assert [v.name for v in tutorial.variants][:4] == ["baseline", "l1", "l2", "l1_l2"]
    l2_path = next(v for v in tutorial.variants if v.name == "l2_path")
    assert l2_path.sweeps[0].path == "kernel_regularizer.l2"
    assert len(l2_path.sweeps[0].values) == 9
    assert parse_study(EXAMPLES / "small.toml").training.epochs == 3


def test_a_spec_comes_back_from_its_canonical_json():
    import json

    from reglab.study.spec import StudySpec

    spec = parse_study(EXAMPLES / "tutorial.toml")
    back = StudySpec.from_canonical(json.loads(spec.canonical_json()))
    assert back == spec
    assert back.fingerprint() == spec.fingerprint()


def test_grids_are_evenly_spaced():
    log = sweep_values({"log": [1e-5, 1e-1], "n": 5}, "x", [])
    assert [round(math.log10(v), 12) for v in log] == [-5, -4, -3, -2, -1]
    assert sweep_values({"linear": [0.1, 0.5], "n": 3}, "x", []) == pytest.approx((0.1, 0.3, 0.5))
    assert sweep_values([0.1, 0.2], "x", []) == (0.1, 0.2)


def test_fingerprint_is_stable_and_follows_the_content():
    a, b = parse(BASE), parse(BASE)
    assert a.fingerprint() == b.fingerprint()
    assert parse(BASE.replace("epochs = 2", "epochs = 3")).fingerprint() != a.fingerprint()


def test_every_problem_is_reported_at_once_with_its_place():
    text = BASE.replace("seeds = 2", "seeds = 0").replace(
        'dataset = "fashion_mnist"', 'dataset = "fashion_mnsit"').replace(
        'type = "Dense", units = 8', 'type = "Dence", units = 8').replace(
        "epochs = 2", "epochs = 2\nbatch_sise = 8").replace(
        "[variants.baseline]", """[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L3", l2 = 0.01 }
[variants.drop]
dropout = 1.5
[variants.path]
kernel_regularizer = { type = "L2", l2 = { log = [1e-5, 1e-1], n = 0 } }
[variants.typo]
dropuot = 0.5
""")
    found = problems(text)
    expected = [
        "seeds: expected an int >= 1. Got 0",
        "data.dataset: unknown dataset 'fashion_mnsit'. Did you mean 'fashion_mnist'?",
        "model.layers[0].type: unknown layer 'Dence'. Did you mean 'Dense'?",
        "training: unknown key 'batch_sise'. Did you mean 'batch_size'?",
        "variants.l2.kernel_regularizer.type: unknown regularizer 'L3'",
        "variants.drop.dropout: expected a number in [0, 1). Got 1.5",
        "variants.path.kernel_regularizer.l2.n: expected a whole number of points >= 1 (an "
        "int, such as 5). Got 0",
        "variants.typo: unknown key 'dropuot'. Did you mean 'dropout'?",
    ]
    for message in expected:
        assert any(message in p for p in found), (message, found)
    assert len(found) == len(expected)


@pytest.mark.parametrize("change, message", [
    (("[variants.baseline]", ""), "variants: expected at least one [variants.NAME] table"),
    (("seeds = 2", "seeds = [1, 1]"), "seeds: expected an int > 0 or a list of distinct ints"),
    (("seeds = 2", "seeds = 2\ndescription = 5"), "description: expected a string. Got 5."),
    # the store keeps seeds as signed 64-bit integers (2**63 crashed at the first insert)
    (("seeds = 2", "seeds = [0, 9223372036854775808]"),
     "seeds: expected an int > 0 or a list of distinct ints in [0, 2**63 - 1]"),
    # refused before its billion points are made (they filled the memory)
    (("[variants.baseline]", "[variants.baseline]\n[variants.path]\n"
      "kernel_regularizer = { type = \"L2\", l2 = { log = [1e-5, 1e-1], n = 1000000000 } }"),
     "variants.path.kernel_regularizer.l2.n: at most 100,000 points"),
    (("input_shape = [784]", "input_shape = 784"), "model.input_shape: expected a list"),
    (('activation = "relu" }', 'activation = "relu", unitz = 3 }'),
     "model.layers[0]: unknown key 'unitz'. Did you mean 'units'?"),
    # a layer without an argument its class cannot do without, as a bare name or a table
    (('{ type = "Dense", units = 8, activation = "relu" }', '"Dense"'),
     "model.layers[0]: layer 'Dense' needs 'units' (a table such as { type = \"Dense\", "
     "units = ... }). Got {'type': 'Dense'}."),
    (('{ type = "Dense", units = 8, activation = "relu" }', '{ type = "Conv2D", filters = 2 }'),
     "model.layers[0]: layer 'Conv2D' needs 'kernel_size'"),
    (("[variants.baseline]", "[variants.baseline]\n[variants.path]\n"
      "dropout = { linear = [0.1, 0.5], n = 3.0 }"),
     "variants.path.dropout.n: expected a whole number of points >= 1 (an int, such as 5). "
     "Got 3.0."),
    (("epochs = 2", 'epochs = "two"'), "training.epochs: expected an int >= 1. Got 'two'"),
    (("epochs = 2", "epochs = 99999999999999999"),  # a typo that would train forever
     "training.epochs: expected at most 1,000,000 (a study that would never end). Got "
     "99,999,999,999,999,999."),
    (("epochs = 2", 'epochs = 2\nloss = "msee"'), "training.loss: unknown loss 'msee'"),
    (("epochs = 2", 'epochs = 2\noptimizer = "adamm"'),
     "training.optimizer.type: unknown optimizer 'adamm'"),
    (('dataset = "fashion_mnist"', 'dataset = "missing.npz"'), "data.dataset: no file at"),
    (("[variants.baseline]", "[variants.baseline]\nl2 = { log = [0, 1], n = 3 }"),
     "variants.baseline: unknown key 'l2'"),
    (("[variants.baseline]", "[variants.baseline]\nmixup = { alpha = -0.2 }"),
     "variants.baseline.mixup.alpha: expected a finite number >= 0. Got -0.2"),
    (("[variants.baseline]", "[variants.baseline]\ncutmix = { factr = 1.0 }"),
     "variants.baseline.cutmix: unknown key 'factr'. Did you mean 'factor'?"),
    (("[variants.baseline]", "[variants.baseline]\nlabel_smoothing = 1.5"),
     "variants.baseline.label_smoothing: expected a number in [0, 1]. Got 1.5"),
    # a switch written as a string: 'false' would be true in Python
    (('activation = "relu" }', 'activation = "relu", use_bias = "false" }'),
     "model.layers[0].use_bias: expected true or false. Got 'false'."),
    (("epochs = 2", 'epochs = 2\noptimizer = { type = "SGD", nesterov = "false" }'),
     "training.optimizer.nesterov: expected true or false. Got 'false'."),
    (("[variants.baseline]", "[variants.baseline]\nearly_stopping = { "
      "restore_best_weights = 1 }"),
     "variants.baseline.early_stopping.restore_best_weights: expected true or false. Got 1."),
    (("[variants.baseline]", "[variants.baseline]\naugment = { horizontal_flip = \"yes\" }"),
     "variants.baseline.augment.horizontal_flip: expected true or false. Got 'yes'."),
    (("[variants.baseline]", "[variants.baseline]\naugment = { rotation_range = \"x\" }"),
     "variants.baseline.augment.rotation_range: expected a finite number. Got 'x'."),
    (("[variants.baseline]", "[variants.baseline]\nearly_stopping = { min_delta = nan }"),
     "variants.baseline.early_stopping.min_delta: expected a finite number. Got nan."),
    (("[variants.baseline]", "[variants.baseline]\nearly_stopping = { baseline = \"x\" }"),
     "variants.baseline.early_stopping.baseline: expected a finite number. Got 'x'."),
    (("[variants.baseline]", "[variants.baseline]\nearly_stopping = { start_from_epoch = -1 }"),
     "variants.baseline.early_stopping.start_from_epoch: expected an int >= 0. Got -1."),
    # a type that is no name (it had crashed: unhashable type)
    (('{ type = "Dense", units = 8, activation = "relu" }', '{ type = ["Dense"], units = 8 }'),
     "model.layers[0].type: expected the name of a layer (one of "),
    (("epochs = 2", 'epochs = 2\noptimizer = { type = ["adam"] }'),
     "training.optimizer.type: expected the name of an optimizer (one of "),
    (("[variants.baseline]", "[variants.baseline]\nkernel_constraint = { type = { a = 1 } }"),
     "variants.baseline.kernel_constraint.type: expected the name of a constraint (one of "),
])
def test_each_malformed_node(change, message):
    found = problems(BASE.replace(*change))
    assert any(message in p for p in found), found


def test_an_empty_sweep_and_variants_that_are_no_table_say_what_they_got():
    empty = BASE.replace("[variants.baseline]",
                         "[variants.baseline]\nkernel_regularizer = { type = \"L2\", l2 = [] }")
    assert problems(empty) == ["variants.baseline.kernel_regularizer.l2: a sweep must have "
                               "at least one point. Got []."]  # said once, as a sweep
    top = BASE[:BASE.index("[data]")] + "variants = 3\n" + BASE[BASE.index("[data]"):]
    top = top[:top.index("[variants.")]
    assert "variants: expected at least one [variants.NAME] table. Got 3." in problems(top)


def test_the_largest_seed_is_taken():
    assert parse(BASE.replace("seeds = 2", "seeds = [0, 9223372036854775807]")).seeds == (
        0, 2**63 - 1)


def test_syntax_errors_and_missing_files():
    assert "TOML syntax" in problems("seeds = = 2")[0]
    # nested past what tomllib's recursion reads: a study-file error with its line (it had
    # been an unexpected RecursionError, 'a bug in reglab'); tables count too
    for opening, closing in (("[", "]"), ("{ a = ", " }")):
        deep = BASE + '# a "[" in a comment\n[variants.deep]\ndropout = ' + \
            opening * 2000 + "0.1" + closing * 2000 + "\n"
        (found,) = problems(deep)
        line = deep[:deep.index(opening * 100)].count("\n") + 1
        assert f"TOML nesting: arrays or inline tables nested too deep for the reader (line " \
               f"{line})" in found
    with pytest.raises(StudySpecError, match="cannot read the file"):
        parse_study("/nonexistent/study.toml")


def test_a_sweep_with_no_points_and_a_bad_grid():
    text = BASE.replace("[variants.baseline]", """[variants.a]
kernel_regularizer = { type = "L2", l2 = { log = [-1, 1], n = 3 } }
[variants.b]
kernel_regularizer = { type = "L2", l2 = { geometric = [1, 2], n = 3 } }
""")
    found = problems(text)
    assert any("variants.a.kernel_regularizer.l2.log: bounds must be > 0" in p for p in found)
    assert any("variants.b.kernel_regularizer.l2: a grid is" in p for p in found)


def test_parsing_imports_no_torch():
    code = ("import sys; from reglab.study import parse_study; "
            f"parse_study({str(EXAMPLES / 'tutorial.toml')!r}); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_tutorial_plan():
    from reglab.study.plan import plan_study

    plan = plan_study(parse_study(EXAMPLES / "tutorial.toml"))
    # 9 techniques + 2 sweeps of 9 points = 27 points, x 5 seeds.
    assert len(plan.runs) == 27 * 5
    assert plan.describe() == ("11 variants (27 points with sweeps) × 5 seeds = 135 runs (10 the "
                               "same as another run: trained once) in 3 populations")
    # l1 and l2 are their paths' last points: those train once (as l1 and l2)
    assert plan.twins == {f"{kind}_path[kernel_regularizer.{kind}=0.01]/seed={seed}":
                          f"{kind}/seed={seed}" for kind in ("l1", "l2") for seed in range(5)}
    sizes = sorted(len(p.runs) for p in plan.populations)
    assert sizes == [5, 5, 115]  # batch norm, augmentation, and everything else together
    ids = [run.run_id for run in plan.runs]
    assert len(set(ids)) == len(ids)
    assert "l2_path[kernel_regularizer.l2=1e-06]/seed=0" in ids
    swept = [r for r in plan.runs if r.variant == "l2_path" and r.seed == 0]
    assert [r.changes["kernel_regularizer"]["l2"] for r in swept] == [v for _, v in
                                                                      (r.point[0] for r in swept)]


def test_planning_imports_no_torch():
    code = ("import sys; from reglab.study import parse_study; from reglab.study.plan import "
            f"plan_study; plan_study(parse_study({str(EXAMPLES / 'tutorial.toml')!r})); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_precision_is_float32_by_default_and_absent_from_the_fingerprint():
    spec = parse(BASE)
    assert spec.training.precision == "float32"
    assert '"precision"' not in spec.canonical_json()  # stores from before it still resume
    mixed = parse(BASE.replace("epochs = 2", "epochs = 2\nprecision = \"bfloat16\""))
    assert mixed.training.precision == "bfloat16"
    assert '"precision":"bfloat16"' in mixed.canonical_json()
    assert mixed.fingerprint() != spec.fingerprint()
    from reglab.study.spec import StudySpec

    assert StudySpec.from_canonical(json.loads(mixed.canonical_json())) == mixed


@pytest.mark.parametrize("value", ['"bf16"', '"float64"', "16", "true", '["bfloat16"]',
                                   "{ a = 1 }"])
def test_an_unknown_precision_is_named_with_the_choices(value):
    found = problems(BASE.replace("epochs = 2", f"epochs = 2\nprecision = {value}"))
    assert len(found) == 1 and found[0].startswith("training.precision: expected one of")
    assert "'bfloat16'" in found[0]


def test_stats_min_effect_is_optional_and_part_of_the_study_when_set():
    spec = parse(BASE)
    assert spec.stats.min_effect is None
    assert '"stats"' not in spec.canonical_json()  # stores from before it still resume
    set_ = parse(BASE + "[stats]\nmin_effect = 0.005\n")
    assert set_.stats.min_effect == 0.005
    assert '"stats":{"min_effect":0.005}' in set_.canonical_json()
    assert set_.fingerprint() != spec.fingerprint()  # chosen before the results, kept with them
    from reglab.study.spec import StudySpec

    assert StudySpec.from_canonical(json.loads(set_.canonical_json())) == set_
    assert parse(BASE + "[stats]\nmin_effect = 0\n").stats.min_effect == 0.0


@pytest.mark.parametrize("value, shown", [("-0.01", "-0.01"), ('"0.01"', "'0.01'"),
                                          ("true", "True"), ("nan", "nan"), ("[0.01]", "[0.01]")])
def test_a_bad_min_effect_is_named_with_what_was_expected(value, shown):
    found = problems(BASE + f"[stats]\nmin_effect = {value}\n")
    assert found == [f"stats.min_effect: expected a finite number >= 0. Got {shown}."]


def test_an_unknown_stats_key_is_named():
    found = problems(BASE + "[stats]\nmin_efect = 0.01\n")
    assert found == ["stats: unknown key 'min_efect'. Did you mean 'min_effect'? "
                     "Expected one of: min_effect."]


@pytest.mark.parametrize("name", ['""', '"   "', '"tab\\there"', '"bell\\u0007"',
                                  '"next line\\u0085"', "5",
                                  "[1]", '"' + "n" * 129 + '"'])
def test_a_study_name_that_is_no_label_is_refused(name):
    found = problems(f"name = {name}\n" + BASE)
    assert len(found) == 1 and found[0].startswith("name: a study's name must be a string"), found


@pytest.mark.parametrize("name", ["my study", "l2-sweep.v2", "étude", "n" * 128,
                                  "l1/l2 <b>", "..", "../../x"])
def test_a_study_name_is_a_label(name):
    assert parse(f"name = {json.dumps(name)}\n" + BASE).name == name


@pytest.mark.parametrize("name, ok", [("tutorial", True), ("my study", True), ("a.b", True),
                                      ("../../x", False), ("a/b", False), ("a\\b", False),
                                      ("..", False), (".", False), ("  ", False),
                                      (" ..", True)])
def test_only_a_single_directory_name_can_be_the_default_output_directory(name, ok):
    from reglab.study.spec import default_directory_problem

    problem = default_directory_problem(name)
    assert (problem is None) == ok, problem
    if not ok:
        assert f"{name!r} cannot be its default output directory runs/<name>" in problem
        assert "Give --out DIR" in problem


def test_a_study_without_a_name_takes_its_file_stem():
    assert parse_study("some/dir/ablation.toml", BASE).name == "ablation"


#: (where the value goes: the line replaced and its replacement with VALUE, the message's
#: start; "Got <value>." ends the exact ones)
NON_FINITE = [
    (("[variants.baseline]", "[variants.baseline]\n"
      "kernel_regularizer = { type = 'L2', l2 = [1e-4, VALUE] }"),
     "variants.baseline.kernel_regularizer.l2[1]: expected a finite number. Got", True),
    (("[variants.baseline]", "[variants.baseline]\n"
      "kernel_regularizer = { type = 'L2', l2 = VALUE }"),
     "variants.baseline.kernel_regularizer.l2: expected a finite number", False),
    (("[variants.baseline]", "[variants.baseline]\nlearning_rate = VALUE"),
     "variants.baseline.learning_rate: expected a finite number > 0.", False),
    (("epochs = 2", "epochs = 2\noptimizer = { type = 'adam', learning_rate = VALUE }"),
     "training.optimizer.learning_rate: expected a finite number > 0", False),
    (("[variants.baseline]", "[variants.baseline]\n"
      "optimizer = { type = 'adam', beta_1 = VALUE }"),
     "variants.baseline.optimizer.beta_1: expected a finite number. Got", True),
    (("[variants.baseline]", "[variants.baseline]\n"
      "kernel_regularizer = { type = 'L2', l2 = { linear = [0, VALUE], n = 3 } }"),
     "variants.baseline.kernel_regularizer.l2.linear: expected [low, high]", False),
]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("change, message, exact", NON_FINITE)
def test_non_finite_numbers_are_named_as_such_with_their_place(value, change, message, exact):
    found = problems(BASE.replace(change[0], change[1].replace("VALUE", value)))
    assert len(found) == 1, found
    if exact:
        assert found[0] == f"{message} {float(value)!r}."
    else:
        assert found[0].startswith(message), found


def test_an_optimizer_learning_rate_must_be_above_zero():
    found = problems(BASE.replace("epochs = 2", "epochs = 2\noptimizer = { type = 'sgd', "
                                  "learning_rate = 0 }"))
    assert found == ["training.optimizer.learning_rate: expected a finite number > 0. Got 0."]


@pytest.mark.parametrize("stop, split, message", [
    # a value no run logs: Keras would warn at every epoch and never stop; the run failed
    # its whole population when training started
    ('{ monitor = "val_foo", patience = 2 }', True,
     "variants.es.early_stopping.monitor: expected a value the runs log: loss, data_loss, "
     "penalty, accuracy, val_loss, val_data_loss, val_penalty, val_accuracy (training.metrics "
     "sets which). Got 'val_foo'."),
    ('{ monitor = "val_acc" }', False,
     "variants.es.early_stopping.monitor: expected a value the runs log: loss, data_loss, "
     "penalty, accuracy, val_loss, val_data_loss, val_penalty, val_accuracy (training.metrics "
     "sets which). Got 'val_acc'."),
    # an unknown mode falls back to 'auto', as the run will
    ('{ monitor = "penalty", mode = "sideways" }', True,
     "variants.es.early_stopping.monitor: EarlyStopping: cannot tell whether "
     "monitor='penalty' should be maximized or minimized"),
    ('{ monitor = "val_penalty" }', True,
     "variants.es.early_stopping.monitor: EarlyStopping: cannot tell whether "
     "monitor='val_penalty' should be maximized or minimized"),
])
def test_an_early_stopping_monitor_is_checked_against_the_logs(stop, split, message):
    text = BASE.replace("[variants.baseline]", f"[variants.baseline]\n[variants.es]\n"
                                               f"early_stopping = {stop}\n")
    if split:
        text = text.replace('dataset = "fashion_mnist"',
                            'dataset = "fashion_mnist"\nvalidation_split = 0.1')
    assert any(message in p for p in problems(text)), problems(text)


def test_a_monitor_without_validation_data_is_taken_as_keras_takes_it():
    """The default val_loss without a validation split: Keras warns at every epoch and never
    stops; refusing it would stop studies stored with it from going on."""
    text = BASE.replace("[variants.baseline]", "[variants.baseline]\n[variants.es]\n"
                                               "early_stopping = { patience = 2 }\n")
    assert [v.name for v in parse(text).variants] == ["baseline", "es"]


def test_no_second_problem_about_monitors_when_the_metrics_are_wrong():
    text = BASE.replace("epochs = 2", 'epochs = 2\nmetrics = "accuracy"').replace(
        "[variants.baseline]", '[variants.baseline]\n[variants.es]\n'
        'early_stopping = { monitor = "val_accuracy" }\n')
    assert [p for p in problems(text) if "monitor" in p] == []


def test_a_monitor_of_the_logs_is_taken():
    text = BASE.replace('dataset = "fashion_mnist"',
                        'dataset = "fashion_mnist"\nvalidation_split = 0.1').replace(
        "[variants.baseline]", '[variants.baseline]\n[variants.a]\nearly_stopping = { monitor = '
        '"val_accuracy" }\n[variants.b]\nearly_stopping = { monitor = "penalty", mode = "min" }\n'
        "[variants.c]\nearly_stopping = { patience = 3 }\n")
    assert [v.name for v in parse(text).variants] == ["baseline", "a", "b", "c"]


@pytest.mark.parametrize("arguments, expected", [
    ("clipnorm = 0", ["variants.baseline.optimizer.clipnorm: expected a finite number > 0. "
                      "Got 0."]),
    ("clipvalue = 'big'", ["variants.baseline.optimizer.clipvalue: expected a finite number > "
                           "0. Got 'big'."]),
    ("clipnorm = 1.0, global_clipnorm = 2.0",
     ["variants.baseline.optimizer: only one of clipnorm, clipvalue, global_clipnorm can be "
      "set (as in Keras). Got clipnorm, global_clipnorm."]),
])
def test_a_clipping_is_checked_when_the_study_is_read_naming_its_variant(arguments, expected):
    found = problems(BASE.replace("[variants.baseline]", "[variants.baseline]\n"
                                  f"optimizer = {{ type = 'adam', {arguments} }}"))
    assert found == expected


def test_a_sweep_of_ints_stays_ints_and_hashes_as_before():
    """``patience = [2, 5]`` sweeps a setting that takes an int (it was made floats and
    refused); the stored study still records the points as the floats it did, so a study
    started before resumes."""
    spec = parse(BASE + '[variants.es]\nearly_stopping = { monitor = "val_loss", '
                 'patience = [2, 5] }\n')
    (sweep,) = next(v for v in spec.variants if v.name == "es").sweeps
    assert sweep.values == (2, 5) and all(type(v) is int for v in sweep.values)
    assert '"path":"early_stopping.patience","values":[2.0,5.0]' in spec.canonical_json()
    mixed = parse(BASE + "[variants.d]\ndropout = [0, 0.5]\n")
    assert next(v for v in mixed.variants if v.name == "d").sweeps[0].values == (0.0, 0.5)


def test_every_public_layer_regularizer_and_constraint_is_known_to_study_files():
    # study files are read without torch, from the classes' sources: a class added to
    # reglab.layers (or regularizers, constraints) must be in signatures.SOURCES too
    import reglab.constraints as constraints
    import reglab.layers as layers
    import reglab.regularizers as regularizers
    from reglab.study import signatures

    for module, kind, skipped in ((layers, "layer", {"Layer", "Input"}),
                                  (regularizers, "regularizer", {"Regularizer"}),
                                  (constraints, "constraint", {"Constraint"})):
        public = {name for name in module.__all__ if isinstance(getattr(module, name), type)
                  and getattr(module, name).__name__ == name
                  # merging layers join a functional graph's branches: not a study's list
                  and getattr(module, name).__module__ != "reglab.layers.merging"} - skipped
        assert public <= set(signatures.classes(kind)), (kind, public - set(signatures.classes(kind)))


@pytest.mark.parametrize("name", ["a\u0007b", "baseline\u200b", "\u202eenilesab", "x\u00ady"])
def test_variant_names_with_control_or_invisible_characters_are_refused(name):
    key = json.dumps(name)  # TOML's escapes are JSON's: "a\u0007b"
    text = BASE.replace("[variants.baseline]", f"[variants.baseline]\n[variants.{key}]")
    assert any("control or invisible characters" in p for p in problems(text))


def test_a_residual_block_repeated_beyond_the_limit_is_refused_before_anything_is_built():
    text = BASE.replace('layers = [', 'layers = [\n  { type = "Residual", repeat = 100000000, '
                        'layers = [{ type = "Dense", units = 8 }] },', 1)
    assert any("repeat: expected at most 1000 blocks. Got 100000000" in p
               for p in problems(text))


def test_a_data_path_that_is_a_directory_is_named_as_one(tmp_path):
    (tmp_path / "images.npz").mkdir()
    study = tmp_path / "study.toml"
    study.write_text(BASE.replace('dataset = "fashion_mnist"', 'dataset = "images.npz"'))
    with pytest.raises(StudySpecError) as caught:
        parse_study(study)
    assert any(p.startswith("data.dataset: ") and "images.npz' is a directory; expected a "
               "file there." in p for p in caught.value.problems)


@pytest.mark.parametrize("sweep", ["[0.5, 1.0]", "{ linear = [0.5, 1.0], n = 3 }",
                                   "[0.2, 0.5, 1.5]"])
def test_every_point_of_a_sweep_is_checked_as_a_value_written_alone(sweep):
    found = problems(BASE.replace("[variants.baseline]", f"[variants.drop]\ndropout = {sweep}"))
    assert len(found) == 1 and found[0].startswith(
        "variants.drop.dropout: expected a number in [0, 1). Got 1."), found
    found = problems(BASE.replace("[variants.baseline]", """[variants.l2]
kernel_regularizer = { type = "L2", l2 = [0.01, -0.5] }"""))
    assert found == ["variants.l2.kernel_regularizer.l2: expected a finite number >= 0. "
                     "Got -0.5."]


def test_a_bad_grid_is_named_once_without_a_follow_on_problem():
    found = problems(BASE.replace("[variants.baseline]",
                                  "[variants.drop]\ndropout = { linear = [0.1, 0.5], n = 0 }"))
    assert found == ["variants.drop.dropout.n: expected a whole number of points >= 1 (an int, "
                     "such as 5). Got 0."]


@pytest.mark.parametrize("written, name, shown", [
    (r"drop\u202eout", "drop\u202eout", r"'drop\u202eout'"),
    (r"drop\u0007out", "drop\x07out", r"'drop\x07out'")])
def test_a_refused_variant_name_reaches_no_terminal_raw(written, name, shown):
    text = BASE.replace("[variants.baseline]", f'[variants."{written}"]\ndropout = 2.0')
    found = problems(text)
    assert found and all(name not in problem for problem in found)
    assert any(problem.startswith(f"variants.{shown}: a variant's name") for problem in found)
    assert any(problem.startswith(f"variants.{shown}.dropout:") for problem in found)


def test_only_optimizers_are_offered_as_optimizers_and_near_names_suggested():
    found = problems(BASE.replace("epochs = 2", 'epochs = 2\noptimizer = "adamx"'))
    assert len(found) == 1
    assert "Did you mean 'Adamax'?" in found[0]
    assert "OptimizerMembers" not in found[0] and "LearningRateValue" not in found[0]


def test_every_optimizer_of_reglab_s_may_be_named_in_a_study_file():
    """The study's names (read from the sources, without torch) are the optimizers the
    package exports, each taken by its lower-case name with an argument of its own."""
    import reglab.optimizers as optimizers
    from reglab.study.spec import OPTIMIZER_NAMES

    exported = {name for name in optimizers.__all__
                if isinstance(getattr(optimizers, name), type) and name not in
                ("Optimizer", "LossScaleOptimizer")}
    assert set(OPTIMIZER_NAMES.values()) == exported
    for lower, name in OPTIMIZER_NAMES.items():
        arguments = inspect.signature(getattr(optimizers, name)).parameters
        own = next(a for a in arguments if a not in ("learning_rate", "weight_decay"))
        default = arguments[own].default
        parse(BASE.replace("epochs = 2", f'epochs = 2\noptimizer = {{ type = "{lower}", '
                           f'{own} = {str(default).lower()} }}'))


@pytest.mark.parametrize("first, second", [("baseline", "Baseline"),
                                           ("caf\u00e9", "cafe\u0301"),
                                           ("l2", "\uff4c2")])
def test_variant_names_that_read_the_same_are_refused(first, second):
    text = BASE.replace("[variants.baseline]",
                        f'[variants."{first}"]\n[variants."{second}"]\ndropout = 0.1')
    found = problems(text)
    assert found == [f"variants.{second}: reads as variants.{first} (the names differ only in "
                     "case or Unicode form, and would be told apart by neither a reader of the "
                     "table nor a case-insensitive file system). Rename one."]


def test_a_dataset_that_is_no_regular_file_is_named_as_such(tmp_path):
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("needs named pipes")
    os.mkfifo(tmp_path / "pipe.npz")
    study = tmp_path / "study.toml"
    study.write_text(BASE.replace('dataset = "fashion_mnist"', 'dataset = "pipe.npz"'))
    with pytest.raises(StudySpecError) as caught:
        parse_study(study)
    assert any("pipe.npz' is not a regular file (a pipe, a device or a socket)" in p
               for p in caught.value.problems), caught.value.problems


def test_a_refused_variant_name_of_a_tuning_study_reaches_no_terminal_raw():
    text = BASE.replace("[variants.baseline]", """[tune]
objective = "val_accuracy"
model_epochs = 20
[variants.baseline]
[variants."drop\\u202eout"]
dropout = { linear = [0.1, 1.5] }""")
    found = problems(text)
    assert found and all("drop\u202eout" not in problem for problem in found), found
    assert any(problem.startswith(r"variants.'drop\u202eout'.dropout:") for problem in found), \
        found


@pytest.mark.parametrize("metrics, hint", [
    ('["MSE"]', "A study names them in lower case: 'mse' for 'MSE'."),
    ('["AUC"]', "A study ranks on an accuracy or an error (AUC, precision and recall are "
                "compile()'s in code, not a study's yet)."),
])
def test_a_metric_a_study_cannot_rank_on_says_what_it_can(metrics, hint):
    found = problems(BASE.replace("epochs = 2", f"epochs = 2\nmetrics = {metrics}"))
    assert len(found) == 1 and found[0].startswith("training.metrics: expected a list of ") \
        and found[0].endswith(hint)


def test_a_byte_order_mark_is_taken_as_a_csv_s_is(tmp_path):
    # Windows editors write one; TOML's parser took it for a statement at line 1
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    plain, marked = tmp_path / "a" / "study.toml", tmp_path / "b" / "study.toml"
    plain.write_text(BASE, encoding="utf-8")
    marked.write_text(BASE, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    assert parse_study(marked).fingerprint() == parse_study(plain).fingerprint()


@pytest.mark.parametrize(("data", "said"), [
    ('dataset = "nope.npz"', "data.dataset: no file at"),
    ('dataset = "data.txt"', "data.dataset: unknown dataset 'data.txt'"),
    ("dataset = 5", "data.dataset: expected a built-in name"),
])
def test_a_dataset_that_cannot_be_read_is_said_once_not_again_as_a_missing_shape(data, said):
    # the model's input shape comes from the data when not given: nothing to add there
    text = BASE.replace('dataset = "fashion_mnist"', data).replace("input_shape = [784]\n", "")
    found = problems(text)
    assert len(found) == 1 and found[0].startswith(said), found


def test_a_data_section_that_is_not_a_table_is_said_once():
    text = BASE.replace('[data]\ndataset = "fashion_mnist"\n', "").replace(
        "seeds = 2\n", 'seeds = 2\ndata = "d.npz"\n')
    assert problems(text) == ["data: expected a table. Got 'd.npz'."]


def test_a_name_past_a_directory_name_s_bytes_cannot_be_the_default_directory():
    from reglab.study.spec import default_directory_problem

    assert default_directory_problem("日" * 85) is None  # 255 bytes in UTF-8
    problem = default_directory_problem("日" * 128)  # a valid label of 384 bytes
    assert problem is not None and "384 bytes in UTF-8" in problem and "--out DIR" in problem
    assert parse(BASE.replace("seeds = 2", f'seeds = 2\nname = "{"日" * 128}"')).name == \
        "日" * 128


@pytest.mark.parametrize("layers, said", [
    ('{ type = "InputLayer", shape = [5] }, { type = "Dense", units = 10 }',
     "model.layers[0].shape: the model takes samples of shape [784] (model.input_shape, or "
     "the data's). Got [5]; remove it or make it [784]."),
    ('{ type = "InputLayer", batch_shape = [32, 5] }, { type = "Dense", units = 10 }',
     "model.layers[0].batch_shape: the model takes samples of shape [784]"),
    ('{ type = "Dense", units = 8, input_shape = [99] }, { type = "Dense", units = 10 }',
     "model.layers[0].input_shape: the model takes samples of shape [784]"),
    ('{ type = "Dense", units = 8 }, { type = "InputLayer", shape = [8] }, '
     '{ type = "Dense", units = 10 }',
     "model.layers[1]: an InputLayer starts a model (Keras's Sequential takes it first)")])
def test_an_input_layer_s_shape_is_the_model_s_or_refused(layers, said):
    """An InputLayer of another shape than the model's (or one in the middle of the stack)
    had been passed over: the model trained on the data's shape (review 116)."""
    text = BASE.replace('layers = [{ type = "Dense", units = 8, activation = "relu" },\n'
                        '          { type = "Dense", units = 10, activation = "softmax" }]',
                        f"layers = [{layers}]")
    assert any(said in p for p in problems(text)), problems(text)


def test_an_input_layer_of_the_model_s_shape_is_taken():
    text = BASE.replace('layers = [{ type = "Dense"', 'layers = [{ type = "InputLayer", '
                        'shape = [784] }, { type = "Dense"', 1)
    assert parse(text).layers[0].type == "InputLayer"


def test_a_layer_name_given_twice_is_refused_as_keras_refuses_it():
    """Keras and Sequential.add refuse layers that share a name; a study's model had taken
    them (review 116)."""
    text = BASE.replace('{ type = "Dense", units = 8, activation = "relu" }',
                        '{ type = "Dense", units = 8, activation = "relu", name = "a" }')
    assert parse(text).layers[0].args["name"] == "a"  # one name: taken
    twice = text.replace('{ type = "Dense", units = 10, activation = "softmax" }',
                         '{ type = "Dense", units = 10, activation = "softmax", name = "a" }')
    assert "model.layers[1].name: 'a' is the name of model.layers[0] too; a model's layers " \
        "have unique names, as in Keras." in problems(twice)[0]
