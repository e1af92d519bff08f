"""Planned runs become engine members that train as the study file says."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.engine import Population
from reglab.regularizers import L1, L2
from reglab.study import parse_study
from reglab.study.build import load_study_data, population_members
from reglab.study.plan import plan_study

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
epochs = 2
batch_size = 16
[variants.baseline]
[variants.l1]
kernel_regularizer = { type = "L1", l1 = 0.001 }
dropout = 0.5
[variants.l2_path]
kernel_regularizer = { type = "L2", l2 = [1e-4, 1e-2] }
[variants.fast]
learning_rate = 0.5
early_stopping = { monitor = "val_loss", patience = 0 }
[variants.bn]
batch_norm = true
"""


def test_a_small_study_builds_and_trains(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((64, 6)), y=rng.integers(0, 3, 64),
             x_test=rng.random((16, 6)), y_test=rng.integers(0, 3, 16))
    (tmp_path / "study.toml").write_text(STUDY)
    spec = parse_study(tmp_path / "study.toml")
    plan = plan_study(spec)
    assert plan.describe() == "5 variants (6 points with sweeps) × 2 seeds = 12 runs in 2 populations"
    data = load_study_data(spec)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (48, 16, 16)
    main = max(plan.populations, key=lambda p: len(p.runs))
    members, augment, images = population_members(spec, main, data)
    assert augment is None and not images
    by_id = {m.name: m for m in members}
    l1_model = by_id["l1/seed=0"].layers
    assert [type(layer).__name__ for layer in l1_model] == ["Dense", "Dropout", "Dense"]
    assert isinstance(l1_model[0].kernel_regularizer, L1) and l1_model[1].rate == 0.5
    assert by_id["baseline/seed=1"].layers[1].rate == 0.0
    swept = by_id["l2_path[kernel_regularizer.l2=0.01]/seed=0"].layers[2].kernel_regularizer
    assert isinstance(swept, L2) and swept.l2 == 0.01
    assert by_id["fast/seed=0"].optimizer.learning_rate == 0.5
    assert by_id["fast/seed=0"].early_stopping.patience == 0
    result = Population(members).fit(data.x_train, data.y_train, batch_size=16, epochs=2,
                                     validation_data=(data.x_val, data.y_val))
    assert {m.status for m in result.members} <= {"done", "stopped_early"}
    bn = next(p for p in plan.populations if p is not main)
    bn_members, _, _ = population_members(spec, bn, data)
    assert [type(x).__name__ for x in bn_members[0].layers] == [
        "Dense", "BatchNormalization", "Dropout", "Dense"]


def test_bfloat16_precision_gives_every_layer_but_the_output_a_mixed_policy(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((64, 6)), y=rng.integers(0, 3, 64))
    (tmp_path / "study.toml").write_text(
        STUDY.replace("batch_size = 16", 'batch_size = 16\nprecision = "bfloat16"'))
    spec = parse_study(tmp_path / "study.toml")
    plan = plan_study(spec)
    data = load_study_data(spec)
    for population in plan.populations:
        members, _, _ = population_members(spec, population, data)
        layers = members[0].layers
        assert [layer.compute_dtype for layer in layers] == \
            ["bfloat16"] * (len(layers) - 1) + ["float32"]
        assert all(layer.variable_dtype == "float32" for layer in layers)
        result = Population(members).fit(data.x_train, data.y_train, batch_size=16, epochs=1,
                                         validation_data=(data.x_val, data.y_val))
        assert all(np.isfinite(m.history["loss"][0]) for m in result.members)


def test_bfloat16_keeps_the_output_from_the_last_weight_layer_on_and_explicit_dtypes(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "data.npz", x=rng.random((32, 6)), y=rng.integers(0, 3, 32))
    text = STUDY.replace('batch_size = 16', 'batch_size = 16\nprecision = "bfloat16"').replace(
        '''layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]''',
        '''layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 8, activation = "relu", dtype = "float32" },
          { type = "Dense", units = 3 },
          { type = "Activation", activation = "softmax" }]''')
    (tmp_path / "study.toml").write_text(text)
    spec = parse_study(tmp_path / "study.toml")
    population = plan_study(spec).populations[0]
    members, _, _ = population_members(spec, population, load_study_data(spec))
    got = [(type(layer).__name__, layer.compute_dtype) for layer in members[0].layers]
    assert got == [("Dense", "bfloat16"), ("Dropout", "bfloat16"), ("Dense", "float32"),
                   ("Dropout", "bfloat16"), ("Dense", "float32"), ("Activation", "float32")]


def test_clipping_variants_share_a_population_by_kind_and_train(tmp_path):
    """A sweep over ``clipnorm`` is one population (each run its own threshold); a run without
    clipping, or with another kind, cannot share its update and trains beside it."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((64, 6)), y=rng.integers(0, 3, 64),
             x_test=rng.random((16, 6)), y_test=rng.integers(0, 3, 16))
    study = STUDY.split("[variants.baseline]")[0] + """
[variants.baseline]
[variants.clipped]
optimizer = { type = "SGD", learning_rate = 0.1, clipnorm = [0.01, 1.0] }
[variants.by_value]
optimizer = { type = "SGD", learning_rate = 0.1, clipvalue = 0.01 }
"""
    (tmp_path / "study.toml").write_text(study)
    spec = parse_study(tmp_path / "study.toml")
    plan = plan_study(spec)
    assert plan.describe() == ("3 variants (4 points with sweeps) × 2 seeds = 8 runs in 3 "
                               "populations")
    data = load_study_data(spec)
    clipped = next(p for p in plan.populations if len(p.runs) == 4)
    members, _, _ = population_members(spec, clipped, data)
    assert sorted(m.optimizer.clipnorm for m in members) == [0.01, 0.01, 1.0, 1.0]
    population = Population(members)
    population.fit(data.x_train, data.y_train, batch_size=16, epochs=2)
    by_name = {m.name: population.member_weights(i) for i, m in enumerate(members)}
    tight = by_name["clipped[optimizer.clipnorm=0.01]/seed=0"]
    loose = by_name["clipped[optimizer.clipnorm=1]/seed=0"]
    assert any(not np.allclose(np.asarray(tight[k]), np.asarray(loose[k])) for k in tight)
    from reglab.optimizers import optimizers
    from reglab.study import spec as spec_module
    assert spec_module.CLIPPINGS == optimizers.CLIPPINGS  # the study's own (no torch)


def test_keras_s_other_optimizers_are_study_optimizers(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "data.npz", x=rng.random((64, 6)), y=rng.integers(0, 3, 64),
             x_test=rng.random((16, 6)), y_test=rng.integers(0, 3, 16))
    study = STUDY.split("[variants.baseline]")[0].replace(
        'optimizer = { type = "SGD", learning_rate = 0.1 }',
        'optimizer = { type = "nadam", learning_rate = 0.01 }') + """
[variants.baseline]
[variants.adagrad]
optimizer = { type = "Adagrad", learning_rate = 0.05, initial_accumulator_value = [0.1, 1.0] }
"""
    (tmp_path / "study.toml").write_text(study)
    spec = parse_study(tmp_path / "study.toml")
    plan = plan_study(spec)
    assert plan.describe() == "2 variants (3 points with sweeps) × 2 seeds = 6 runs in 2 populations"
    data = load_study_data(spec)
    for planned in plan.populations:
        members, _, _ = population_members(spec, planned, data)
        assert {type(m.optimizer).__name__ for m in members} in ({"Nadam"}, {"Adagrad"})
        result = Population(members).fit(data.x_train, data.y_train, batch_size=16, epochs=1)
        assert {m.status for m in result.members} == {"done"}


def _checked(tmp_path, text: str):
    """``check_study``'s problems for ``text`` (a study over data.npz), or [] when none."""
    from reglab.study import StudySpecError
    from reglab.study.build import check_study

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((64, 6)), y=rng.integers(0, 3, 64))
    (tmp_path / "study.toml").write_text(text)
    try:
        spec = parse_study(tmp_path / "study.toml")
        check_study(plan_study(spec))
    except StudySpecError as error:
        return error.problems
    return []


def _one_variant(changes: str, training: str = "") -> str:
    head = STUDY[:STUDY.index("[variants.baseline]")]
    if training:
        head = head.replace("batch_size = 16", f"batch_size = 16\n{training}")
    return head + "[variants.baseline]\n[variants.other]\n" + changes + "\n"


def test_a_regularizer_written_as_its_bare_name_builds_as_its_table(tmp_path):
    assert _checked(tmp_path, _one_variant('kernel_regularizer = "L2"')) == []
    spec = parse_study(tmp_path / "study.toml")
    plan = plan_study(spec)
    members, _, _ = population_members(spec, plan.populations[0], load_study_data(spec))
    other = next(m for m in members if m.name.startswith("other"))
    assert isinstance(other.layers[0].kernel_regularizer, L2)
    assert other.layers[0].kernel_regularizer.l2 == L2().l2


def test_a_norm_constraint_s_axis_past_the_kernel_s_is_refused_naming_it(tmp_path):
    found = _checked(tmp_path, _one_variant(
        'kernel_constraint = { type = "MaxNorm", max_value = 2.0, axis = 5 }'))
    assert any("MaxNorm's axis 5 is out of range for a weight of shape (6, 8) (expected an "
               "axis in -2..1)" in p for p in found), found
    for axis in (-2, 1):  # within: taken
        assert _checked(tmp_path, _one_variant(
            f'kernel_constraint = {{ type = "MaxNorm", axis = {axis} }}')) == []


def test_a_regression_metric_under_a_sparse_classification_loss_is_refused(tmp_path):
    found = _checked(tmp_path, _one_variant("", training='metrics = ["mae"]\n'
                                            'loss = "sparse_categorical_crossentropy"'))
    assert any("training.metrics: 'mae' is an error between numbers; with the loss "
               "'sparse_categorical_crossentropy' the targets are class indices" in p
               for p in found), found
    assert _checked(tmp_path, _one_variant("", training='metrics = ["accuracy"]')) == []


def test_a_sweep_of_zero_and_negative_zero_is_one_value_listed_twice(tmp_path):
    found = _checked(tmp_path, _one_variant(
        'kernel_regularizer = { type = "L2", l2 = [0.0, -0.0] }'))
    assert any("two runs would both be named" in p and "a value listed twice" in p
               for p in found), found


@pytest.mark.parametrize("loss, metric, refused", [
    ("sparse_categorical_crossentropy", "categorical_accuracy", True),
    ("sparse_categorical_crossentropy", "binary_accuracy", True),
    ("sparse_categorical_crossentropy", "sparse_categorical_accuracy", False),
    ("categorical_crossentropy", "sparse_categorical_accuracy", True),
    ("categorical_crossentropy", "binary_accuracy", True),
    ("categorical_crossentropy", "categorical_accuracy", False),
    ("categorical_crossentropy", "accuracy", False)])
def test_a_named_accuracy_of_another_target_format_than_the_loss_s_is_refused(
        tmp_path, loss, metric, refused):
    """'categorical_accuracy' under the sparse loss had passed validate, failed where members
    trained together and scored 0 alone; 'binary_accuracy' over a softmax scored each class
    column (0.9 for every run of ten classes). Both ranked (review 116)."""
    found = _checked(tmp_path, _one_variant("", training=f'metrics = ["{metric}"]\n'
                                            f'loss = "{loss}"'))
    said = [p for p in found if p.startswith(f"training.metrics: {metric!r} scores ")]
    assert bool(said) == refused, found
    if refused:
        assert f"with the loss {loss!r} the targets are" in said[0]
        assert 'Use "accuracy"' in said[0]


def test_a_swa_start_past_the_epochs_names_both_keys_that_set_them(tmp_path):
    """The epochs come from training.epochs or from --epochs: the message had named only the
    file's key, also when --epochs had set them (review 116)."""
    found = _checked(tmp_path, _one_variant("swa = { start = 2 }"))
    assert any("variants.other.swa.start: expected an epoch the runs train (0 to 1" in p
               and "2 epochs (training.epochs, or --epochs where given). Got 2" in p
               for p in found), found
