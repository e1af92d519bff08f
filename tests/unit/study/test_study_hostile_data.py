"""A study's own data that cannot be trained on as written: refused by `validate` (and so
before `run` writes anything), each with its file, key or place, never a silently wrong
result or a failure once training has begun."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from reglab.errors import DataError
from reglab.study import StudySpecError, parse_study
from reglab.study.build import check_study, load_study_data
from reglab.study.plan import plan_study

STUDY = """
seeds = 1
[data]
dataset = "d.npz"
DATA
[model]
input_shape = SHAPE
layers = LAYERS
[training]
epochs = 1
LOSS
[variants.baseline]
VARIANTS
"""
DENSE = """[{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]"""


def blobs(n=120, features=12, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(0, 3, (3, features))[y] + rng.normal(0, 0.5, (n, features)), y


def write(tmp_path: Path, arrays: dict | None = None, data="test_split = 0.25",
          shape="[12]", layers=DENSE, loss="", variants="") -> Path:
    if arrays is not None:
        np.savez(tmp_path / "d.npz", **arrays)
    path = tmp_path / "study.toml"
    path.write_text(STUDY.replace("DATA", data).replace("SHAPE", shape)
                    .replace("LAYERS", layers).replace("LOSS", loss)
                    .replace("VARIANTS", variants))
    return path


def refused(path: Path) -> str:
    spec = parse_study(path)
    with pytest.raises((StudySpecError, DataError)) as caught:
        check_study(plan_study(spec))
    error = caught.value
    return "\n".join(error.problems) if isinstance(error, StudySpecError) else str(error)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
@pytest.mark.parametrize("where", ["x", "x_test"])
def test_features_that_are_not_finite_float32_numbers_are_refused(tmp_path, bad, where):
    x, y = blobs()
    arrays = {"x": x, "y": y} if where == "x" else {"x": x[:90], "y": y[:90],
                                                     "x_test": x[90:], "y_test": y[90:]}
    arrays[where] = arrays[where].copy()
    arrays[where][7, 3] = bad
    path = write(tmp_path, arrays, data="" if where == "x_test" else "test_split = 0.25")
    with _no_warnings():
        message = refused(path)
    split = "test" if where == "x_test" else "training"
    assert f"the {split} features must be finite float32 numbers" in message
    assert "the first at sample 7" in message  # in the file's order: checked before splits


class _no_warnings:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")  # an overflow warning would reach the user's screen

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def test_a_nan_in_a_csv_feature_is_refused(tmp_path):
    x, y = blobs(features=2)
    rows = ["a,b,label"] + [f"{a},{b},{c}" for (a, b), c in zip(x, y)]
    rows[5] = "nan,1.0,0"
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    path = write(tmp_path, None, shape="[2]")
    path.write_text(path.read_text().replace('"d.npz"', '"d.csv"'))
    assert "features must be finite float32 numbers" in refused(path)


@pytest.mark.parametrize("held, missing", [("x_test", "y_test"), ("y_test", "x_test")])
def test_half_a_test_set_in_an_archive_is_refused(tmp_path, held, missing):
    x, y = blobs()
    arrays = {"x": x, "y": y, held: x[:10] if held == "x_test" else y[:10]}
    with pytest.raises(DataError, match=f"the archive has '{held}' but no '{missing}'"):
        load_study_data(parse_study(write(tmp_path, arrays, data="")))


def test_an_archive_test_set_is_checked_and_named_by_its_keys(tmp_path):
    x, y = blobs()
    arrays = {"x": x, "y": y, "x_test": x[:10], "y_test": np.array(["a"] * 10)}
    with pytest.raises(DataError, match="'y_test' must be a numeric array"):
        load_study_data(parse_study(write(tmp_path, arrays, data="")))


def test_a_truncated_archive_is_named(tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    whole = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(whole[: len(whole) // 2])
    path = write(tmp_path)
    with pytest.raises(DataError, match="expected a valid .npz archive. Got BadZipFile"):
        load_study_data(parse_study(path))
    assert not zipfile.is_zipfile(tmp_path / "d.npz")


def test_validation_labels_are_checked_before_training(tmp_path):
    x, y = blobs()
    y = y.copy()
    y[-3:] = 7  # only in the last 10 %, the validation split
    message = refused(write(tmp_path, {"x": x, "y": y}, data="validation_split = 0.1"))
    assert ("data (validation split: data.validation_split of data.dataset 'd.npz', its x "
            "and y)") in message and "labels must lie in [0, 2]" in message


def test_a_test_split_that_cannot_be_used_names_its_file_and_arrays(tmp_path):
    """The test split's errors say where it comes from (the archive's arrays, the separate
    file), as the training split's do: an integer y_test beside one-hot y_train."""
    x, y = blobs()
    arrays = {"x_train": x[:90], "y_train": np.eye(3)[y[:90]], "x_test": x[90:],
              "y_test": y[90:]}
    loss = 'loss = "categorical_crossentropy"'
    message = refused(write(tmp_path, arrays, data="", loss=loss))
    assert "data (test split: data.dataset 'd.npz', its x_test and y_test)" in message
    assert "expects one-hot labels" in message
    np.savez(tmp_path / "t.npz", x=x[90:], y=y[90:])
    message = refused(write(tmp_path, {"x": x[:90], "y": np.eye(3)[y[:90]]},
                            data='test = "t.npz"', loss=loss))
    assert "data (test split: data.test 't.npz')" in message


def test_float_labels_that_are_not_whole_in_their_own_precision_are_refused(tmp_path):
    x, y = blobs()
    labels = y.astype(np.float64)
    labels[4] += 1e-9  # whole once rounded to float32
    message = refused(write(tmp_path, {"x": x, "y": labels}))
    assert "takes integer class labels" in message and "the first at sample 4:" in message


@pytest.mark.parametrize("data", ["test_split = 0.5", "validation_split = 0.5", ""])
def test_a_label_that_is_not_whole_is_named_by_its_place_in_the_file_once(tmp_path, data):
    # whichever split it falls in: the file's sample, not the split's, and no second
    # problem advising a regression's metric for one typo
    x, y = blobs()
    labels = y.astype(np.float32)
    labels[70] = 1.5
    message = refused(write(tmp_path, {"x": x, "y": labels}, data=data))
    assert message.count("\n") == 0, message
    assert "d.npz: training.loss 'sparse_categorical_crossentropy' takes integer class " \
        "labels; the training targets hold 1 value that is not a whole number, the first " \
        "at sample 70: 1.5." in message


@pytest.mark.parametrize("targets", [[0, 1, 2], [-1, 1]])
def test_binary_crossentropy_targets_outside_0_1_are_refused(tmp_path, targets):
    x, _ = blobs()
    y = np.array(targets)[np.arange(len(x)) % len(targets)]
    layers = """[{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 1, activation = "sigmoid" }]"""
    message = refused(write(tmp_path, {"x": x, "y": y}, layers=layers,
                            loss='loss = "binary_crossentropy"\nmetrics = ["binary_accuracy"]'))
    assert "expects targets in [0, 1]" in message
    assert f"from {min(targets)} to {max(targets)}" in message


def test_binary_crossentropy_targets_in_0_1_pass(tmp_path):
    x, y = blobs()
    layers = """[{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 1, activation = "sigmoid" }]"""
    path = write(tmp_path, {"x": x, "y": (y == 1).astype(np.float32)}, layers=layers,
                 loss='loss = "binary_crossentropy"\nmetrics = ["binary_accuracy"]')
    check_study(plan_study(parse_study(path)))


def test_augmentation_of_data_that_are_not_images_is_refused_by_validate(tmp_path):
    x, y = blobs(features=16)
    message = refused(write(tmp_path, {"x": x, "y": y}, shape="[16]",
                            variants="[variants.aug]\naugment = { rotation_range = 10 }"))
    assert "variants.aug.augment: augmentation warps images" in message


@pytest.mark.parametrize("stored, shape, ok", [
    ((3, 4, 4), "[4, 4, 3]", False),   # channels first read as channels last
    ((2, 8, 3), "[8, 2, 3]", False),
    ((4, 4, 3), "[4, 4, 3]", True),
    ((4, 4), "[4, 4, 1]", True),       # a trailing channel of one
    ((4, 4, 3), "[48]", True),         # flattened: the model asked for flat samples
    ((48,), "[4, 4, 3]", True),        # flat samples reshaped into images
])
def test_samples_with_several_axes_are_never_rearranged(tmp_path, stored, shape, ok):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    x = rng.random((60, *stored))
    path = write(tmp_path, {"x": x, "y": y}, shape=shape,
                 layers='[{ type = "Flatten" }, { type = "Dense", units = 3, '
                        'activation = "softmax" }]')
    spec = parse_study(path)
    if ok:
        assert load_study_data(spec).x_train.shape[1:] == tuple(spec.input_shape)
    else:
        with pytest.raises(DataError, match="are taken as they are laid out"):
            load_study_data(spec)


@pytest.mark.parametrize("value", ["0", "-1", "[1]", "true", '""'])
def test_a_label_column_that_is_not_a_column_name_is_refused(tmp_path, value):
    path = write(tmp_path, None, data=f"label_column = {value}")
    path.write_text(path.read_text().replace('"d.npz"', '"d.csv"'))
    (tmp_path / "d.csv").write_text("a,label\n1,0\n")
    with pytest.raises(StudySpecError) as caught:
        parse_study(path)
    assert caught.value.problems[0].startswith("data.label_column: expected the name of")


def test_a_label_column_on_an_archive_is_refused_not_ignored(tmp_path):
    x, y = blobs()
    path = write(tmp_path, {"x": x, "y": y}, data='label_column = "target"')
    with pytest.raises(StudySpecError) as caught:
        parse_study(path)
    assert caught.value.problems == [
        "data.label_column: names a column of a .csv dataset; 'd.npz' has its labels apart "
        "(an archive's 'y', a built-in dataset's own). Remove it."]


@pytest.mark.parametrize("how", ["same", "copy"])
def test_a_test_file_that_is_the_training_file_is_refused(tmp_path, how):
    x, y = blobs()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    if how == "copy":
        (tmp_path / "t.npz").write_bytes((tmp_path / "d.npz").read_bytes())
    path = write(tmp_path, None, data=f'test = "{"d" if how == "same" else "t"}.npz"')
    with pytest.raises(StudySpecError) as caught:
        parse_study(path)
    assert "holds the training data of data.dataset ('d.npz') byte for byte" in \
        caught.value.problems[0]


def test_csv_cells_in_python_only_number_syntax_are_refused(tmp_path):
    from reglab.datasets import load_csv

    (tmp_path / "d.csv").write_text("a,label\n1_000,0\n2,1\n")
    with pytest.raises(DataError, match=r"line 2, column 'a' must be a number. Got '1_000'"):
        load_csv(tmp_path / "d.csv")


@pytest.mark.parametrize("split, left", [(0.999, 1), (0.99, 2)])
def test_a_validation_split_that_leaves_fewer_training_samples_than_classes(tmp_path, split,
                                                                            left):
    x, y = blobs(n=240)
    message = refused(write(tmp_path, {"x": x, "y": y},
                            data=f"test_split = 0.25\nvalidation_split = {split}"))
    assert "data.validation_split: expected a split that leaves at least 3 training " \
           "samples (one per class, 3 classes)" in message
    assert f"leaving {left}." in message


def test_a_validation_split_that_leaves_one_sample_per_class_is_taken(tmp_path):
    x, y = blobs(n=240)
    path = write(tmp_path, {"x": x, "y": y}, data="test_split = 0.25\nvalidation_split = 0.985")
    data = load_study_data(parse_study(path))
    assert len(data.y_train) == 3 and len(data.y_val) == 177


def test_an_archive_with_keras_s_array_names_is_read_as_keras_saves_them(tmp_path):
    # np.savez(f, x_train=..., y_train=..., x_test=..., y_test=...): load_data()'s names
    x, y = blobs()
    np.savez(tmp_path / "d.npz", x_train=x[:90], y_train=y[:90], x_test=x[90:],
             y_test=y[90:])
    data = load_study_data(parse_study(write(tmp_path, None, data="")))
    assert len(data.y_train) == 90 and data.y_val is None and np.array_equal(data.y_test, y[90:])
    np.testing.assert_array_equal(data.x_test, x[90:].astype("float32"))


def test_csv_labels_by_name_are_numbered_alike_in_the_training_and_test_files(tmp_path):
    names = np.array(["setosa", "versicolor", "virginica"])
    x, y = blobs()
    rows = "\n".join(",".join([*map(str, row), names[label]]) for row, label in zip(x, y))
    header = ",".join([*(f"f{i}" for i in range(12)), "species"])
    (tmp_path / "train.csv").write_text(f"{header}\n{rows}\n")
    # the test file holds one class only, named as in training: index 2, not 0
    (tmp_path / "test.csv").write_text(f"{header}\n{','.join(['0'] * 12)},virginica\n")
    path = write(tmp_path, None, data='label_column = "species"\ntest = "test.csv"')
    path.write_text(path.read_text().replace('"d.npz"', '"train.csv"'))
    data = load_study_data(parse_study(path))
    assert data.y_train.tolist() == y.tolist() and data.y_test.tolist() == [2]
    assert data.class_names == tuple(names)
    check_study(plan_study(parse_study(path)))  # trains on them: three classes, three units
    from click.testing import CliRunner

    from reglab.cli import main

    checked = CliRunner().invoke(main, ["validate", str(path)])
    assert checked.exit_code == 0, checked.output
    assert "classes by name (sorted): 0 = setosa, 1 = versicolor, 2 = virginica" in \
        checked.output
    (tmp_path / "test.csv").write_text(f"{header}\n{','.join(['0'] * 12)},2\n")
    assert "the label '2' is not one of the classes 'setosa'" in refused(path)
    # numbers in training, names in the test file: refused, not numbered apart
    numeric = "\n".join(",".join([*map(str, row), str(label)]) for row, label in zip(x, y))
    (tmp_path / "train.csv").write_text(f"{header}\n{numeric}\n")
    (tmp_path / "test.csv").write_text(f"{header}\n{','.join(['0'] * 12)},virginica\n")
    assert "its labels are class names ('virginica') where the training file" in \
        refused(path)


@pytest.mark.parametrize("arrays, shape", [
    ({"x": np.zeros((6, 12)), "y": np.arange(6) % 3}, (12,)),
    ({"x_train": np.zeros((6, 8, 8, 1), np.uint8), "y_train": np.arange(6) % 3}, (8, 8, 1)),
])
def test_a_model_without_input_shape_takes_the_shape_of_its_data(tmp_path, arrays, shape):
    # as Keras builds a model without an Input from the first batch it sees
    path = write(tmp_path, arrays, data="")
    path.write_text(path.read_text().replace("input_shape = SHAPE\n", "")
                    .replace("input_shape = [12]\n", ""))
    assert parse_study(path).input_shape == shape


def test_a_csv_model_without_input_shape_takes_its_feature_count(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,c,species\n1,2,3,setosa\n4,5,6,virginica\n")
    path = write(tmp_path, None, data='label_column = "species"')
    path.write_text(path.read_text().replace('"d.npz"', '"d.csv"')
                    .replace("input_shape = [12]\n", ""))
    assert parse_study(path).input_shape == (3,)
    # a one-dimensional x has no sample shape to take: the file's own shape is asked for
    np.savez(tmp_path / "d.npz", x=np.zeros(6), y=np.zeros(6))
    path.write_text(path.read_text().replace('"d.csv"', '"d.npz"')
                    .replace('label_column = "species"', ""))
    with pytest.raises(StudySpecError) as caught:
        parse_study(path)
    assert caught.value.problems == [
        "model.input_shape: not given, and not read from data.dataset 'd.npz': its samples "
        "have no shape of their own (x of shape [6])"]


def test_a_single_array_saved_as_npz_is_named_not_a_crash(tmp_path):
    with open(tmp_path / "d.npz", "wb") as f:
        np.save(f, np.zeros((10, 12), "float32"))
    assert "expected a .npz archive. Got a single .npy array" in refused(write(tmp_path, None))


@pytest.mark.parametrize("content, reason", [
    (b"garbage", "expected a valid .npz archive"),
    ({"a": np.zeros((6, 2)), "b": np.zeros(6)}, "x_key 'x' is not in the archive. Available: a, b"),
    ({"x": np.zeros(6), "y": np.zeros(6)}, "its samples have no shape of their own (x of shape [6])"),
])
def test_an_input_shape_the_data_cannot_give_says_why(tmp_path, content, reason):
    if isinstance(content, bytes):
        (tmp_path / "d.npz").write_bytes(content)
    else:
        np.savez(tmp_path / "d.npz", **content)
    path = write(tmp_path, None, data="")
    path.write_text(path.read_text().replace("input_shape = [12]\n", ""))
    with pytest.raises(StudySpecError) as caught:
        parse_study(path)
    (problem,) = caught.value.problems
    assert problem.startswith("model.input_shape: not given, and not read from data.dataset "
                              "'d.npz': ") and reason in problem


def test_class_names_with_a_regression_loss_are_refused(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,species\n1,2,setosa\n3,4,virginica\n")
    path = write(tmp_path, None, data='label_column = "species"', shape="[2]",
                 layers='[{ type = "Dense", units = 1 }]', loss='loss = "mse"')
    path.write_text(path.read_text().replace('"d.npz"', '"d.csv"'))
    assert "its labels are class names ('setosa', 'virginica'), but training.loss 'mse' is a " \
        "regression loss" in refused(path)


def test_a_separate_test_archive_may_use_keras_s_test_names(tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "d.npz", x=x[:90], y=y[:90])
    np.savez(tmp_path / "t.npz", x_test=x[90:], y_test=y[90:])
    data = load_study_data(parse_study(write(tmp_path, None, data='test = "t.npz"')))
    assert np.array_equal(data.y_test, y[90:])


@pytest.mark.parametrize("loss", ["", 'loss = "categorical_crossentropy"'])
def test_class_scores_per_position_of_unflattened_samples_are_refused_before_training(
        tmp_path, loss):
    # a Dense on (8, 6) samples acts on their last axis: (8, 3) scores, not one vector
    x, y = blobs(features=48)
    targets = y if not loss else np.eye(3)[y]
    path = write(tmp_path, {"x": x.reshape(-1, 8, 6), "y": targets}, shape="[8, 6]",
                 layers='[{ type = "Dense", units = 3, activation = "softmax" }]', loss=loss)
    assert "expects one vector of class scores per sample; the model's output per sample " \
        "has shape (8, 3) (a Dense on samples of several axes acts on their last one). " \
        "Flatten the samples before the last Dense" in refused(path)


@pytest.mark.parametrize("extra", [("x_val", "y_val"), ("x_validation", "y_validation"),
                                   ("x_train",)])
def test_arrays_of_an_archive_the_study_would_not_read_are_refused(tmp_path, extra):
    """A validation set (or training arrays beside 'x' and 'y') in the archive would be
    dropped without a word; arrays not named as data (class names) are left alone."""
    x, y = blobs()
    arrays = {"x": x[:90], "y": y[:90], **{name: x[90:] if name.startswith("x") else y[90:]
                                           for name in extra}}
    message = refused(write(tmp_path, arrays))
    assert "data.dataset" not in message or "d.npz" in message
    assert f"the archive holds {', '.join(map(repr, extra))}, which the study would not " \
           "read (it reads 'x', 'y')" in message
    np.savez(tmp_path / "t.npz", x=x[90:], y=y[90:], x_val=x[:5])
    message = refused(write(tmp_path, {"x": x[:90], "y": y[:90]}, data='test = "t.npz"'))
    assert "data.test ('t.npz'): the archive holds 'x_val'" in message
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    check_study(plan_study(parse_study(write(tmp_path))))  # taken
