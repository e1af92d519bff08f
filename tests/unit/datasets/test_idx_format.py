"""IDX reading and writing: round trips, and every corruption raises DataError naming the file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from reglab.datasets.idx import parse_idx, read_idx, read_labelled_images, write_idx
from reglab.errors import ConfigError, DataError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype)  # native byte order
    assert got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, array)
    got[0, 0, 0] = 1  # writable


def test_header_is_big_endian(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([7, 8, 9], dtype=np.uint8))
    assert path.read_bytes() == b"\x00\x00\x08\x01" + struct.pack(">I", 3) + bytes([7, 8, 9])


def test_gzip_is_detected_by_content_not_name(tmp_path):
    plain = b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x01\x02"
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(plain))
    np.testing.assert_array_equal(read_idx(path), [1, 2])


def _valid_bytes() -> bytes:
    return b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(range(6))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x01\x02\x08\x02" + _valid_bytes()[4:], "starting with bytes 00 00"),
        (b"\x00\x00\x07\x02" + _valid_bytes()[4:], "dtype code .* Got 0x07"),
        (b"\x00\x00\x08\x00", "at least 1 dimension"),
        (b"\x00\x00", "4-byte IDX magic"),
        (_valid_bytes()[:10], "12-byte header.*truncated"),
        (
            _valid_bytes()[:-1],
            r"expected 6 data bytes for shape \(2, 3\) of uint8. Got 5 \(truncated\)",
        ),
        (_valid_bytes() + b"\x00", r"Got 7 \(trailing bytes\)"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 0), "positive dimensions"),
    ],
    ids=[
        "bad-magic",
        "bad-dtype",
        "zero-ndim",
        "short-magic",
        "short-header",
        "truncated",
        "extra-bytes",
        "zero-dim",
    ],
)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_corrupt_file_raises_data_error_naming_file(tmp_path, content, match, compress):
    path = tmp_path / ("bad-idx" + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_valid_bytes() * 50)[:-12])
    with pytest.raises(DataError, match="complete gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_stream(tmp_path):
    data = bytearray(gzip.compress(bytes(range(256)) * 64))
    data[20:40] = b"\xff" * 20
    path = tmp_path / "garbled-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt or truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gz_name_without_gzip_content(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(_valid_bytes())
    with pytest.raises(DataError, match="expected a gzip stream"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="expected a readable file"):
        read_idx(tmp_path / "nope")


def test_parse_idx_names_source():
    with pytest.raises(DataError, match="'mem'"):
        parse_idx(b"\x00\x00\x08", source="mem")


def test_write_idx_rejects_unknown_dtype(tmp_path):
    with pytest.raises(ConfigError, match="dtype must be one of"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


class TestReadLabelledImages:
    def _write(self, tmp_path, images, labels):
        write_idx(tmp_path / "img", np.asarray(images, dtype=np.uint8))
        write_idx(tmp_path / "lab", np.asarray(labels, dtype=np.uint8))
        return tmp_path / "img", tmp_path / "lab"

    def test_ok(self, tmp_path):
        img, lab = self._write(tmp_path, np.zeros((3, 28, 28)), [0, 9, 4])
        x, y = read_labelled_images(img, lab, image_shape=(28, 28), num_classes=10)
        assert x.shape == (3, 28, 28) and y.tolist() == [0, 9, 4]

    def test_count_mismatch(self, tmp_path):
        img, lab = self._write(tmp_path, np.zeros((3, 28, 28)), [0, 1])
        with pytest.raises(DataError, match="as many labels as images. Got 3 images and 2 labels"):
            read_labelled_images(img, lab, image_shape=(28, 28), num_classes=10)

    def test_label_out_of_range(self, tmp_path):
        img, lab = self._write(tmp_path, np.zeros((3, 28, 28)), [0, 10, 1])
        with pytest.raises(DataError, match=r"labels in 0..9. Got 10 at index 1"):
            read_labelled_images(img, lab, image_shape=(28, 28), num_classes=10)

    def test_wrong_image_shape(self, tmp_path):
        img, lab = self._write(tmp_path, np.zeros((3, 28, 27)), [0, 1, 2])
        with pytest.raises(
            DataError, match=r"shape \(N, 28, 28\). Got uint8 of shape \(3, 28, 27\)"
        ):
            read_labelled_images(img, lab, image_shape=(28, 28), num_classes=10)

    def test_labels_not_1d(self, tmp_path):
        img, lab = self._write(tmp_path, np.zeros((2, 28, 28)), [[0], [1]])
        with pytest.raises(DataError, match=r"labels of shape \(N,\)"):
            read_labelled_images(img, lab, image_shape=(28, 28), num_classes=10)
