"""[data] test, test_split, split_seed and standardize: parsing, fingerprints, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reglab.study import StudySpecError, parse_study
from reglab.study.build import check_study, load_study_data
from reglab.study.plan import plan_study
from reglab.study.spec import StudySpec

STUDY = """
seeds = 2
[data]
dataset = "train.csv"
DATA
[model]
input_shape = [3]
layers = [{ type = "Dense", units = 4, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
epochs = 1
[variants.baseline]
"""


def table(rows: int = 120, seed: int = 0):
    """Features on very different scales, a label column in the middle, three classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    x = np.stack([rng.normal(1000 * y, 300), rng.normal(0.001 * y, 0.001),
                  rng.normal(y, 1.0)], axis=1)
    return x, y


def write_csv(path: Path, x, y, columns=("a", "b", "label", "c")):
    lines = [",".join(columns)]
    for features, label in zip(x, y):
        cells = {"a": repr(float(features[0])), "b": repr(float(features[1])),
                 "c": repr(float(features[2]))}
        lines.append(",".join(cells.get(c, str(int(label))) for c in columns))
    path.write_text("\n".join(lines) + "\n")


def study(tmp_path: Path, data: str = "", rows: int = 120) -> Path:
    x, y = table(rows)
    write_csv(tmp_path / "train.csv", x, y)
    path = tmp_path / "study.toml"
    path.write_text(STUDY.replace("DATA", data))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StudySpecError) as caught:
        parse_study(path)
    return caught.value.problems


def test_new_keys_are_absent_from_the_fingerprint_unless_set(tmp_path):
    plain = parse_study(study(tmp_path))
    canonical = json.loads(plain.canonical_json())["data"]
    assert set(canonical) == {"dataset", "validation_split", "label_column", "sha256"}
    split = parse_study(study(tmp_path, "test_split = 0.25"))
    assert split.fingerprint() != plain.fingerprint()
    assert json.loads(split.canonical_json())["data"]["test_split"] == 0.25
    reseeded = parse_study(study(tmp_path, "test_split = 0.25\nsplit_seed = 1"))
    assert reseeded.fingerprint() != split.fingerprint()
    scaled = parse_study(study(tmp_path, "standardize = true"))
    assert scaled.fingerprint() != plain.fingerprint()
    assert parse_study(study(tmp_path, "standardize = false")).fingerprint() == plain.fingerprint()
    for spec in (split, reseeded, scaled):
        assert StudySpec.from_canonical(json.loads(spec.canonical_json())) == spec


def test_the_test_file_is_fingerprinted_by_name_and_content_not_place(tmp_path):
    path = study(tmp_path, 'test = "test.csv"')
    x, y = table(30, seed=1)
    write_csv(tmp_path / "test.csv", x, y)
    spec = parse_study(path)
    assert spec.data.test == "test.csv"
    assert spec.data.test_location == str((tmp_path / "test.csv").resolve())
    canonical = json.loads(spec.canonical_json())["data"]
    assert canonical["test"] == "test.csv" and len(canonical["test_sha256"]) == 64
    assert "test_location" not in canonical
    assert StudySpec.from_canonical(json.loads(spec.canonical_json())) == spec
    write_csv(tmp_path / "test.csv", x[:20], y[:20])
    assert parse_study(path).fingerprint() != spec.fingerprint()  # other test data: other study


@pytest.mark.parametrize("data, message", [
    ("test_split = 0", "data.test_split: expected a number in (0, 1), the fraction of the "
     "training file held out as the test set. Got 0."),
    ("test_split = 1.0", "data.test_split: expected a number in (0, 1)"),
    ("test_split = -0.2", "data.test_split: expected a number in (0, 1)"),
    ('test_split = "0.2"', "data.test_split: expected a number in (0, 1), the fraction of the "
     "training file held out as the test set. Got '0.2'."),
    ("test_split = true", "Got True."),
    ("standardize = 1", "data.standardize: expected true or false. Got 1."),
    ('standardize = "yes"', "data.standardize: expected true or false. Got 'yes'."),
    ('test = "missing.csv"', "data.test: no file at"),
    ('test = "train.npz"', "data.test: expected a .csv file, the format of data.dataset. "
     "Got 'train.npz'."),
    ("test = 3", "data.test: expected a path to a .csv or .npz test file. Got 3."),
    ('test = "train.csv"\ntest_split = 0.2', "data.test, data.test_split: expected one of them"),
    ("split_seed = 3", "data.split_seed: seeds the held-out test split; expected only with "
     "test_split. Got split_seed = 3 without it."),
    ("test_split = 0.2\nsplit_seed = -1", "data.split_seed: expected an int >= 0. Got -1."),
    ("test_spilt = 0.2", "data: unknown key 'test_spilt'. Did you mean 'test_split'?"),
])
def test_each_bad_data_key_is_named(tmp_path, data, message):
    found = problems(study(tmp_path, data))
    assert any(message in p for p in found), found


@pytest.mark.parametrize("key", ['test = "test.csv"', "test_split = 0.2"])
def test_a_built_in_dataset_keeps_its_own_test_set(tmp_path, key):
    (tmp_path / "test.csv").write_text("a,label\n1,0\n")
    path = tmp_path / "study.toml"
    path.write_text(STUDY.replace('"train.csv"', '"fashion_mnist"').replace("DATA", key))
    found = problems(path)
    assert len(found) == 1 and "'fashion_mnist' has its own test set" in found[0], found


def test_an_archive_with_a_test_part_refuses_another(tmp_path):
    x, y = table(40)
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x[:10], y_test=y[:10])
    np.savez(tmp_path / "test.npz", x=x[:10], y=y[:10])
    path = tmp_path / "study.toml"
    for key, message in [("test_split = 0.2", "data.test_split: 'data.npz' holds a test set"),
                         ('test = "test.npz"', "data.test: 'data.npz' holds a test set")]:
        path.write_text(STUDY.replace('"train.csv"', '"data.npz"').replace("DATA", key))
        found = problems(path)
        assert len(found) == 1 and message in found[0], found


def test_a_held_out_split_is_stratified_and_the_same_for_every_seed_and_load(tmp_path):
    spec = parse_study(study(tmp_path, "test_split = 0.25\nvalidation_split = 0.2", rows=120))
    data = load_study_data(spec)
    _, y = table(120)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (72, 18, 30)
    for k in range(3):
        assert abs(np.sum(data.y_test == k) - np.sum(y == k) * 0.25) <= 1
    again = load_study_data(spec)
    assert np.array_equal(again.x_test, data.x_test) and np.array_equal(again.y_val, data.y_val)
    assert data.feature_mean is None and data.feature_std is None
    # the rows are the file's, none lost or repeated
    rows = np.concatenate([data.x_train, data.x_val, data.x_test])
    assert len(np.unique(rows, axis=0)) == 120


def test_standardization_uses_the_training_split_alone(tmp_path):
    plain = load_study_data(parse_study(study(tmp_path, "test_split = 0.25\n"
                                                        "validation_split = 0.2")))
    spec = parse_study(study(tmp_path, "test_split = 0.25\nvalidation_split = 0.2\n"
                                       "standardize = true"))
    data = load_study_data(spec)
    train = plain.x_train.astype(np.float64)  # the rows the model trains on, by hand
    np.testing.assert_allclose(data.feature_mean, train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(data.feature_std, train.std(0), rtol=1e-12)
    assert data.feature_mean.shape == (3,)
    np.testing.assert_allclose(data.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(0), 1, atol=1e-5)
    for scaled, raw in ((data.x_val, plain.x_val), (data.x_test, plain.x_test)):
        np.testing.assert_allclose(scaled, (raw - train.mean(0)) / train.std(0), rtol=1e-5,
                                   atol=1e-5)
    assert not np.allclose(data.x_test.mean(0), 0, atol=1e-3)  # not its own statistics
    again = load_study_data(spec)
    assert np.array_equal(again.feature_mean, data.feature_mean)
    assert np.array_equal(again.x_test, data.x_test)


def test_a_separate_test_file_is_read_with_the_label_column_and_checked(tmp_path):
    path = study(tmp_path, 'test = "test.csv"\nstandardize = true')
    x, y = table(30, seed=1)
    write_csv(tmp_path / "test.csv", x, y)
    spec = parse_study(path)
    data = check_study(plan_study(spec))
    assert len(data.x_test) == 30 and np.array_equal(data.y_test, y)
    np.testing.assert_allclose(data.x_test, (x - data.feature_mean) / data.feature_std,
                               rtol=1e-5, atol=1e-5)
    # the report's reader needs no test file (the store does not keep its place)
    assert load_study_data(spec, with_test=False).x_test is None

    write_csv(tmp_path / "test.csv", x, y, columns=("a", "b", "target", "c"))
    with pytest.raises(StudySpecError) as caught:
        check_study(plan_study(spec))
    assert "label column 'label' is not in the header" in str(caught.value)
    assert "test.csv" in str(caught.value)

    write_csv(tmp_path / "test.csv", x, y, columns=("b", "a", "label", "c"))
    with pytest.raises(StudySpecError, match=r"data.test \('test.csv'\): expected the columns "
                                             r"of the training file 'train.csv' in its order"):
        check_study(plan_study(spec))


def test_a_test_file_with_another_class_is_refused_by_validate(tmp_path):
    path = study(tmp_path, 'test = "test.csv"')
    x, y = table(30, seed=1)
    y[0] = 5  # the model has 3 output units
    write_csv(tmp_path / "test.csv", x, y)
    with pytest.raises(StudySpecError, match="test split"):
        check_study(plan_study(parse_study(path)))


def test_a_separate_npz_test_file(tmp_path):
    x, y = table(60)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x[:15] + 1, y=y[:15])
    path = tmp_path / "study.toml"
    path.write_text(STUDY.replace('"train.csv"', '"data.npz"').replace("DATA",
                                                                        'test = "test.npz"'))
    data = load_study_data(parse_study(path))
    np.testing.assert_allclose(data.x_test, (x[:15] + 1).astype(np.float32))
    assert len(data.x_train) == 60


REGRESSION = """
seeds = 2
[data]
dataset = "prices.npz"
DATA
[model]
input_shape = [3]
layers = [{ type = "Dense", units = 4, activation = "relu" },
          { type = "Dense", units = 1, activation = "linear" }]
[training]
loss = "LOSS"
metrics = ["mae"]
epochs = 1
[variants.baseline]
"""


def regression_study(tmp_path: Path, data: str, loss: str = "mse", y=None) -> Path:
    """300 samples whose targets are whole numbers, all different (prices)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype("float32")
    if y is None:
        y = 100_000 + rng.permutation(300) * 7
    np.savez(tmp_path / "prices.npz", x=x, y=y)
    path = tmp_path / "study.toml"
    path.write_text(REGRESSION.replace("DATA", data).replace("LOSS", loss))
    return path


@pytest.mark.parametrize("loss", ["mse", "mean_squared_error"])  # the study's regression losses
def test_a_regression_loss_s_whole_number_targets_are_split_without_classes(tmp_path, loss):
    """Whole-number targets (prices, counts) under a regression loss are values: the test
    split, the validation split and a training-size regime take them without strata and
    without a per-class minimum (each price was one 'class' of one sample, and every split
    was refused)."""
    spec = parse_study(regression_study(tmp_path, "test_split = 0.2\nvalidation_split = 0.2\n"
                                                  "train_size = [50, 1.0]", loss))
    data = load_study_data(spec)
    assert not data.class_labels
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (192, 48, 60)
    check_study(plan_study(spec))  # the regimes too: 50 samples of 300 "classes"
    # the same targets under a classification loss are class labels, stratified
    labels = regression_study(tmp_path, "test_split = 0.2", y=np.arange(300) % 3)
    text = labels.read_text().replace('loss = "mse"', 'loss = "sparse_categorical_crossentropy"')
    labels.write_text(text.replace('metrics = ["mae"]', 'metrics = ["accuracy"]')
                      .replace("units = 1, activation = \"linear\"",
                               "units = 3, activation = \"softmax\""))
    classes = load_study_data(parse_study(labels))
    assert classes.class_labels and np.bincount(classes.y_test).tolist() == [20, 20, 20]


def test_targets_with_nan_are_named_by_file_and_sample_before_any_split(tmp_path):
    y = np.arange(300, dtype=np.float64)
    y[123] = np.nan
    spec = parse_study(regression_study(tmp_path, "test_split = 0.2", y=y))
    with pytest.raises(Exception, match=r"prices.npz: the training targets must be finite "
                                        r"numbers. Got 1 samples with NaN or an infinity, the "
                                        r"first at sample 123"):
        load_study_data(spec)


def test_a_validation_split_too_small_for_one_sample_is_refused(tmp_path):
    spec = parse_study(regression_study(tmp_path, "validation_split = 0.001"))
    with pytest.raises(Exception, match=r"data.validation_split: 0.001 of the 300 training "
                                        r"samples is no validation sample"):
        load_study_data(spec)


def test_accuracy_on_rows_of_real_values_is_refused(tmp_path):
    """Two-column real-valued targets are a regression's, not one-hot rows: an accuracy
    metric over them is refused (it was computed as the argmax's agreement)."""
    rng = np.random.default_rng(1)
    path = regression_study(tmp_path, "test_split = 0.2", loss="mse",
                            y=rng.normal(size=(300, 2)).astype("float32"))
    path.write_text(path.read_text().replace('metrics = ["mae"]', 'metrics = ["accuracy"]')
                    .replace("units = 1,", "units = 2,"))
    with pytest.raises(StudySpecError, match=r"'accuracy' scores class labels; the data's "
                                             r"targets are not class labels \(the loss 'mse' "
                                             r"is a regression's\)"):
        check_study(plan_study(parse_study(path)))
    from reglab.datasets.splits import class_keys

    assert class_keys(rng.normal(size=(10, 2))) is None
    assert class_keys(np.eye(3)[[0, 2, 1, 2]]).tolist() == [0, 2, 1, 2]
