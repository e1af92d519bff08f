"""A population's checkpoint in the study directory: written after every epoch, atomically.

``<study>/checkpoints/<job>.pt`` holds the job's run ids, the population's state after its
last complete epoch (:meth:`reglab.engine.Population.checkpoint`) and every epoch row
recorded so far. A killed study resumes each interrupted job from it, so a kill loses at
most the epoch in progress; the driver deletes a job's checkpoint once its outcomes are
stored. The file is replaced atomically (written beside, flushed, renamed), so a kill
mid-write leaves the previous checkpoint whole.

Checkpoints hold Python objects (``torch.load`` with ``weights_only=False``): a study
directory is trusted as its study file is.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from reglab.utils import interrupts

DIRECTORY = "checkpoints"
FORMAT = 1
#: the names this module writes there: ``<population>-<16 hex digits>.pt`` and its partial
#: files (``<name>.<random>.partial``); any other file is the user's, never read or deleted
_OURS = re.compile(r"^.+-[0-9a-f]{16}\.pt(\.[A-Za-z0-9_]+\.partial)?$")


def _ours(path: Path) -> bool:
    return bool(_OURS.match(path.name)) and path.is_file()


def path_for(study_directory, population_key: str, run_ids: list[str]) -> str:
    """The checkpoint file of the job that trains ``run_ids`` of one population."""
    digest = hashlib.sha256("\n".join(run_ids).encode()).hexdigest()[:16]
    return str(Path(study_directory) / DIRECTORY / f"{population_key}-{digest}.pt")


def save(path: str, run_ids: list[str], population_state: dict, rows: list,
         study: str = "") -> None:
    """Writes the checkpoint (``study``: the study's fingerprint, checked by :func:`load`)."""
    import tempfile

    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".",
                                       suffix=".partial")
    try:
        # Ctrl-C inside torch's writer comes out of it as a RuntimeError: noted, it stays
        # Ctrl-C (utils/interrupts.py)
        with interrupts.noted(), os.fdopen(handle, "wb") as stream:
            torch.save({"format": FORMAT, "study": study, "run_ids": list(run_ids),
                        "population": population_state, "rows": list(rows)}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, target)
    except BaseException as error:
        Path(partial).unlink(missing_ok=True)
        if isinstance(error, Exception):
            interrupts.reraise_if_interrupted(error)
            if isinstance(error, RuntimeError) and _failed_write(error):
                raise CheckpointWriteError(target) from error
        raise


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (torch's writer says so as a RuntimeError):
    an error of the place, not of the runs, which stop there unrecorded, as a kill would
    leave them."""

    def __init__(self, target: Path):
        import errno
        import shutil

        place = next((p for p in target.parents if p.exists()), None)
        try:
            free = None if place is None else shutil.disk_usage(place).free
        except OSError:
            free = None
        room = "" if free is None else f"{free:,} bytes free on its device: "
        super().__init__(errno.ENOSPC if free is not None and free < 1 << 20 else errno.EIO,
                         f"cannot write the study's checkpoint ({room}the disk may be full)",
                         str(target))


def _failed_write(error: RuntimeError) -> bool:
    """Whether torch's archive writer failed to write (its file ran out of room)."""
    text = str(error)
    return "inline_container" in text or "unexpected pos" in text or "write" in text.lower()


def load(path: str | None, run_ids: list[str], device: str = "cpu",
         study: str | tuple[str, ...] = "") -> dict | None:
    """The checkpoint at ``path`` when it is one of this job (the same study, by its
    fingerprint, or by any of the fingerprints ``study`` lists, and the same runs), else
    None (no file, another study's or job's, or unreadable: the job then starts from its
    beginning)."""
    if path is None or not Path(path).is_file():
        return None
    import torch

    try:
        saved = torch.load(path, map_location=device, weights_only=False)
    except Exception:  # noqa: BLE001 - a damaged checkpoint only costs the work it held
        return None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or \
            saved.get("run_ids") != list(run_ids) or \
            saved.get("study") not in ((study,) if isinstance(study, str) else study):
        return None
    return saved


def readable(path: str) -> bool:
    """Whether the file at ``path`` is whole as an archive (``torch.save``'s zip, its
    directory at the end: what a kill mid-write or a truncation damages); read without
    loading the tensors."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def any_held(study_directory) -> bool:
    """Whether the study directory holds a checkpoint file of reglab's (not read)."""
    directory = Path(study_directory) / DIRECTORY
    return directory.is_dir() and any(_ours(path) for path in directory.glob("*.pt"))


def held(study_directory) -> dict[str, list[str]]:
    """The checkpoint files in the study directory and the run ids each holds (read
    without its tensors, which stay on disk); a file that is not a readable checkpoint of
    this format is left out."""
    directory = Path(study_directory) / DIRECTORY
    if not directory.is_dir():
        return {}
    import torch

    found = {}
    for path in sorted(directory.glob("*.pt")):
        if not _ours(path):
            continue  # a file of the user's: not unpickled
        try:
            saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # noqa: BLE001 - a damaged checkpoint only costs the work it held
            continue
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            continue
        run_ids = saved.get("run_ids")
        if isinstance(run_ids, list) and run_ids and all(isinstance(r, str) for r in run_ids):
            found[str(path)] = run_ids
    return found


def remove(path: str | None) -> None:
    if path is not None:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError:  # a checkpoint that cannot be removed costs only disk space
            pass


def remove_all_but(study_directory, keep: set[str]) -> None:
    """Deletes checkpoint files of jobs that no longer exist (their runs all finished, or
    the study was cut into other jobs); only files of this module's names (a directory the
    user gave as ``--out`` may hold a ``checkpoints/`` of theirs)."""
    directory = Path(study_directory) / DIRECTORY
    if not directory.is_dir():
        return
    try:
        for path in directory.iterdir():
            if str(path) not in keep and _ours(path):
                path.unlink(missing_ok=True)
        if not any(directory.iterdir()):
            directory.rmdir()
    except OSError:  # stale checkpoints that cannot be removed cost only disk space
        pass
