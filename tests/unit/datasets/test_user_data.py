"""Loaders for the user's own data: arrays, .npz and CSV, with their error messages."""

from __future__ import annotations

import re

import numpy as np
import pytest

from reglab.datasets import load_arrays, load_csv, load_npz
from reglab.errors import ConfigError, DataError, DatasetNotFoundError

# --- load_arrays ----------------------------------------------------------------------------


def test_load_arrays_ok():
    x, y = load_arrays([[1, 2], [3, 4], [5, 6]], np.array([0, 1, 0]))
    assert isinstance(x, np.ndarray) and x.shape == (3, 2)
    assert y.tolist() == [0, 1, 0]


def test_load_arrays_keeps_dtypes():
    x, y = load_arrays(np.zeros((2, 3), dtype=np.float32), np.array([True, False]))
    assert x.dtype == np.float32 and y.dtype == np.bool_


def test_load_arrays_length_mismatch():
    with pytest.raises(
        DataError,
        match=r"load_arrays: 'x' and 'y' must have the same number of samples. Got 3 and 2.",
    ):
        load_arrays(np.zeros((3, 2)), [0, 1])


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (["a", "b"], [0, 1], r"'x' must be a numeric array .* Got dtype <U1"),
        ([[1.0], [2.0]], np.array([None, 1]), r"'y' must be a numeric array .* Got dtype object"),
        ([[1, 2], [3]], [0, 1], r"'x' must be a rectangular numeric array"),
        (3.0, [0], r"'x' must have a leading sample dimension. Got a scalar"),
        (np.zeros((0, 2)), [], r"expected at least one sample. Got 0."),
    ],
)
def test_load_arrays_errors(x, y, match):
    with pytest.raises(DataError, match=match):
        load_arrays(x, y)


# --- load_npz -------------------------------------------------------------------------------


def test_load_npz_default_and_custom_keys(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((4, 3)), y=np.arange(4), feats=np.zeros((4, 1)), target=np.ones(4))
    x, y = load_npz(path)
    assert x.shape == (4, 3) and y.tolist() == [0, 1, 2, 3]
    x, y = load_npz(path, x_key="feats", y_key="target")
    assert x.shape == (4, 1) and y.shape == (4,)


def test_load_npz_missing_key_lists_keys(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.ones((4, 3)), y=np.arange(4))
    with pytest.raises(
        DataError, match=r"d.npz'\): x_key 'x' is not in the archive. Available: features, y."
    ) as info:
        load_npz(path)
    assert str(path) in str(info.value)
    with pytest.raises(
        DataError, match=r"y_key 'labels' is not in the archive. Available: features, y."
    ):
        load_npz(path, x_key="features", y_key="labels")


def test_load_npz_did_you_mean(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.ones((2, 1)), y_train=np.ones(2))
    with pytest.raises(DataError, match="Did you mean 'x_train'"):
        load_npz(path, x_key="x_trian", y_key="y_train")


def test_load_npz_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="expected an existing .npz file"):
        load_npz(tmp_path / "nope.npz")


def test_load_npz_not_an_archive(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataError, match="expected a valid .npz archive") as caught:
        load_npz(path)
    # NumPy's own fallback takes such a file for a pickle and suggests loading it unsafely
    assert "not a zip archive" in str(caught.value) and "pickle" not in str(caught.value)
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, x=np.arange(3))
    damaged.write_bytes(damaged.read_bytes()[:40])  # a zip's start, cut short
    with pytest.raises(DataError, match="junk|damaged.npz"):
        load_npz(damaged)
    single = tmp_path / "single.npy"
    np.save(single, np.arange(3))
    with pytest.raises(DataError, match="Got a single .npy array"):
        load_npz(single)


def test_load_npz_length_mismatch_names_file(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((4, 3)), y=np.arange(5))
    with pytest.raises(DataError, match=r"load_npz\(.*d.npz'\): 'x' and 'y' must have the same"):
        load_npz(path)


# --- load_csv -------------------------------------------------------------------------------


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_csv_by_name(tmp_path):
    path = write(tmp_path, "a,label,b\n1,0,2\n3,1,4.5\n\n")
    x, y = load_csv(path)
    assert x.dtype == np.float32 and x.tolist() == [[1.0, 2.0], [3.0, 4.5]]
    assert y.dtype == np.int64 and y.tolist() == [0, 1]


def test_load_csv_by_index_and_float_labels(tmp_path):
    path = write(tmp_path, "a,b,target\n1,2,0.5\n3,4,1.25\n")
    x, y = load_csv(path, label_column=-1)
    assert x.tolist() == [[1, 2], [3, 4]]
    assert y.dtype == np.float32 and y.tolist() == [0.5, 1.25]
    x, y = load_csv(path, label_column=0)
    assert x.tolist() == [[2, 0.5], [4, 1.25]] and y.tolist() == [1, 3]


def test_load_csv_bom_whitespace_and_delimiter(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes("\ufefflabel\t f1 \n1\t 2.5\n".encode())
    x, y = load_csv(path, label_column="label", delimiter="\t")
    assert x.tolist() == [[2.5]] and y.tolist() == [1]


def test_load_csv_missing_label_column_lists_columns(tmp_path):
    path = write(tmp_path, "a,b,lable\n1,2,0\n")
    with pytest.raises(
        DataError,
        match=r"label column 'label' is not in the header. Columns: a, b, lable. Did you mean 'lable'\?",
    ) as info:
        load_csv(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, delimiter, hint", [
    ("2.04,-2.5,1\n0.4,-0.5,2\n", ",", "The first row holds numbers: the file seems to have "
                                      "no header row"),
    ("a;b;label\n1;2;0\n", ",", "The header is one column holding ';': the file seems "
                                 "separated by them, not by the ',' read"),
    ("a\tb\tlabel\n1\t2\t0\n", ",", "holding tabs: the file seems separated by them"),
    ("a,b,label\n1,2,0\n", "\t", "holding ',': the file seems separated by them, not by "
                                    "the tabs read"),
])
def test_a_missing_label_column_says_why_the_header_may_lack_it(tmp_path, text, delimiter,
                                                                   hint):
    """A file without a header row, or separated by another delimiter than the one read,
    is named as such (a did-you-mean of the whole row was no help)."""
    path = write(tmp_path, text)
    with pytest.raises(DataError, match="is not in the header") as info:
        load_csv(path, delimiter=delimiter)
    assert hint in str(info.value) and "Did you mean" not in str(info.value)


def test_load_csv_label_index_out_of_range(tmp_path):
    path = write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(
        DataError, match=r"label_column index must be in \[-2, 2\) for the 2 columns. Got 2."
    ):
        load_csv(path, label_column=2)


def test_load_csv_bad_label_column_type(tmp_path):
    path = write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(
        ConfigError, match="'label_column' must be a column name or an int index. Got 1.5."
    ):
        load_csv(path, label_column=1.5)


def test_load_csv_non_numeric_cell_names_line_and_column(tmp_path):
    path = write(tmp_path, "a,b,label\n1,2,0\n3,x4,1\n")
    with pytest.raises(DataError, match=r"line 3, column 'b' must be a number. Got 'x4'."):
        load_csv(path)


def test_load_csv_empty_cell(tmp_path):
    path = write(tmp_path, "a,b,label\n1,,0\n")
    with pytest.raises(DataError, match=r"line 2, column 'b' must be a number. Got ''."):
        load_csv(path)


def test_load_csv_ragged_row(tmp_path):
    path = write(tmp_path, "a,b,label\n1,2,0\n\n3,1\n")
    with pytest.raises(DataError, match=r"line 4 must have 3 fields like the header. Got 2"):
        load_csv(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "expected a header row. Got an empty file."),
        ("a,label\n", "expected at least one data row after the header. Got none."),
        ("label\n1\n", "expected at least one feature column besides the label"),
        (
            "label,a,label\n1,2,3\n",
            r"label column 'label' must appear once in the header. Got it at columns \[0, 2\]",
        ),
    ],
)
def test_load_csv_structure_errors(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load_csv(write(tmp_path, text))


def test_load_csv_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="expected an existing CSV file"):
        load_csv(tmp_path / "nope.csv")


def test_load_csv_labels_by_name_are_classes_in_sorted_order(tmp_path):
    # iris as a CSV: the species by name, numbered as scikit-learn's LabelEncoder numbers
    # them (sorted), whatever order the file shows them in
    path = write(tmp_path, "a,b,species\n1,2,virginica\n3,4,setosa\n5,6, versicolor\n"
                           "7,8,setosa\n")
    x, y, names = load_csv(path, "species", return_classes=True)
    assert names == ("setosa", "versicolor", "virginica")
    assert y.dtype == np.int64 and y.tolist() == [2, 0, 1, 0]
    assert x.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    x2, y2 = load_csv(path, "species")  # without the names: the same labels
    assert y2.tolist() == y.tolist()
    # a test file's labels take the training file's numbers, even with classes missing
    test = write(tmp_path, "a,b,species\n0,0,virginica\n", name="t.csv")
    assert load_csv(test, "species", classes=names)[1].tolist() == [2]


def test_load_csv_numeric_labels_give_no_class_names(tmp_path):
    path = write(tmp_path, "a,label\n1,0\n2,2.5\n")
    x, y, names = load_csv(path, return_classes=True)
    assert names is None and y.dtype == np.float32 and y.tolist() == [0.0, 2.5]


@pytest.mark.parametrize("text, classes, match", [
    # numbers with one word among them: a typo, not a column of class names
    ("a,label\n1,0\n2,1\n3,x1\n", None,
     r"line 4, column 'label' must be a number, as the column's other labels are .*"
     r"Got 'x1'"),
    ("a,label\n1,cat\n2,\n", None, r"line 3, column 'label': expected a label. Got an empty"),
    ("a,label\n1,cat\n2,cow\n", ("cat", "dog"),
     r"line 3, column 'label': the label 'cow' is not one of the classes 'cat', 'dog'"),
])
def test_load_csv_labels_that_are_neither_numbers_nor_known_classes(tmp_path, text, classes,
                                                                    match):
    with pytest.raises(DataError, match=match):
        load_csv(write(tmp_path, text), classes=classes)


@pytest.mark.parametrize("mark", ["NaN", "NA", "N/A", "null", "None", "#N/A"])
def test_load_csv_a_missing_value_mark_among_class_names_is_no_class(tmp_path, mark):
    path = write(tmp_path, f"a,label\n1,cat\n2,{mark}\n3,dog\n")
    with pytest.raises(DataError, match=rf"line 3, column 'label': expected a label. Got "
                                        rf"'{re.escape(mark)}', a missing value's mark"):
        load_csv(path)


def test_load_csv_an_unknown_label_names_at_most_ten_classes(tmp_path):
    classes = tuple(f"c{i:04d}" for i in range(2000))
    with pytest.raises(DataError) as caught:
        load_csv(write(tmp_path, "a,label\n1,other\n"), classes=classes)
    assert str(caught.value).endswith("'c0009', ... (2000 in all).")


def test_load_csv_class_names_that_pandas_reads_as_names_stay_classes(tmp_path):
    # pandas's missing-value marks are case-sensitive: 'none' (of none, mild, severe) is a name
    path = write(tmp_path, "a,label\n1,none\n2,mild\n3,severe\n4,?\n")
    assert load_csv(path, return_classes=True)[2] == ("?", "mild", "none", "severe")


def test_load_csv_not_utf8_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("fé,f2,label\n1,2,0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv'\): expected UTF-8 text\. Got bytes that "
                                        r"are not UTF-8 at byte 1"):
        load_csv(path)
