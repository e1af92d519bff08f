"""Where load_data finds its files: search order, the verified download, and the final error.

Nothing here touches the network beyond 127.0.0.1, the real home or the real
cache: the ``isolated`` fixture points the cache, the data dir, the mirror
and the system dirs at temporary directories.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from reglab.datasets import fashion_mnist, mnist, sources
from reglab.datasets.idx import write_idx
from reglab.errors import DataError, DatasetNotFoundError

FILES = mnist.FILES


def write_tiny_dataset(directory: Path, marker: int, *, gz: bool = True, n: int = 5) -> None:
    """Writes the four MNIST-layout IDX files, every pixel equal to ``marker``."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    images = np.full((n, 28, 28), marker, dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for stem, array in zip(FILES, (images, labels, images[:3], labels[:3]), strict=True):
        write_idx(directory / f"{stem}{suffix}", array)


def marker_of(result) -> int:
    (x_train, _), _ = result
    return int(x_train[0, 0, 0])


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Cache, data dir and system dirs under tmp_path; downloads go to a closed port."""
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv(sources.MIRROR_ENV, closed_port_url())
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIRS", [tmp_path / "system"])
    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 5.0)
    return tmp_path


# --- search order ---------------------------------------------------------------------------


def test_explicit_path_beats_env_beats_cache_beats_system(isolated, monkeypatch):
    tmp = isolated
    write_tiny_dataset(tmp / "system" / "fashion-mnist", 4)
    write_tiny_dataset(tmp / "cache" / "fashion-mnist", 3)
    write_tiny_dataset(tmp / "env" / "fashion-mnist", 2)
    write_tiny_dataset(tmp / "explicit", 1)
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp / "env"))

    assert marker_of(fashion_mnist.load_data(path=tmp / "explicit")) == 1
    assert marker_of(fashion_mnist.load_data()) == 2
    monkeypatch.delenv(sources.DATA_DIR_ENV)
    assert marker_of(fashion_mnist.load_data()) == 3
    for stem in FILES:
        (tmp / "cache" / "fashion-mnist" / f"{stem}.gz").unlink()
    assert marker_of(fashion_mnist.load_data()) == 4


def test_env_dir_itself_and_path_subdir(isolated, monkeypatch):
    write_tiny_dataset(isolated / "flat", 7, gz=False)
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(isolated / "flat"))
    assert marker_of(mnist.load_data()) == 7
    write_tiny_dataset(isolated / "root" / "mnist", 8)
    assert marker_of(mnist.load_data(path=isolated / "root")) == 8


def test_loaded_arrays_have_keras_shapes_and_dtypes(isolated):
    write_tiny_dataset(isolated / "d", 9)
    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=isolated / "d")
    assert x_train.shape == (5, 28, 28) and x_test.shape == (3, 28, 28)
    assert y_train.shape == (5,) and y_test.shape == (3,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert all(isinstance(a, np.ndarray) for a in (x_train, y_train, x_test, y_test))


def test_incomplete_directory_is_skipped(isolated):
    write_tiny_dataset(isolated / "partial", 1)
    (isolated / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    write_tiny_dataset(isolated / "system" / "mnist", 2)
    assert marker_of(mnist.load_data(path=isolated / "partial")) == 2


def test_plain_and_gzip_files_mix(isolated):
    write_tiny_dataset(isolated / "d", 5, gz=True)
    (isolated / "d" / "train-labels-idx1-ubyte.gz").unlink()
    write_idx(isolated / "d" / "train-labels-idx1-ubyte", np.arange(5, dtype=np.uint8))
    assert marker_of(mnist.load_data(path=isolated / "d")) == 5


def test_corrupt_found_file_raises_instead_of_falling_through(isolated):
    write_tiny_dataset(isolated / "d", 1)
    write_tiny_dataset(isolated / "system" / "mnist", 2)
    path = isolated / "d" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        mnist.load_data(path=isolated / "d")


def test_cache_root_honours_xdg_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(sources.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_root() == tmp_path / "xdg" / "reglab"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert sources.cache_root() == Path.home() / ".cache" / "reglab"
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert sources.cache_root() == tmp_path / "mine"


def test_resolve_base_url(monkeypatch):
    spec = sources.DatasetSpec("toy", "toy.load_data", ("a",), "http://official/x", {})
    monkeypatch.delenv(sources.MIRROR_ENV, raising=False)
    assert sources.resolve_base_url(spec) == "http://official/x/"
    monkeypatch.setenv(sources.MIRROR_ENV, "http://mirror/data/")
    assert sources.resolve_base_url(spec) == "http://mirror/data/toy/"
    assert sources.resolve_base_url(spec, "http://arg") == "http://arg/"


# --- download -------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/served; yields (root directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve_tiny_dataset(root: Path, name: str, marker: int) -> dict[str, str]:
    """Writes the tiny .gz files under root/name and returns their SHA-256 table."""
    write_tiny_dataset(root / name, marker)
    return {
        f"{stem}.gz": hashlib.sha256((root / name / f"{stem}.gz").read_bytes()).hexdigest()
        for stem in FILES
    }


def cache_files(isolated, name: str) -> list[str]:
    directory = isolated / "cache" / name
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_via_mirror_env_into_cache(isolated, server, monkeypatch):
    root, url = server
    monkeypatch.setattr(fashion_mnist, "SHA256", serve_tiny_dataset(root, "fashion-mnist", 6))
    monkeypatch.setenv(sources.MIRROR_ENV, url)
    assert marker_of(fashion_mnist.load_data()) == 6
    assert cache_files(isolated, "fashion-mnist") == sorted(f"{s}.gz" for s in FILES)
    # The second call reads the cache: it works with the server gone.
    monkeypatch.setenv(sources.MIRROR_ENV, closed_port_url())
    assert marker_of(fashion_mnist.load_data()) == 6


def test_download_via_base_url_argument_fills_only_missing(isolated, server, monkeypatch):
    root, url = server
    monkeypatch.setattr(mnist, "SHA256", serve_tiny_dataset(root, "files", 3))
    cache = isolated / "cache" / "mnist"
    cache.mkdir(parents=True)
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (root / "files" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    )
    (root / "files" / "t10k-labels-idx1-ubyte.gz").unlink()  # would 404 if requested
    assert marker_of(mnist.load_data(base_url=url + "files")) == 3
    assert cache_files(isolated, "mnist") == sorted(f"{s}.gz" for s in FILES)


def test_hash_mismatch_raises_and_leaves_nothing(isolated, server, monkeypatch):
    root, url = server
    table = serve_tiny_dataset(root, "mnist", 1)
    table["train-images-idx3-ubyte.gz"] = "0" * 64
    monkeypatch.setattr(mnist, "SHA256", table)
    monkeypatch.setenv(sources.MIRROR_ENV, url)
    expected_url = url + "mnist/train-images-idx3-ubyte.gz"
    with pytest.raises(DataError, match="expected SHA-256 0{64}. Got [0-9a-f]{64}") as info:
        mnist.load_data()
    assert expected_url in str(info.value)
    assert not isinstance(info.value, DatasetNotFoundError)
    assert cache_files(isolated, "mnist") == []


def test_hash_mismatch_on_later_file_keeps_only_verified_files(isolated, server, monkeypatch):
    root, url = server
    table = serve_tiny_dataset(root, "mnist", 1)
    table["t10k-images-idx3-ubyte.gz"] = "f" * 64
    monkeypatch.setattr(mnist, "SHA256", table)
    monkeypatch.setenv(sources.MIRROR_ENV, url)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        mnist.load_data()
    assert cache_files(isolated, "mnist") == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


def test_http_404_is_listed_as_download_failure(isolated, server, monkeypatch):
    _, url = server
    monkeypatch.setenv(sources.MIRROR_ENV, url)
    with pytest.raises(DatasetNotFoundError, match="HTTP Error 404"):
        mnist.load_data()
    assert cache_files(isolated, "mnist") == []


def test_download_file_is_atomic_on_network_error(tmp_path):
    with pytest.raises(OSError):
        sources.download_file(closed_port_url() + "x.gz", tmp_path / "x.gz", "0" * 64, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_lists_every_place_tried(isolated, monkeypatch):
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(isolated / "env"))
    (isolated / "explicit").mkdir()
    dead = closed_port_url()
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist.load_data(path=isolated / "explicit", base_url=dead)
    message = str(info.value)
    assert message.startswith("fashion_mnist.load_data: expected the files")
    for place in [
        isolated / "explicit",
        isolated / "explicit" / "fashion-mnist",
        isolated / "env" / "fashion-mnist",
        isolated / "env",
        isolated / "cache" / "fashion-mnist",
        isolated / "system" / "fashion-mnist",
    ]:
        assert f"  - {place} (" in message
    assert f"download {dead}train-images-idx3-ubyte.gz: URLError" in message
    assert "missing train-images-idx3-ubyte[.gz]" in message  # the existing empty dir
    assert "apt-get install dataset-fashion-mnist" in message
    assert sources.DATA_DIR_ENV in message
    assert isinstance(info.value, FileNotFoundError)  # DatasetNotFoundError is one


def test_download_disabled(isolated):
    spec = sources.DatasetSpec("toy", "toy.load_data", ("a",), "http://unused/", {"a.gz": "0"})
    with pytest.raises(DatasetNotFoundError, match="download: disabled"):
        sources.locate(spec, download=False)


# --- the real data --------------------------------------------------------------------------

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_debian_fashion_mnist_loads(isolated, monkeypatch):
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIRS", [DEBIAN_FASHION.parent])
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_test.shape == (10000,) and y_test.dtype == np.uint8
    assert y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert cache_files(isolated, "fashion-mnist") == []  # nothing downloaded
