"""[training] precision = "auto": bfloat16 where this device's bfloat16 products are clearly
faster, else float32; chosen once when the study starts training, recorded in the store,
kept when the study resumes, and said by `reglab validate`, `run`, `show` and the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from reglab.cli import main
from reglab.layers import products
from reglab.study import StudySpecError, parse_study
from reglab.study import precision as auto
from reglab.study.build import build_member, check_study
from reglab.study.plan import plan_study
from reglab.study.report_table import results_table
from reglab.study.runner import run_study

STUDY = """
seeds = [0, 1, 2]
[data]
dataset = "data.npz"
validation_split = 0.25
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 16, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "Adam", learning_rate = 0.01 }
epochs = 2
batch_size = 16
precision = "PRECISION"
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = 0.01 }
"""


def write(tmp_path, precision="auto", name="study.toml"):
    rng = np.random.default_rng(0)
    x = rng.random((96, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x[:24], y_test=y[:24])
    path = tmp_path / name
    path.write_text(STUDY.replace("PRECISION", precision))
    return path


def chooses(monkeypatch, precision: str, calls: list | None = None):
    """Makes "auto" choose ``precision`` in this process (counting the calls)."""
    def choose(device="cpu"):
        if calls is not None:
            calls.append(device)
        return auto.Choice(precision, "chosen by the test")
    monkeypatch.setattr(auto, "choose", choose)


def rows(out, run_id):
    from reglab.storage import SQLiteStore

    store = SQLiteStore(out)
    try:
        found = [{k: v for k, v in row.items() if "time" not in k}
                 for row in store.epochs(run_id)]
    finally:
        store.close()
    assert found, f"no epochs of {run_id}"
    return found


# -- the study file --------------------------------------------------------------------------

def test_auto_is_a_precision_of_its_own_in_the_file_and_the_fingerprint(tmp_path):
    spec = parse_study(write(tmp_path))
    assert spec.training.precision == "auto"
    assert '"precision":"auto"' in spec.canonical_json()
    others = {p: parse_study(write(tmp_path, p, f"{p}.toml")).fingerprint()
              for p in ("float32", "bfloat16")}
    assert spec.fingerprint() not in others.values()


def test_a_precision_that_is_none_of_them_names_auto_among_the_choices(tmp_path):
    with pytest.raises(StudySpecError) as error:
        parse_study(write(tmp_path, "automatic"))
    text = str(error.value)
    assert "training.precision" in text and "'auto'" in text and "'automatic'" in text


def test_a_member_is_never_built_with_auto_unresolved(tmp_path):
    spec = parse_study(write(tmp_path))
    with pytest.raises(ValueError, match="'auto' is resolved when the study starts"):
        build_member(spec, plan_study(spec).runs[0], (6,), False)
    chosen = auto.with_precision(spec, "bfloat16")
    member = build_member(chosen, plan_study(chosen).runs[0], (6,), False)
    dtypes = [layer.compute_dtype for layer in member.layers]
    assert dtypes[-1] == "float32" and set(dtypes[:-1]) == {"bfloat16"}  # the output float32


def test_check_study_checks_an_auto_study_in_its_half_precision(tmp_path, monkeypatch):
    seen = []
    real = build_member

    def spy(spec, *args, **kwargs):
        seen.append(spec.training.precision)
        return real(spec, *args, **kwargs)

    import reglab.study.build as build

    monkeypatch.setattr(build, "build_member", spy)
    check_study(plan_study(parse_study(write(tmp_path))))
    assert seen and set(seen) == {"bfloat16"}


# -- the choice ----------------------------------------------------------------------------

def test_resolve_leaves_other_precisions_alone_and_keeps_a_recorded_choice():
    def never(device):
        raise AssertionError("measured")

    assert auto.resolve("float32", None, "cpu", never) is None
    assert auto.resolve("bfloat16", "float32", "cpu", never) is None
    kept = auto.resolve("auto", "bfloat16", "cpu", never)
    assert kept.precision == "bfloat16" and "kept" in kept.reason
    measured = auto.resolve("auto", None, "cuda", lambda device: auto.Choice("float32", device))
    assert measured == auto.Choice("float32", "cuda")


@pytest.mark.parametrize("speedup, expected", [(2.1, "bfloat16"), (auto.MIN_SPEEDUP, "bfloat16"),
                                               (1.2, "float32"), (0.55, "float32")])
def test_a_cpu_with_bfloat16_kernels_is_measured(monkeypatch, speedup, expected):
    monkeypatch.setattr(products, "native_half_products", lambda dtype: True)
    monkeypatch.setattr(auto, "bfloat16_speedup", lambda: speedup)
    chosen = auto.choose("cpu")
    assert chosen.precision == expected
    assert f"{speedup:.2f}x" in chosen.reason


def test_a_cpu_without_bfloat16_kernels_keeps_float32_without_measuring(monkeypatch):
    monkeypatch.setattr(products, "native_half_products", lambda dtype: False)

    def never():
        raise AssertionError("measured")

    monkeypatch.setattr(auto, "bfloat16_speedup", never)
    chosen = auto.choose("cpu")
    assert chosen.precision == "float32" and "no bfloat16 matrix instructions" in chosen.reason


@pytest.mark.parametrize("major, expected", [(9, "bfloat16"), (8, "bfloat16"), (7, "float32"),
                                             (6, "float32")])
def test_cuda_takes_bfloat16_on_a_gpu_with_bfloat16_tensor_cores(monkeypatch, major, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    # torch says yes where bfloat16 is only emulated (a V100, a T4): not asked
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (major, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a test GPU")
    chosen = auto.choose("cuda")
    assert chosen.precision == expected and "a test GPU" in chosen.reason


def test_cuda_without_a_device_keeps_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto.choose("cuda").precision == "float32"


def test_the_cpu_is_timed_with_the_jobs_threads_and_this_process_keeps_its_own(monkeypatch):
    monkeypatch.setattr(products, "native_half_products", lambda dtype: True)
    seen = []
    monkeypatch.setattr(auto, "bfloat16_speedup", lambda: seen.append(
        torch.get_num_threads()) or 2.0)
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    assert auto.choose("cpu", threads=wanted).precision == "bfloat16"
    assert seen == [wanted] and torch.get_num_threads() == before
    auto.choose("cpu")
    assert seen[-1] == before


def test_the_measurement_times_each_dtype_for_its_budget(monkeypatch):
    calls = []
    real = torch.mm

    def counted(a, b, out=None):
        calls.append(a.dtype)
        return real(a, b, out=out)

    monkeypatch.setattr(torch, "mm", counted)
    speedup = auto.bfloat16_speedup((16, 32, 16), budget_s=0.0)
    # the warm-up round and at least three timed rounds of each dtype, alternated
    assert calls.count(torch.float32) == calls.count(torch.bfloat16) >= 4 * auto.CALLS
    assert calls[:auto.CALLS] == [torch.float32] * auto.CALLS
    assert math.isfinite(speedup) and speedup > 0


def test_the_measured_speedup_is_a_ratio_of_real_products():
    speedup = auto.bfloat16_speedup((32, 64, 48), budget_s=0.01)
    assert math.isfinite(speedup) and speedup > 0


# -- a study -------------------------------------------------------------------------------

def test_an_auto_study_trains_as_the_precision_chosen_and_keeps_it_when_resumed(
        tmp_path, monkeypatch):
    logged = []
    calls = []
    chooses(monkeypatch, "bfloat16", calls)
    store = run_study(write(tmp_path), tmp_path / "auto", log=logged.append)
    assert calls == ["cpu"]
    assert store.get_meta("precision") == "bfloat16"
    table = results_table(store)
    store.close()
    assert any(line.startswith("precision auto: bfloat16") for line in logged)
    assert 'precision: bfloat16 compute, float32 weights' in table
    assert '(chosen by precision = "auto": chosen by the test)' in table
    # the same numbers as a study whose file says bfloat16
    run_study(write(tmp_path, "bfloat16", "bf16.toml"), tmp_path / "bf16", log=lambda _: None
              ).close()
    run_study(write(tmp_path, "float32", "f32.toml"), tmp_path / "f32", log=lambda _: None
              ).close()
    for run_id in ("baseline/seed=0", "l2/seed=2"):
        assert rows(tmp_path / "auto", run_id) == rows(tmp_path / "bf16", run_id)
        assert rows(tmp_path / "auto", run_id) != rows(tmp_path / "f32", run_id)

    # run again where "auto" would now choose float32 (a CPU without bfloat16 instructions,
    # say): the study keeps its bfloat16, says so and that its products are widened here
    chooses(monkeypatch, "float32", calls)
    monkeypatch.setattr(products, "native_half_products", lambda dtype: False)
    logged.clear()
    store = run_study(write(tmp_path), tmp_path / "auto", log=logged.append)
    assert store.get_meta("precision_reason") == "chosen by the test"  # the first start's
    store.close()
    assert calls == ["cpu"]  # not measured again
    assert any("kept on resuming" in line for line in logged)
    assert any(line.startswith("note: this CPU has no bfloat16 matrix instructions")
               for line in logged)
    monkeypatch.undo()
    shown = CliRunner().invoke(main, ["show", str(tmp_path / "auto")])
    assert 'bfloat16 compute, float32 weights and losses' in shown.output
    report = CliRunner().invoke(main, ["report", str(tmp_path / "auto")])
    assert report.exit_code == 0, report.output
    html = (tmp_path / "auto" / "report.html").read_text()
    assert "bfloat16 compute, float32 weights" in html and "&#34;auto&#34;" in html


def test_an_auto_study_that_chooses_float32_trains_as_the_float32_study(tmp_path, monkeypatch):
    chooses(monkeypatch, "float32")
    store = run_study(write(tmp_path), tmp_path / "auto", log=lambda _: None)
    assert store.get_meta("precision") == "float32"
    table = results_table(store)
    store.close()
    assert 'precision: float32 (chosen by precision = "auto": chosen by the test)' in table
    run_study(write(tmp_path, "float32", "f32.toml"), tmp_path / "f32", log=lambda _: None
              ).close()
    assert rows(tmp_path / "auto", "l2/seed=1") == rows(tmp_path / "f32", "l2/seed=1")


def test_a_restarted_auto_study_chooses_again(tmp_path, monkeypatch):
    chooses(monkeypatch, "bfloat16")
    run_study(write(tmp_path), tmp_path / "out", log=lambda _: None).close()
    chooses(monkeypatch, "float32")
    store = run_study(write(tmp_path), tmp_path / "out", restart=True, log=lambda _: None)
    assert store.get_meta("precision") == "float32"
    store.close()


def test_validate_says_what_auto_would_choose_on_this_cpu(tmp_path, monkeypatch):
    chooses(monkeypatch, "bfloat16")
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "precision auto: bfloat16 on this CPU (chosen by the test)" in result.output
