"""Where dataset files come from: local directories first, then a verified download.

:func:`locate` looks for a dataset's files in these places, in order, and
returns the first directory that holds all of them:

1. the ``path`` argument (the directory itself, then ``<path>/<name>/``);
2. ``$REGLAB_DATA_DIR/<name>/``, then ``$REGLAB_DATA_DIR/`` itself;
3. the user cache, ``<cache root>/<name>/`` (see :func:`cache_root`);
4. each system directory in :data:`SYSTEM_DATA_DIRS`, as ``<dir>/<name>/``
   (Debian's ``dataset-*`` packages install to ``/usr/share/datasets``);
5. a download of the missing ``<file>.gz`` into the cache, each file checked
   against its SHA-256 and moved into place only once complete and verified.

Each file may be gzip-compressed (``<file>.gz``) or plain (``<file>``). When
every place fails, one :class:`~reglab.errors.DatasetNotFoundError` lists
every place tried and why it failed.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reglab.errors import ConfigError, DataError, DatasetNotFoundError
from reglab.utils.atomic import atomic_open

logger = logging.getLogger(__name__)

#: Directories searched as ``<dir>/<name>/`` after the cache; tests monkeypatch this list.
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets")]

#: Seconds to wait on the network before a download counts as failed.
DOWNLOAD_TIMEOUT_S: float = 30.0

DATA_DIR_ENV = "REGLAB_DATA_DIR"
CACHE_DIR_ENV = "REGLAB_CACHE_DIR"
#: A base URL under which each dataset is mirrored as ``<mirror>/<name>/<file>.gz``.
MIRROR_ENV = "REGLAB_DATASET_MIRROR"


@dataclass(frozen=True)
class DatasetSpec:
    """What :func:`locate` needs to know about one dataset.

    Attributes:
        name: Directory name in data dirs, the cache and system dirs, e.g.
            ``"fashion-mnist"``.
        where: The public function to name in error messages, e.g.
            ``"fashion_mnist.load_data"``.
        files: The file names without ``.gz``.
        base_url: The URL of the directory holding the ``<file>.gz`` downloads.
        sha256: ``"<file>.gz"`` → hex SHA-256 digest of the download.
        install_hints: Ways to get the data without a download, shown when
            nothing is found (e.g. ``"apt-get install dataset-fashion-mnist"``).

    Example:
        >>> spec = DatasetSpec("toy", "toy.load_data", ("a",), "http://x/", {"a.gz": "00"})
        >>> spec.name
        'toy'
    """

    name: str
    where: str
    files: tuple[str, ...]
    base_url: str
    sha256: Mapping[str, str]
    install_hints: tuple[str, ...] = field(default=())


def cache_root() -> Path:
    """Returns the root of reglab's cache.

    ``$REGLAB_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/reglab`` if that is an
    absolute path, else ``~/.cache/reglab``.
    """
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).expanduser().is_absolute():
        return Path(xdg).expanduser() / "reglab"
    return Path.home() / ".cache" / "reglab"


def resolve_base_url(spec: DatasetSpec, base_url: str | None = None) -> str:
    """Returns the download URL directory: ``base_url``, else the mirror env, else the spec's."""
    if base_url:
        url = base_url
    elif os.environ.get(MIRROR_ENV):
        url = os.environ[MIRROR_ENV].rstrip("/") + "/" + spec.name
    else:
        url = spec.base_url
    return url.rstrip("/") + "/"


def find_files(directory: Path, names: tuple[str, ...]) -> tuple[dict[str, Path], list[str]]:
    """Looks for each of ``names`` in ``directory``, plain first, then ``.gz``.

    Returns:
        ``(found, missing)``: name → path for those present, and the names absent.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def download_file(
    url: str, dest: str | os.PathLike[str], sha256: str, *, timeout: float | None = None
) -> Path:
    """Downloads ``url`` to ``dest`` atomically, checking its SHA-256.

    The bytes go to a temporary file beside ``dest``; only once complete and
    verified is it renamed to ``dest``. On any failure the temporary file is
    removed, so ``dest`` is either absent or whole.

    Args:
        url: What to fetch (any scheme urllib knows: http, https, file).
        dest: Where to put it; its directory must exist.
        sha256: The expected hex digest.
        timeout: Seconds for the network; defaults to :data:`DOWNLOAD_TIMEOUT_S`.

    Returns:
        ``dest`` as a Path.

    Raises:
        DataError: The downloaded bytes do not have the expected SHA-256.
        OSError: The download failed (``urllib.error.URLError`` and the like).
    """
    dest = Path(dest)
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    with atomic_open(dest) as out, urllib.request.urlopen(url, timeout=timeout) as response:
        digest = hashlib.sha256()
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        got = digest.hexdigest()
        if got != sha256.lower():
            raise DataError(
                f"download_file({url!r}): expected SHA-256 {sha256.lower()}. Got {got}. "
                "The file was discarded; check the mirror, or fetch the file by other means."
            )
    return dest


def _candidate_dirs(
    spec: DatasetSpec, path: str | os.PathLike[str] | None, tried: list[str]
) -> Iterator[tuple[str, Path]]:
    """Yields ``(role, directory)`` to search, in order; notes an unset ``$REGLAB_DATA_DIR``."""
    if path is not None:
        yield "path argument", Path(path).expanduser()
        yield "path argument", Path(path).expanduser() / spec.name
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        yield f"${DATA_DIR_ENV}", Path(data_dir).expanduser() / spec.name
        yield f"${DATA_DIR_ENV}", Path(data_dir).expanduser()
    else:
        tried.append(f"${DATA_DIR_ENV}: not set")
    yield "cache", cache_root() / spec.name
    for system_dir in SYSTEM_DATA_DIRS:
        yield "system", Path(system_dir) / spec.name


def _download_missing(spec: DatasetSpec, base_url: str, tried: list[str]) -> bool:
    """Downloads the files absent from the cache; on failure notes why in ``tried``."""
    target = cache_root() / spec.name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        tried.append(f"download into {target}: cannot create the directory ({e})")
        return False
    _, missing = find_files(target, spec.files)
    for name in missing:
        file_name = f"{name}.gz"
        if file_name not in spec.sha256:
            raise ConfigError(
                f"{spec.where}: expected a SHA-256 for {file_name!r} in the dataset's table. "
                f"Got entries for {sorted(spec.sha256)}."
            )
        url = base_url + file_name
        logger.info("Downloading %s to %s", url, target)
        try:
            download_file(url, target / file_name, spec.sha256[file_name])
        except DataError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as e:
            tried.append(f"download {url}: {type(e).__name__}: {e}")
            return False
    return True


def locate(
    spec: DatasetSpec,
    path: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    download: bool = True,
) -> dict[str, Path]:
    """Finds all of a dataset's files in one directory, downloading them if need be.

    Args:
        spec: The dataset.
        path: A directory to search before all others.
        base_url: Download from here instead of ``$REGLAB_DATASET_MIRROR/<name>/``
            or ``spec.base_url``.
        download: Whether to download when no directory holds the files.

    Returns:
        File name (without ``.gz``) → path, all in one directory.

    Raises:
        DatasetNotFoundError: No place holds the files and the download failed,
            with every place tried in the message.
        DataError: A download did not match its SHA-256.
    """
    tried: list[str] = []
    for role, directory in _candidate_dirs(spec, path, tried):
        if not directory.is_dir():
            tried.append(f"{directory} ({role}): no such directory")
            continue
        found, missing = find_files(directory, spec.files)
        if not missing:
            return found
        tried.append(f"{directory} ({role}): missing {', '.join(f'{m}[.gz]' for m in missing)}")
    if download:
        url = resolve_base_url(spec, base_url)
        if _download_missing(spec, url, tried):
            found, missing = find_files(cache_root() / spec.name, spec.files)
            if not missing:
                return found
            tried.append(f"{cache_root() / spec.name}: missing {', '.join(missing)} after download")
    else:
        tried.append("download: disabled")
    hints = [*spec.install_hints, f"put the files in a directory and set {DATA_DIR_ENV} to it"]
    if download:
        hints.append("go online so they can be downloaded into the cache")
    raise DatasetNotFoundError(
        f"{spec.where}: expected the files {', '.join(f'{f}[.gz]' for f in spec.files)} "
        "in one of the places searched. Got none:\n"
        + "".join(f"  - {t}\n" for t in tried)
        + "To fix: "
        + "; or ".join(hints)
        + "."
    )
