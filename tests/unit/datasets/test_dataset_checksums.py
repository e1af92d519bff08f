"""The SHA-256 digests shipped for MNIST and Fashion-MNIST: that they are the published ones,
that the real files match them, and that a download is checked against them (a copy that
differs by one byte, still valid gzip and valid IDX, is refused with a DataError).

Nothing here touches the network: downloads come from ``file://`` URLs under tmp_path, and
the cache, the data dir and the system dirs are pointed at tmp_path.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from reglab.datasets import fashion_mnist, mnist, sources
from reglab.datasets.idx import write_idx
from reglab.errors import DataError, DatasetNotFoundError

FILES = mnist.FILES
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_debian_files = pytest.mark.skipif(
    not all((DEBIAN_FASHION / f"{stem}.gz").is_file() for stem in FILES),
    reason="apt-get install dataset-fashion-mnist")

#: As published with the data, independently of reglab: Zalando's README
#: (github.com/zalandoresearch/fashion-mnist, "Get the Data") for Fashion-MNIST, and the
#: checksums TensorFlow Datasets and torchvision's ossci mirror pin for MNIST's original files.
PUBLISHED_SHA256 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
}

#: The gzip header fields of the official Fashion-MNIST downloads that Debian's copies do not
#: keep: Debian's ``dataset-fashion-mnist`` holds the official deflate streams and trailers
#: unchanged, under a header without the file name (FNAME) and with its own mtime. The
#: official files were written on 2017-08-31 (UTC), XFL 0, OS 3 (Unix).
OFFICIAL_MTIME = {"train-images-idx3-ubyte": 1504176606, "train-labels-idx1-ubyte": 1504176606,
                  "t10k-images-idx3-ubyte": 1504176627, "t10k-labels-idx1-ubyte": 1504176627}


def official_download(stem: str, mtime: int | None = None) -> bytes:
    """The official ``<stem>.gz`` rebuilt from Debian's copy: its header with the original
    file name and mtime put back (RFC 1952: ID1 ID2 CM FLG MTIME XFL OS [FNAME\\0])."""
    debian = (DEBIAN_FASHION / f"{stem}.gz").read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00", "a header without optional fields"
    mtime = OFFICIAL_MTIME[stem] if mtime is None else mtime
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03"
    return header + stem.encode() + b"\x00" + debian[10:]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Cache, data dir and system dirs under tmp_path; the default mirror is a dead URL."""
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv(sources.MIRROR_ENV, (tmp_path / "no-mirror").as_uri())
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIRS", [tmp_path / "system"])
    return tmp_path


def test_the_shipped_digests_are_the_published_ones():
    assert fashion_mnist.SHA256 == PUBLISHED_SHA256["fashion-mnist"]
    assert mnist.SHA256 == PUBLISHED_SHA256["mnist"]


@needs_debian_files
def test_the_real_files_match_the_shipped_digests():
    """Debian's Fashion-MNIST files are the official downloads under another gzip header:
    with the official header restored, each one's SHA-256 is the shipped digest."""
    for stem in FILES:
        debian = (DEBIAN_FASHION / f"{stem}.gz").read_bytes()
        rebuilt = official_download(stem)
        assert sha256(rebuilt) == fashion_mnist.SHA256[f"{stem}.gz"], stem
        assert sha256(debian) != fashion_mnist.SHA256[f"{stem}.gz"]  # why they are rebuilt
        if "labels" in stem:  # the same content either way (the images: same stream)
            assert gzip.decompress(rebuilt) == gzip.decompress(debian)


def _cache_all_but(isolated: Path, missing: str) -> Path:
    """The cache holding Debian's copies of the other three files (read only after IDX
    validation, as local files are), so that only ``missing`` is downloaded."""
    cache = isolated / "cache" / "fashion-mnist"
    cache.mkdir(parents=True)
    for stem in FILES:
        if stem != missing:
            (cache / f"{stem}.gz").symlink_to(DEBIAN_FASHION / f"{stem}.gz")
    return cache


@needs_debian_files
def test_a_download_that_matches_the_shipped_digest_is_kept_and_loaded(isolated):
    stem = "t10k-labels-idx1-ubyte"
    cache = _cache_all_but(isolated, stem)
    served = isolated / "served"
    served.mkdir()
    (served / f"{stem}.gz").write_bytes(official_download(stem))
    (_, _), (x_test, y_test) = fashion_mnist.load_data(base_url=served.as_uri())
    assert np.bincount(y_test).tolist() == [1000] * 10 and x_test.shape == (10000, 28, 28)
    assert sha256((cache / f"{stem}.gz").read_bytes()) == fashion_mnist.SHA256[f"{stem}.gz"]


@needs_debian_files
def test_a_download_one_byte_off_the_shipped_digest_is_refused(isolated):
    """One byte of the header's mtime changed: still a valid gzip stream of valid IDX data,
    so only the digest can tell; the file is refused, with the digest expected, and not
    kept (nor is the search continued elsewhere: a bad download is not 'not found')."""
    stem = "t10k-labels-idx1-ubyte"
    cache = _cache_all_but(isolated, stem)
    served = isolated / "served"
    served.mkdir()
    corrupted = official_download(stem, mtime=OFFICIAL_MTIME[stem] + 1)
    assert gzip.decompress(corrupted) == gzip.decompress(official_download(stem))
    (served / f"{stem}.gz").write_bytes(corrupted)
    expected = fashion_mnist.SHA256[f"{stem}.gz"]
    with pytest.raises(DataError) as info:
        fashion_mnist.load_data(base_url=served.as_uri())
    message = str(info.value)
    assert not isinstance(info.value, DatasetNotFoundError)
    assert f"{served.as_uri()}/{stem}.gz" in message
    assert f"expected SHA-256 {expected}. Got {sha256(corrupted)}." in message
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{s}.gz" for s in FILES if s != stem)  # nothing half-written left behind


def test_mnist_downloads_are_checked_against_the_shipped_digests(isolated, monkeypatch):
    """A mirror serving other (valid IDX) files under MNIST's names: the first download is
    refused against the shipped digest of train-images."""
    mirror = isolated / "mirror"
    (mirror / "mnist").mkdir(parents=True)
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    labels = np.arange(3, dtype=np.uint8)
    for stem, array in zip(FILES, (images, labels, images, labels), strict=True):
        write_idx(mirror / "mnist" / f"{stem}.gz", array)
    monkeypatch.setenv(sources.MIRROR_ENV, mirror.as_uri())
    served = (mirror / "mnist" / "train-images-idx3-ubyte.gz").read_bytes()
    with pytest.raises(DataError, match=f"expected SHA-256 {mnist.SHA256[FILES[0] + '.gz']}. "
                                        f"Got {sha256(served)}"):
        mnist.load_data()
    cache = isolated / "cache" / "mnist"
    assert not cache.exists() or list(cache.iterdir()) == []
