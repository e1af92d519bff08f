"""keras.mixed_precision: policies, the global policy layers take, and a mixed_bfloat16
population against a bfloat16 forward pass written here in plain PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reglab as keras
from reglab import mixed_precision
from reglab.engine import Member, Population
from reglab.errors import ConfigError, StructureError
from reglab.layers import BatchNormalization, Dense, Dropout


@pytest.fixture(autouse=True)
def reset_global_policy():
    yield
    mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("value", [["mixed_bfloat16"], {"name": "float32"}, 16])
def test_a_policy_from_something_that_is_not_a_name_is_refused(value):
    with pytest.raises(ConfigError, match="expected a policy name"):
        mixed_precision.DTypePolicy(value)


def test_policies_name_their_compute_and_variable_dtypes():
    policy = mixed_precision.DTypePolicy("mixed_bfloat16")
    assert (policy.compute_dtype, policy.variable_dtype) == ("bfloat16", "float32")
    assert mixed_precision.Policy("float32").compute_dtype == "float32"
    assert policy == mixed_precision.DTypePolicy.from_config(policy.get_config())


def test_layers_take_the_global_policy_when_created_and_dtype_overrides_it():
    before = Dense(4)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    assert mixed_precision.global_policy().name == "mixed_bfloat16"
    after, pinned = Dense(4), Dense(4, dtype="float32")
    assert before.compute_dtype == "float32"
    assert (after.compute_dtype, after.dtype, after.variable_dtype) == \
        ("bfloat16", "float32", "float32")
    assert pinned.compute_dtype == "float32"
    clone = Dense.from_config(after.get_config())
    mixed_precision.set_global_policy(None)
    assert clone.dtype_policy.name == "mixed_bfloat16"
    assert Dense.from_config(Dense(4).get_config()).compute_dtype == "float32"


@pytest.mark.parametrize("name,words", [
    ("mixed_bf16", ["unknown policy", "mixed_bfloat16"]),
    ("float16", ["not supported", "mixed_float16"]),
    ("bfloat16", ["not supported", "mixed_bfloat16"]),
    (3, ["expected a dtype policy name"]),
])
def test_unknown_and_unsupported_policies_are_refused_by_name(name, words):
    with pytest.raises(ConfigError) as e:
        Dense(4, dtype=name)
    assert "Dense: 'dtype'" in str(e.value)
    for word in words:
        assert word in str(e.value)
    with pytest.raises(ConfigError, match="set_global_policy"):
        mixed_precision.set_global_policy(name)
    assert mixed_precision.global_policy().name == "float32"  # unchanged


def test_members_with_different_policies_cannot_share_a_population():
    members = [Member([Dense(3, input_shape=(4,), dtype=dtype)], "sgd", seed=0)
               for dtype in ("float32", "mixed_bfloat16")]
    with pytest.raises(StructureError, match="dtype=mixed_bfloat16"):
        Population(members)


def bf16_reference(x, weights):
    """Keras's mixed_bfloat16 forward for Dense(relu) -> Dense(softmax, float32 policy):
    the first layer's input and weights cast to bfloat16, its output cast to float32 for
    the float32 last layer."""
    k0, b0 = weights[(0, "kernel")], weights[(0, "bias")]
    h = torch.relu(x.bfloat16() @ k0.bfloat16() + b0.bfloat16())
    k1, b1 = weights[(1, "kernel")], weights[(1, "bias")]
    return torch.softmax(h.float() @ k1 + b1, dim=-1)


def test_a_mixed_bfloat16_member_computes_in_bfloat16_and_keeps_float32_weights():
    rng = np.random.default_rng(0)
    x = rng.random((64, 20)).astype("float32")
    y = rng.integers(0, 3, 64)
    members = [Member([Dense(32, activation="relu", input_shape=(20,), dtype="mixed_bfloat16"),
                       Dense(3, activation="softmax", dtype="float32")], "adam", seed=seed)
               for seed in (0, 1)]
    pop = Population(members)
    before = [pop.member_weights(i) for i in range(2)]
    predicted = pop.predict(x)
    assert predicted.dtype == np.float32
    for i in range(2):
        expected = bf16_reference(torch.from_numpy(x), before[i])
        np.testing.assert_allclose(predicted[i], expected.numpy(), rtol=1e-6, atol=1e-7)
        fp32 = torch.softmax(torch.relu(torch.from_numpy(x) @ before[i][(0, "kernel")]
                                        + before[i][(0, "bias")]) @ before[i][(1, "kernel")]
                             + before[i][(1, "bias")], dim=-1)
        assert not np.allclose(predicted[i], fp32.numpy(), rtol=0, atol=1e-7)  # not fp32
    result = pop.fit(x, y, batch_size=16, epochs=3)
    assert all(w.dtype == torch.float32 for w in pop.member_weights(0).values())
    for member in result.members:
        assert member.history["loss"][-1] < member.history["loss"][0]


def test_batch_normalization_computes_in_float32_inside_a_mixed_model():
    rng = np.random.default_rng(1)
    x = (100 * rng.random((32, 6))).astype("float32")  # large values: bfloat16 stats would drift
    members = [Member([Dense(8, input_shape=(6,), dtype="mixed_bfloat16"),
                       BatchNormalization(dtype="mixed_bfloat16"), Dropout(0.0),
                       Dense(2, activation="softmax", dtype="float32")], "sgd", seed=0)]
    pop = Population(members)
    pop.fit(x, rng.integers(0, 2, 32), batch_size=32, epochs=1)
    weights = pop.member_weights(0)
    assert weights[(1, "moving_mean")].dtype == torch.float32
    # after one batch at momentum 0.99, the moving mean holds 1% of the batch mean (float32)
    before = Population(members).member_weights(0)
    dense0 = (torch.from_numpy(x).bfloat16() @ before[(0, "kernel")].bfloat16()
              + before[(0, "bias")].bfloat16()).float()
    torch.testing.assert_close(weights[(1, "moving_mean")], 0.01 * dense0.mean(dim=0),
                               rtol=1e-5, atol=1e-6)


def test_dropout_at_rate_zero_drops_nothing_in_bfloat16():
    """Uniform draws just below 1 round to 1.0 in bfloat16; kept in float32, a member at
    rate 0 beside one at rate 0.5 keeps every unit."""
    rng = np.random.default_rng(2)
    x = rng.random((512, 8)).astype("float32")
    members = [Member([Dense(64, input_shape=(8,), dtype="mixed_bfloat16"),
                       Dropout(rate, dtype="mixed_bfloat16"),
                       Dense(2, activation="softmax", dtype="float32")], "sgd", seed=0)
               for rate in (0.0, 0.5)]
    pop = Population(members)
    seen = []
    dropout_layer = pop.plan.layers[1].layer
    dropout = dropout_layer._dropout  # what forward and the direct step's pass both run

    def capture(x, values, ctx, shape, explicit):
        out = dropout(x, values, ctx, shape, explicit)
        seen.append((x.float(), out[0].float()))
        return out

    dropout_layer._dropout = capture
    pop.fit(x, rng.integers(0, 2, 512), batch_size=512, epochs=1)
    inputs, outputs = seen[0]
    assert torch.equal(outputs[0], inputs[0])  # rate 0: every unit kept, unscaled
    dropped = (outputs[1] == 0) & (inputs[1] != 0)
    assert 0.4 < dropped.float().mean() < 0.6


def test_a_keras_model_keeps_its_policies_through_save_and_load(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax", dtype="float32")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(3)
    x, y = rng.random((64, 6)).astype("float32"), rng.integers(0, 2, 64)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "m.keras")
    mixed_precision.set_global_policy("float32")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [layer.dtype_policy.name for layer in loaded.layers] == ["mixed_bfloat16", "float32"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_layer_s_policy_is_set_by_name_or_object_as_keras_s_setter_takes_it():
    import reglab

    layer = Dense(2, activation="softmax")
    layer.dtype_policy = "mixed_bfloat16"
    assert layer.dtype_policy.name == "mixed_bfloat16" and layer.compute_dtype == "bfloat16"
    layer.dtype_policy = reglab.mixed_precision.DTypePolicy("float32")
    assert layer.compute_dtype == "float32"
    layer.dtype_policy = "mixed_bfloat16"
    model = reglab.Sequential([reglab.Input((4,)), Dense(3), layer])
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(np.ones((8, 4), "float32"), np.zeros(8, "int64"), verbose=0)  # it trains so
    with pytest.raises(ConfigError, match="Dense 'dense.*': 'dtype_policy'.*mixed_bfloat17"):
        layer.dtype_policy = "mixed_bfloat17"


def test_set_weights_names_the_layer_by_the_user_s_name():
    import reglab

    model = reglab.Sequential([reglab.Input((4,)), Dense(3, name="d1"), Dense(2, name="d2")])
    with pytest.raises(ValueError, match=r"set_weights: d2\.kernel expects shape \(3, 2\)"):
        model.layers[1].set_weights([np.zeros((3, 3)), np.zeros(2)])
