"""Which changes grow a stored study in place (reglab.study.extension): every stored run must
stay in the grown study with the same settings; anything else is another study."""

from __future__ import annotations

import copy
import json

import pytest

from reglab.study.extension import extension
from reglab.study.spec import parse_study

STUDY = """
name = "grow"
seeds = SEEDS
[data]
dataset = "fashion_mnist"
[model]
input_shape = [784]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 10, activation = "softmax" }]
[training]
epochs = 2
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = L2VALUES }
MORE
"""


def canonical(tmp_path, seeds="3", l2="[0.001, 0.1]", more="", name="s.toml") -> dict:
    path = tmp_path / name
    path.write_text(STUDY.replace("SEEDS", seeds).replace("L2VALUES", l2).replace("MORE", more))
    return json.loads(parse_study(path).canonical_json())


L1 = '[variants.l1]\nkernel_regularizer = { type = "L1", l1 = 0.001 }'


def test_more_seeds_variants_and_sweep_values_grow_the_study(tmp_path):
    stored = canonical(tmp_path)
    assert extension(stored, canonical(tmp_path, seeds="5")).seeds == (3, 4)
    added = extension(stored, canonical(tmp_path, seeds="[2, 0, 9, 1]", more=L1))
    assert added.seeds == (9,) and added.variants == ("l1",) and added.points == ()
    points = extension(stored, canonical(tmp_path, l2="[0.1, 0.01, 0.001]"))
    assert points.points == ("l2: kernel_regularizer.l2",) and not points.seeds
    assert points.describe() == "sweep values in l2: kernel_regularizer.l2"
    assert added.describe() == "seed 9 and variant l1"
    # a swept number given as a log range: more points that keep the old ones
    log = extension(canonical(tmp_path, l2="{ log = [1e-4, 1e-2], n = 3 }"),
                    canonical(tmp_path, l2="[1e-4, 1e-3, 1e-2, 1e-1]"))
    assert log is not None and log.points == ("l2: kernel_regularizer.l2",)


@pytest.mark.parametrize("change", [
    dict(seeds="[0, 1, 7]"),  # a seed taken away
    dict(seeds="2"),
    dict(l2="[0.001, 0.2]"),  # a sweep value replaced
    dict(l2="[0.001]"),
    dict(l2="0.001"),  # no longer a sweep
])
def test_a_run_taken_away_is_another_study(tmp_path, change):
    stored = canonical(tmp_path)
    assert extension(stored, canonical(tmp_path, **{"more": L1, **change})) is None


def test_anything_else_changed_is_another_study(tmp_path):
    stored = canonical(tmp_path)
    new = canonical(tmp_path, seeds="4")
    assert extension(stored, new) is not None
    for edit in (lambda d: d["training"].update(epochs=3),
                 lambda d: d["variants"][1]["changes"]["kernel_regularizer"].update(type="L1"),
                 lambda d: d["variants"].pop(0),  # baseline removed
                 lambda d: d["variants"][0].update(name="base"),
                 lambda d: d["data"].update(validation_split=0.2),
                 lambda d: d.update(tune={"trials": 4})):
        changed = copy.deepcopy(new)
        edit(changed)
        assert extension(stored, changed) is None
    # nothing added, the same runs in another order: the study, reordered
    assert extension(stored, stored).describe() == \
        "nothing (its seeds or variants in another order)"
    reordered = canonical(tmp_path, seeds="[2, 1, 0]")
    assert extension(stored, reordered) is not None
    assert extension(stored, {**new, "description": "said"}) is not None


@pytest.mark.parametrize("stored", [None, [], "text", {"seeds": "3"}, {"variants": None}])
def test_a_damaged_stored_study_is_never_grown(tmp_path, stored):
    assert extension(stored, canonical(tmp_path, seeds="4")) is None


def test_job_fingerprint_ignores_seeds_and_variants_but_not_a_run_s_settings(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(STUDY.replace("SEEDS", "3").replace("L2VALUES", "0.01").replace("MORE", ""))
    spec = parse_study(path)
    path.write_text(STUDY.replace("SEEDS", "6").replace("L2VALUES", "0.01").replace("MORE", L1))
    grown = parse_study(path)
    changes = [{}, {"kernel_regularizer": {"type": "L2", "l2": 0.01}}]
    assert spec.job_fingerprint(changes) == grown.job_fingerprint(changes)
    assert spec.job_fingerprint(changes) != spec.job_fingerprint(changes[:1])
    assert spec.job_fingerprint(changes) != spec.job_fingerprint(
        [{}, {"kernel_regularizer": {"type": "L2", "l2": 0.02}}])
    path.write_text(STUDY.replace("SEEDS", "3").replace("L2VALUES", "0.01").replace("MORE", "")
                    .replace("epochs = 2", "epochs = 3"))
    assert parse_study(path).job_fingerprint(changes) != spec.job_fingerprint(changes)
    # a variant elsewhere that reshapes every run (MixUp) is the job's too
    path.write_text(STUDY.replace("SEEDS", "3").replace("L2VALUES", "0.01").replace(
        "MORE", "[variants.mix]\nmixup = { alpha = 0.2 }"))
    assert parse_study(path).job_fingerprint(changes) != spec.job_fingerprint(changes)


@pytest.mark.parametrize("key", ["mixup = { alpha = 0.2 }", "label_smoothing = 0.1",
                                 "cutmix = { factor = 1.0 }"])
def test_a_variant_that_would_reshape_every_run_is_another_study(tmp_path, key):
    """MixUp, CutMix and label smoothing put a layer in every run of a study that uses them
    (at strength 0 elsewhere): a new variant with one would change every stored run."""
    stored = canonical(tmp_path)
    assert extension(stored, canonical(tmp_path, more=f"[variants.new]\n{key}")) is None
    # once the study uses it, more of it grows the study
    using = canonical(tmp_path, more=f"[variants.new]\n{key}")
    grown = canonical(tmp_path, seeds="4", more=f"[variants.new]\n{key}\n[variants.more]\n"
                      f"{key.replace('0.2', '0.4').replace('0.1', '0.2')}")
    assert extension(using, grown).variants == ("more",)


def test_many_new_seeds_are_said_as_ranges(tmp_path):
    stored = canonical(tmp_path, seeds="[0, 1, 2, 4]")
    added = extension(stored, canonical(tmp_path, seeds="[0, 1, 2, 4, 3, 5, 6, 7, 9, 10, 12]"))
    assert added.describe() == "seeds 3, 5-7, 9, 10, 12"


def test_the_study_wide_keys_are_the_batch_transforms_a_study_builds():
    from reglab.study.build import BATCH_TRANSFORMS
    from reglab.study.spec import STUDY_WIDE_KEYS

    assert set(STUDY_WIDE_KEYS) == set(BATCH_TRANSFORMS)
