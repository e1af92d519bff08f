"""atomic_open removes the temporaries of its file that a killed writer left (between its
fsync and its rename), and only those."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reglab.utils.atomic import atomic_open


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its process id names no running process now
    left = tmp_path / f".report.html.{dead.pid}-0123456789ab.tmp"
    live = tmp_path / f".report.html.{os.getppid()}-ba9876543210.tmp"  # a running writer's
    older = tmp_path / ".report.html.0123456789ab.tmp"  # no process id: not judged
    other = tmp_path / f".other.html.{dead.pid}-0123456789ab.tmp"  # another file's
    for path in (left, live, older, other):
        path.write_bytes(b"half")
    with atomic_open(tmp_path / "report.html") as handle:
        handle.write(b"<html>")
    assert (tmp_path / "report.html").read_bytes() == b"<html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, older.name, other.name, "report.html"])


def test_an_exclusive_write_never_replaces_a_file_another_writer_put_there(tmp_path):
    target = tmp_path / "model.keras"
    with pytest.raises(FileExistsError):
        with atomic_open(target, exclusive=True) as handle:
            handle.write(b"mine")
            target.write_bytes(b"theirs")  # another writer, between the check and the rename
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temporary left
    fresh = tmp_path / "fresh.keras"
    with atomic_open(fresh, exclusive=True) as handle:
        handle.write(b"mine")
    assert fresh.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.keras", "model.keras"]


def test_a_model_saved_to_a_symbolic_link_is_written_through_it(tmp_path):
    import numpy as np

    import reglab

    model = reglab.Sequential([reglab.Input((3,)), reglab.layers.Dense(2)], seed=0)
    target, link = tmp_path / "real.keras", tmp_path / "link.keras"
    link.symlink_to(target)  # dangling: the save creates its target
    model.save(link, overwrite=False)
    assert link.is_symlink() and target.is_file()
    model.save(link)  # overwritten through the link, which stays a link
    assert link.is_symlink()
    x = np.ones((1, 3), dtype="float32")
    np.testing.assert_array_equal(reglab.models.load_model(link).predict(x), model.predict(x))
