"""`reglab run`'s options (--seeds, --epochs, --restart, --device) and `reglab info`, end to
end through click's CliRunner on a tiny npz study, checked in the store with sqlite3."""

from __future__ import annotations

import json
import platform
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reglab.cli import main

pytestmark = pytest.mark.e2e

STUDY = """
name = "NAME"
seeds = 3
[data]
dataset = "data.npz"
validation_split = 0.25
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "Adam", learning_rate = 0.01 }
epochs = 4
batch_size = 16
[variants.baseline]
[variants.VARIANT]
kernel_regularizer = { type = "L2", l2 = 0.01 }
"""


def write_study(directory: Path, name: str = "options", variant: str = "l2") -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((96, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(directory / "data.npz", x=x, y=y, x_test=x[:32], y_test=y[:32])
    path = directory / f"{name}.toml"
    path.write_text(STUDY.replace("NAME", name).replace("VARIANT", variant))
    return path


def run(*args: str):
    return CliRunner().invoke(main, ["run", *map(str, args), "--quiet", "--no-report"])


def stored_runs(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "study.db") as db:
        return db.execute("SELECT run_id, variant, seed, status, epochs_run FROM runs "
                          "ORDER BY seq").fetchall()


def stored_epochs(out: Path) -> dict[str, list[int]]:
    with sqlite3.connect(out / "study.db") as db:
        rows = db.execute("SELECT run_id, epoch FROM epochs ORDER BY run_id, epoch").fetchall()
    epochs: dict[str, list[int]] = {}
    for run_id, epoch in rows:
        epochs.setdefault(run_id, []).append(epoch)
    return epochs


def stored_meta(out: Path, key: str):
    with sqlite3.connect(out / "study.db") as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(value)


def stored_study(out: Path) -> tuple[str, dict]:
    with sqlite3.connect(out / "study.db") as db:
        fingerprint, text = db.execute("SELECT fingerprint, canonical_json FROM study").fetchone()
    return fingerprint, json.loads(text)


def test_seeds_overrides_the_study_s_seeds_and_device_cpu_is_stored(tmp_path):
    study = write_study(tmp_path)
    out = tmp_path / "out"
    checked = CliRunner().invoke(main, ["validate", str(study), "--seeds", "2"])
    assert checked.exit_code == 0, checked.output
    assert "2 variants × 2 seeds = 4 runs" in checked.output
    result = run(study, "--out", out, "--seeds", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    runs = stored_runs(out)
    assert sorted((variant, seed) for _, variant, seed, _, _ in runs) == [
        ("baseline", 0), ("baseline", 1), ("l2", 0), ("l2", 1)]  # the study file says 3
    assert {status for *_, status, _ in runs} == {"done"}
    assert stored_study(out)[1]["seeds"] == [0, 1]
    assert stored_meta(out, "device") == "cpu"


@pytest.mark.parametrize("count, expected", [(2, [7, 3]), (3, [7, 3, 11]), (5, [7, 3, 11, 0, 1])])
def test_seeds_takes_the_first_of_a_listed_seeds_then_the_smallest_unlisted(tmp_path, count,
                                                                            expected):
    from reglab.study.runner import prepare_study

    study = write_study(tmp_path)
    study.write_text(study.read_text().replace("seeds = 3", "seeds = [7, 3, 11]"))
    assert list(prepare_study(study, seeds=count).spec.seeds) == expected
    checked = CliRunner().invoke(main, ["validate", str(study), "--seeds", str(count)])
    assert checked.exit_code == 0, checked.output
    assert f"2 variants × {count} seeds" in checked.output


@pytest.mark.parametrize("seeds, noted", [(1, True), (2, True), (3, False)])
def test_fewer_seeds_than_a_verdict_needs_are_noted_before_training(tmp_path, seeds, noted):
    study = write_study(tmp_path)
    checked = CliRunner().invoke(main, ["validate", str(study), "--seeds", str(seeds)])
    assert checked.exit_code == 0, checked.output
    note = (f"note: seeds = {seeds}: a verdict needs at least 3 paired seeds, so the table "
            "will rank the variants without verdicts")
    assert (note in checked.output) is noted


def test_epochs_overrides_the_study_s_epochs(tmp_path):
    study = write_study(tmp_path)
    out = tmp_path / "out"
    result = run(study, "--out", out, "--epochs", "2", "--seeds", "1")
    assert result.exit_code == 0, result.output
    runs = stored_runs(out)
    assert len(runs) == 2 and all(epochs_run == 2 for *_, epochs_run in runs)  # not 4
    epochs = stored_epochs(out)
    assert set(epochs) == {run_id for run_id, *_ in runs}
    assert all(len(kept) == 2 for kept in epochs.values())
    assert stored_study(out)[1]["training"]["epochs"] == 2


def test_restart_starts_over_in_a_directory_holding_another_study(tmp_path):
    first = write_study(tmp_path, name="first", variant="l2")
    second = write_study(tmp_path, name="second", variant="strong_l2")
    out = tmp_path / "out"
    result = run(first, "--out", out, "--seeds", "2", "--epochs", "2")
    assert result.exit_code == 0, result.output
    before = stored_runs(out)
    fingerprint = stored_study(out)[0]

    refused = run(second, "--out", out, "--seeds", "1", "--epochs", "3")
    assert refused.exit_code == 2, refused.output
    assert "holds another study" in refused.output and "--restart" in refused.output
    assert stored_runs(out) == before and stored_study(out)[0] == fingerprint  # untouched

    restarted = run(second, "--out", out, "--seeds", "1", "--epochs", "3", "--restart")
    assert restarted.exit_code == 0, restarted.output
    assert f"--restart: deleting the {len(before)} runs stored in {out} ({len(before)} " \
        "finished)" in restarted.output
    after = stored_runs(out)
    # only the second study's runs, each trained from scratch for its 3 epochs
    assert sorted((variant, seed) for _, variant, seed, _, _ in after) == [
        ("baseline", 0), ("strong_l2", 0)]
    assert all(epochs_run == 3 for *_, epochs_run in after)
    epochs = stored_epochs(out)
    assert set(epochs) == {run_id for run_id, *_ in after}
    assert all(len(kept) == 3 for kept in epochs.values())
    fingerprint_after, canonical = stored_study(out)
    assert fingerprint_after != fingerprint and canonical["name"] == "second"
    assert stored_meta(out, "study_file")["text"] == second.read_text()
    # a run of the same study again resumes: nothing retrained, nothing refused
    again = run(second, "--out", out, "--seeds", "1", "--epochs", "3")
    assert again.exit_code == 0 and stored_runs(out) == after


def test_restart_starts_over_from_a_store_with_a_damaged_run_record(tmp_path):
    # the way out the damage message names: --restart counts the runs without reading them
    study = write_study(tmp_path)
    out = tmp_path / "out"
    assert run(study, "--out", out, "--seeds", "1", "--epochs", "2").exit_code == 0
    with sqlite3.connect(out / "study.db") as db:
        db.execute("UPDATE runs SET point = '{not json' WHERE variant = 'baseline'")
    refused = run(study, "--out", out, "--seeds", "1", "--epochs", "2")
    assert refused.exit_code != 0 and "damaged" in refused.output
    restarted = run(study, "--out", out, "--seeds", "1", "--epochs", "2", "--restart")
    assert restarted.exit_code == 0, restarted.output
    assert f"--restart: deleting the 2 runs stored in {out} (2 finished)" in restarted.output
    assert {status for *_, status, _ in stored_runs(out)} == {"done"}


def test_a_changed_description_resumes_the_same_study_and_keeps_its_checkpoints(tmp_path):
    from reglab.study.spec import parse_study

    study = write_study(tmp_path)
    out = tmp_path / "out"
    assert run(study, "--out", out, "--seeds", "1", "--epochs", "2").exit_code == 0
    before = stored_runs(out)
    study.write_text(study.read_text().replace('name = "options"',
                                               'name = "options"\ndescription = "now said"'))
    again = run(study, "--out", out, "--seeds", "1", "--epochs", "2")
    assert again.exit_code == 0, again.output
    assert stored_runs(out) == before and "deleting" not in again.output  # nothing retrained
    assert stored_study(out)[1]["description"] == "now said"
    # what the study computes is the same, so a checkpoint written before the edit is its own
    old, new = parse_study(study), parse_study(study)
    old = type(old)(**{**old.__dict__, "description": ""})
    assert old.work_fingerprint() == new.work_fingerprint() != new.fingerprint()
    # any other change is still another study
    study.write_text(study.read_text().replace("epochs = 4", "epochs = 5"))
    refused = run(study, "--out", out, "--seeds", "1")
    assert refused.exit_code == 2 and "training.epochs" in refused.output


def test_device_cuda_without_cuda_is_refused_before_anything_is_written(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    study = write_study(tmp_path)
    out = tmp_path / "out"
    result = run(study, "--out", out, "--device", "cuda")
    assert result.exit_code == 2
    assert "error: --device cuda: torch sees no CUDA device here" in result.output
    assert not out.exists()


def test_info_prints_the_versions_of_this_process():
    import torch

    import reglab

    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"reglab {reglab.__version__}"
    assert lines[1] == f"python {platform.python_version()}"
    assert lines[2] == f"torch {torch.__version__} (threads: {torch.get_num_threads()})"
    cuda = "available" if torch.cuda.is_available() else "not available"
    assert lines[3].startswith(f"cuda {cuda}")
    roads = {True: "native", False: "in float32"}
    bf16 = roads[torch.ops.mkldnn._is_mkldnn_bf16_supported()]
    fp16 = roads[torch.ops.mkldnn._is_mkldnn_fp16_supported()]
    assert lines[4] == (f"cpu {torch.backends.cpu.get_cpu_capability()} (half-precision "
                        f"products: bfloat16 {bf16}, float16 {fp16})")
    assert re.fullmatch(r'precision = "auto" on this CPU: (float32|bfloat16) \(.*CPU.*\)',
                        lines[5])
    version = CliRunner().invoke(main, ["--version"])
    assert version.exit_code == 0 and reglab.__version__ in version.output


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("precision", ["bfloat16", "float16", "float32"])
def test_validate_and_run_say_when_this_cpu_computes_a_half_precision_in_float32(
        tmp_path, monkeypatch, native, precision):
    from reglab.layers import products

    asked = []

    def native_half_products(dtype):
        asked.append(dtype)
        return native

    monkeypatch.setattr(products, "native_half_products", native_half_products)
    study = write_study(tmp_path)
    study.write_text(study.read_text().replace(
        "batch_size = 16", f'batch_size = 16\nprecision = "{precision}"'))
    note = (f"note: this CPU has no {precision} matrix instructions: the products are "
            f"computed in float32 and rounded to {precision}")
    validated = CliRunner().invoke(main, ["validate", str(study)])
    ran = run(study, "--out", tmp_path / "out", "--epochs", "1", "--seeds", "1")
    for result in (validated, ran):
        assert result.exit_code == 0, result.output
        assert (note in result.output) == (precision != "float32" and not native), result.output
    # the note, and training, ask about the study's precision only
    assert {str(dtype).removeprefix("torch.") for dtype in asked} == (
        set() if precision == "float32" else {precision})
    if precision != "float32" and not native:
        assert validated.output.rstrip().endswith(note + " (the same numbers, at about "
                                                  "float32's speed)")
        # not about this CPU: a GPU's products, a cluster's workers
        on_cuda = run(study, "--out", tmp_path / "cuda", "--epochs", "1", "--device", "cuda")
        assert note not in on_cuda.output


def test_restart_removes_the_old_study_s_report_before_training(tmp_path, monkeypatch):
    """A --restart killed before its first run ends had left the old study's report.html
    and plots beside the new study's store; they go with the old runs (a user's own file
    in plots/ stays)."""
    from reglab.study.executors import InProcessExecutor

    first = write_study(tmp_path, name="first", variant="l2")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(first), "--out", str(out), "--seeds", "1",
                                       "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and list((out / "plots").glob("*.png"))
    (out / "plots" / "mine.txt").write_text("kept")

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt  # as a kill before any run ends
    monkeypatch.setattr(InProcessExecutor, "run", killed)
    second = write_study(tmp_path, name="second", variant="strong_l2")
    restarted = run(second, "--out", out, "--seeds", "1", "--epochs", "1", "--restart")
    assert restarted.exit_code == 130, restarted.output
    assert not (out / "report.html").exists() and not list((out / "plots").glob("*.png"))
    assert (out / "plots" / "mine.txt").read_text() == "kept"
