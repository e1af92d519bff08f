"""A checkpoint is used only by the job of the study that wrote it."""

from __future__ import annotations

from reglab.study import checkpoints


def test_a_checkpoint_of_another_study_or_job_is_not_used(tmp_path):
    path = checkpoints.path_for(tmp_path, "pop", ["a/seed=0", "b/seed=0"])
    checkpoints.save(path, ["a/seed=0", "b/seed=0"], {"epoch": 3}, [("a/seed=0", 0, {})],
                     study="fingerprint-1")
    assert checkpoints.load(path, ["a/seed=0", "b/seed=0"], study="fingerprint-1")[
        "population"] == {"epoch": 3}
    # the same runs after --restart with other settings (another fingerprint): not resumed
    assert checkpoints.load(path, ["a/seed=0", "b/seed=0"], study="fingerprint-2") is None
    assert checkpoints.load(path, ["a/seed=0"], study="fingerprint-1") is None
    # any of several fingerprints (a job's, and the study's work as a reglab from before
    # job fingerprints wrote it)
    assert checkpoints.load(path, ["a/seed=0", "b/seed=0"],
                            study=("fingerprint-2", "fingerprint-1")) is not None
    assert checkpoints.load(path, ["a/seed=0", "b/seed=0"],
                            study=("fingerprint-2", "fingerprint-3")) is None
    assert not list((tmp_path / checkpoints.DIRECTORY).glob("*.partial"))


def test_a_damaged_checkpoint_is_not_used_and_cleanup_tolerates_odd_entries(tmp_path):
    path = checkpoints.path_for(tmp_path, "pop", ["a/seed=0"])
    (tmp_path / checkpoints.DIRECTORY).mkdir()
    with open(path, "wb") as handle:
        handle.write(b"not a checkpoint")
    assert checkpoints.load(path, ["a/seed=0"], study="x") is None
    (tmp_path / checkpoints.DIRECTORY / "a-directory").mkdir()
    checkpoints.remove_all_but(tmp_path, set())  # no IsADirectoryError
    assert not (tmp_path / checkpoints.DIRECTORY / "pop-0.pt").exists()


def test_a_user_s_own_files_beside_the_checkpoints_are_never_read_or_deleted(tmp_path):
    """``--out`` may be a directory of the user's with a checkpoints/ folder of their own."""
    import torch

    directory = tmp_path / checkpoints.DIRECTORY
    directory.mkdir()
    mine = directory / "my_model_epoch50.pt"
    torch.save({"format": checkpoints.FORMAT, "run_ids": ["a/seed=0"]}, mine)
    (directory / "README").write_text("notes")
    ours = checkpoints.path_for(tmp_path, "pop", ["a/seed=0"])
    checkpoints.save(ours, ["a/seed=0"], {"epoch": 1}, [], study="s")
    partial = directory / (checkpoints.Path(ours).name + ".x1y2z3ab.partial")
    partial.write_bytes(b"half")
    assert checkpoints.held(tmp_path) == {ours: ["a/seed=0"]}  # the user's .pt not unpickled
    checkpoints.remove_all_but(tmp_path, set())
    assert sorted(p.name for p in directory.iterdir()) == ["README", "my_model_epoch50.pt"]
