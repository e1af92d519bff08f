"""Loading the user's own data: in-memory arrays, ``.npz`` archives and CSV tables.

Each loader returns ``(x, y)`` with as many samples in ``x`` as in ``y``, and
raises :class:`~reglab.errors.DataError` naming the file, the key, the line or
the column at fault.
"""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path

import numpy as np

from reglab.errors import ConfigError, DataError, DatasetNotFoundError, did_you_mean

# numpy kinds accepted as numbers: bool, signed int, unsigned int, float.
_NUMERIC_KINDS = "biuf"


def _as_numeric(value: object, name: str, where: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as e:  # ragged nested sequences
        raise DataError(f"{where}: {name!r} must be a rectangular numeric array. Got {e}.") from e
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(
            f"{where}: {name!r} must be a numeric array (bool, int or float). "
            f"Got dtype {array.dtype}."
        )
    if array.ndim == 0:
        raise DataError(
            f"{where}: {name!r} must have a leading sample dimension. Got a scalar {array.item()!r}."
        )
    return array


def load_arrays(
    x: object, y: object, *, where: str = "load_arrays", names: tuple[str, str] = ("x", "y")
) -> tuple[np.ndarray, np.ndarray]:
    """Checks in-memory features and targets and returns them as numpy arrays.

    Args:
        x: Features, array-like of shape ``(N, ...)``.
        y: Targets, array-like of shape ``(N, ...)``.
        where: What to call the caller in error messages.
        names: What to call ``x`` and ``y`` in them (an archive's keys).

    Returns:
        ``(x, y)`` as numpy arrays, dtypes unchanged.

    Raises:
        DataError: ``x`` or ``y`` is not numeric, is a scalar, is empty, or
            their lengths differ.

    Example:
        >>> x, y = load_arrays([[0.0, 1.0], [2.0, 3.0]], [0, 1])
        >>> x.shape, y.shape
        ((2, 2), (2,))
    """
    x_arr = _as_numeric(x, names[0], where)
    y_arr = _as_numeric(y, names[1], where)
    if len(x_arr) != len(y_arr):
        raise DataError(
            f"{where}: {names[0]!r} and {names[1]!r} must have the same number of samples. "
            f"Got {len(x_arr)} and {len(y_arr)}."
        )
    if len(x_arr) == 0:
        raise DataError(f"{where}: expected at least one sample. Got 0.")
    return x_arr, y_arr


def load_npz(
    path: str | os.PathLike[str], x_key: str = "x", y_key: str = "y"
) -> tuple[np.ndarray, np.ndarray]:
    """Loads features and targets from a ``.npz`` archive written by ``np.savez``.

    Args:
        path: The archive.
        x_key: The name of the features array in it.
        y_key: The name of the targets array in it.

    Returns:
        ``(x, y)``, checked as by :func:`load_arrays`.

    Raises:
        DatasetNotFoundError: The file does not exist.
        DataError: The file is not a valid ``.npz``, a key is missing, or the
            arrays do not fit together.

    Example:
        >>> import tempfile, numpy as np
        >>> p = tempfile.mkdtemp() + "/d.npz"
        >>> np.savez(p, x=np.zeros((3, 2)), y=np.arange(3))
        >>> [a.shape for a in load_npz(p)]
        [(3, 2), (3,)]
    """
    where = f"load_npz({str(path)!r})"
    if not Path(path).is_file():
        raise DatasetNotFoundError(f"{where}: expected an existing .npz file. Got no such file.")
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        raise DataError(f"{where}: expected a .npz archive. Got a single .npy array.")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # else NumPy takes it for a pickle
        raise DataError(f"{where}: expected a valid .npz archive (a zip of .npy arrays). Got "
                        f"a file that is not a zip archive (it starts with {head!r}).")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{where}: expected a valid .npz archive. Got {type(e).__name__}: {e}"
        ) from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{where}: expected a .npz archive. Got a single .npy array.")
    with loaded as archive:
        keys = list(archive.files)
        for key, arg in ((x_key, "x_key"), (y_key, "y_key")):
            if key not in keys:
                raise DataError(
                    f"{where}: {arg} {key!r} is not in the archive. "
                    f"Available: {', '.join(keys) or '(none)'}.{did_you_mean(key, keys)}"
                )
        arrays = []
        for key in (x_key, y_key):
            try:
                arrays.append(archive[key])
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise DataError(
                    f"{where}: expected a readable numeric array {key!r}. "
                    f"Got {type(e).__name__}: {e}"
                ) from e
    return load_arrays(*arrays, where=where, names=(x_key, y_key))


def npz_keys(path: str | os.PathLike[str], split: str = "train") -> tuple[str, str]:
    """The names of an archive's features and targets: ``x`` and ``y``, or Keras's
    ``x_train``/``y_train`` (``split="train"``) or ``x_test``/``y_test`` (``"test"``, a
    separate test file) where it has those and no ``x``; ``x`` and ``y`` where it cannot be
    read (:func:`load_npz` then says why)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                return "x", "y"
            keras_names = "x" not in archive.files and f"x_{split}" in archive.files
    except (OSError, ValueError, EOFError, TypeError, AttributeError, zipfile.BadZipFile):
        return "x", "y"
    return (f"x_{split}", f"y_{split}") if keras_names else ("x", "y")


def _header_hint(header: list[str], label_column: str, delimiter: str) -> str:
    """Why a header may lack the label column: it is a row of numbers (no header row), or
    one cell holding another delimiter's columns; else a close name."""
    if all(_is_number(name) for name in header):
        return (" The first row holds numbers: the file seems to have no header row; add one "
                "naming the columns (the label column among them).")
    if len(header) == 1:
        found = [d for d in (";", "\t", "|", ",", " ") if d != delimiter and d in header[0].strip()]
        if found:
            words = {"\t": "tabs", " ": "spaces"}
            return (f" The header is one column holding {words.get(found[0], repr(found[0]))}: "
                    f"the file seems separated by them, not by the "
                    f"{words.get(delimiter, repr(delimiter))} read (a study file reads "
                    "comma-separated values).")
    return did_you_mean(label_column, header)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_index(header: list[str], label_column: str | int, where: str,
                 delimiter: str = ",") -> int:
    if isinstance(label_column, bool) or not isinstance(label_column, (str, int)):
        raise ConfigError(
            f"{where}: 'label_column' must be a column name or an int index. Got {label_column!r}."
        )
    if isinstance(label_column, int):
        if not -len(header) <= label_column < len(header):
            raise DataError(
                f"{where}: label_column index must be in [{-len(header)}, {len(header)}) "
                f"for the {len(header)} columns. Got {label_column}."
            )
        return label_column % len(header)
    matches = [i for i, name in enumerate(header) if name == label_column]
    if not matches:
        raise DataError(
            f"{where}: label column {label_column!r} is not in the header. "
            f"Columns: {', '.join(header)}.{_header_hint(header, label_column, delimiter)}"
        )
    if len(matches) > 1:
        raise DataError(
            f"{where}: label column {label_column!r} must appear once in the header. "
            f"Got it at columns {matches}."
        )
    return matches[0]


def csv_columns(path: str | os.PathLike[str], *, delimiter: str = ",") -> list[str]:
    """The column names of a CSV file's header row (stripped, as :func:`load_csv` reads them).

    Raises:
        DatasetNotFoundError: The file does not exist.
        DataError: The file has no header row.
    """
    where = f"load_csv({str(path)!r})"
    if not Path(path).is_file():
        raise DatasetNotFoundError(f"{where}: expected an existing CSV file. Got no such file.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next((row for row in csv.reader(f, delimiter=delimiter) if row), None)
    if header is None:
        raise DataError(f"{where}: expected a header row. Got an empty file.")
    return [name.strip() for name in header]


def load_csv(
    path: str | os.PathLike[str], label_column: str | int = "label", *, delimiter: str = ",",
    classes: tuple[str, ...] | list[str] | None = None, return_classes: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """Loads a table with a header row: one label column, the rest numeric features.

    Blank lines are skipped. Labels whose values are all whole numbers come
    back as int64 (class indices), other numbers as float32 (regression targets).
    Labels that are names (any label cell that is not a number: ``setosa``) are
    classes, numbered in the sorted order of the names as scikit-learn's
    ``LabelEncoder`` numbers them, or by their place in ``classes`` when given
    (a test file's labels numbered as its training file's).

    Args:
        path: The CSV file.
        label_column: The label column's name, or its index (negative counts
            from the end).
        delimiter: The field separator.
        classes: The class names the labels must be among, in their index order.
        return_classes: Also return the class names (None for numeric labels).

    Returns:
        ``(x, y)``: float32 features ``(N, F)`` and labels ``(N,)``; with
        ``return_classes``, ``(x, y, class names or None)``.

    Raises:
        DatasetNotFoundError: The file does not exist.
        DataError: No header or no rows, a missing label column, a row with
            the wrong number of fields, a feature that is not a number, an empty
            label, or a label that is not one of ``classes``.

    Example:
        >>> import tempfile
        >>> p = tempfile.mkdtemp() + "/d.csv"
        >>> _ = open(p, "w").write("a,b,label\\n1,2,0\\n3,4,1\\n")
        >>> x, y = load_csv(p)
        >>> x.dtype, x.shape, y.tolist()
        (dtype('float32'), (2, 2), [0, 1])
    """
    where = f"load_csv({str(path)!r})"
    if not Path(path).is_file():
        raise DatasetNotFoundError(f"{where}: expected an existing CSV file. Got no such file.")
    try:
        x, cells, lines, column = _read_csv(path, label_column, delimiter, where)
    except UnicodeDecodeError as e:  # a file saved as Latin-1, UTF-16, or not text
        raise DataError(f"{where}: expected UTF-8 text. Got bytes that are not UTF-8 at byte "
                        f"{e.start} ({e.object[e.start:e.start + 4]!r}); save the file as "
                        "UTF-8.") from None
    except csv.Error as e:  # a field past the csv module's limit, a NUL byte, ...
        raise DataError(f"{where}: cannot be read as CSV: {e}.") from None
    y, names = _labels(cells, lines, column, classes, where)
    return (x, y, names) if return_classes else (x, y)


def _labels(cells: list[str], lines: list[int], column: str, classes, where: str
            ) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """The label column's cells as numbers (class indices or targets), or as classes by
    name; ``(labels, class names or None)``."""
    numbers = [_number(cell) for cell in cells]
    finite = [n is not None and np.isfinite(n) for n in numbers]
    if classes is None and any(finite):  # numbers ('nan' beside names is a name, refused)
        stray = next((i for i, n in enumerate(numbers) if n is None), None)
        if stray is not None:  # numbers with a stray word: a typo, not classes by name
            raise DataError(f"{where}: line {lines[stray]}, column {column!r} must be a "
                            f"number, as the column's other labels are (or every label a "
                            f"class name). Got {cells[stray]!r}.")
        y = np.asarray(numbers, dtype=np.float64)
        # whole numbers that int64 holds exactly are class indices; any other label a target
        if np.all(np.isfinite(y)) and np.all(y == np.round(y)) and np.all(np.abs(y) < 2**53):
            return y.astype(np.int64), None
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by name later
            return y.astype(np.float32), None
    names = [cell.strip() for cell in cells]
    for cell, line in zip(names, lines):
        if not cell or cell in MISSING_MARKS:
            raise DataError(f"{where}: line {line}, column {column!r}: expected a label. Got "
                            f"{'an empty cell' if not cell else repr(cell)}, a missing value's "
                            "mark (as pandas reads it), not a class.")
    known = tuple(sorted(set(names))) if classes is None else tuple(classes)
    index = {name: i for i, name in enumerate(known)}
    for cell, line in zip(names, lines):
        if cell not in index:
            shown = ", ".join(map(repr, known[:10])) + (f", ... ({len(known)} in all)"
                                                        if len(known) > 10 else "")
            raise DataError(f"{where}: line {line}, column {column!r}: the label {cell!r} is "
                            f"not one of the classes {shown}.")
    return np.asarray([index[cell] for cell in names], dtype=np.int64), known


#: label cells that mark a missing value, as pandas reads them by default (its ``na_values``,
#: case as written): refused in a column of class names rather than taken for one more class
MISSING_MARKS = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                           "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None",
                           "n/a", "nan", "null"})


def _number(cell: str) -> float | None:
    """A CSV cell's number, or None (Python's digit grouping ``1_000`` is no CSV number)."""
    if "_" in cell:
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path, label_column, delimiter: str, where: str):
    """``(features (N, F) float32, label cells, their line numbers, the label column)``."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next((row for row in reader if row), None)
        if header is None:
            raise DataError(f"{where}: expected a header row. Got an empty file.")
        header = [name.strip() for name in header]
        label = _label_index(header, label_column, where, delimiter)
        if len(header) < 2:
            raise DataError(
                f"{where}: expected at least one feature column besides the label. "
                f"Got columns {header}."
            )
        features, labels, lines = [], [], []
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise DataError(
                    f"{where}: line {line} must have {len(header)} fields like the header. "
                    f"Got {len(row)}: {row!r}."
                )
            values = []
            for column, cell in enumerate(row):
                if column == label:
                    labels.append(cell)
                    continue
                value = _number(cell)
                if value is None:
                    raise DataError(
                        f"{where}: line {line}, column {header[column]!r} must be a number. "
                        f"Got {cell!r}.")
                values.append(value)
            features.append(values)
            lines.append(line)
    if not features:
        raise DataError(f"{where}: expected at least one data row after the header. Got none.")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: refused by name later
        return np.asarray(features, dtype=np.float32), labels, lines, header[label]
