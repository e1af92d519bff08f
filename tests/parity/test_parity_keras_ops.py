"""``reglab.ops`` side by side with ``keras.ops`` (torch backend): each function's values,
shape and dtype on float, integer and mixed arguments; its gradient where it has one; and a
custom regularizer and metric written with them training as in Keras."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

RNG = np.random.default_rng(7)
A = RNG.normal(size=(3, 4)).astype("float32")
B = RNG.normal(size=(3, 4)).astype("float32")
POSITIVE = RNG.uniform(0.1, 3, size=(3, 4)).astype("float32")
INTS = RNG.integers(-3, 4, size=(3, 4))
SQUARE = RNG.normal(size=(4, 4)).astype("float32")
LABELS = np.array([0, 2, 1, 2])

CASES = [
    ("sum", (A,), {}), ("sum", (A,), {"axis": 1}), ("sum", (A,), {"axis": [0, 1], "keepdims": True}),
    ("sum", (INTS,), {"axis": 0}), ("sum", (A > 0,), {}),
    ("mean", (A,), {}), ("mean", (A,), {"axis": -1, "keepdims": True}), ("mean", (INTS,), {}),
    ("max", (A,), {"axis": 0}), ("min", (A,), {}), ("max", (A,), {"keepdims": True}), ("mean", (A,), {"keepdims": True}),
    ("sum", (A,), {"keepdims": True}), ("std", (A,), {"keepdims": True}),
    ("prod", (A,), {"axis": 1}), ("std", (A,), {"axis": 0}), ("var", (A,), {}),
    ("logsumexp", (A,), {"axis": -1}), ("argmax", (A,), {"axis": -1}), ("argmin", (A,), {"axis": 0}),
    ("norm", (A,), {}), ("norm", (A,), {"axis": 1}), ("norm", (A,), {"ord": 1, "axis": 0}),
    ("norm", (SQUARE,), {"axis": (0, 1)}), ("norm", (A,), {"axis": 1, "keepdims": True}),
    ("abs", (A,), {}), ("abs", (INTS,), {}), ("negative", (A,), {}), ("sign", (A,), {}),
    ("square", (A,), {}), ("square", (INTS,), {}), ("sqrt", (POSITIVE,), {}),
    ("sqrt", (np.abs(INTS),), {}), ("rsqrt", (POSITIVE,), {}), ("exp", (A,), {}),
    ("expm1", (A,), {}), ("log", (POSITIVE,), {}), ("log1p", (POSITIVE,), {}),
    ("log2", (POSITIVE,), {}), ("log10", (POSITIVE,), {}), ("sin", (A,), {}), ("cos", (A,), {}),
    ("tanh", (A,), {}), ("floor", (A,), {}), ("ceil", (A,), {}), ("round", (A * 3,), {}),
    ("isnan", (A,), {}), ("isfinite", (A,), {}), ("sigmoid", (A,), {}), ("relu", (A,), {}),
    ("softplus", (A,), {}), ("add", (A, B), {}), ("add", (A, 2.0), {}), ("add", (INTS, 2), {}),
    ("subtract", (A, B), {}), ("multiply", (A, 0.5), {}), ("divide", (A, POSITIVE), {}),
    ("divide", (INTS, 2), {}), ("maximum", (A, 0.0), {}), ("minimum", (A, B), {}),
    ("power", (POSITIVE, 2.0), {}), ("equal", (INTS, 1), {}), ("not_equal", (A, B), {}),
    ("greater", (A, B), {}), ("greater_equal", (A, 0.0), {}), ("less", (A, B), {}),
    ("less_equal", (A, 0.0), {}), ("logical_and", (A > 0, B > 0), {}),
    ("logical_or", (A > 0, B > 0), {}), ("logical_not", (A > 0,), {}),
    ("divide_no_nan", (A, np.where(B > 0, B, 0).astype("float32")), {}),
    ("clip", (A, -0.5, 0.5), {}), ("where", (A > 0, A, B), {}), ("where", (A > 0, A, 0.0), {}),
    ("reshape", (A, (4, 3)), {}), ("reshape", (A, -1), {}), ("transpose", (A,), {}),
    ("transpose", (A[None],), {"axes": (1, 0, 2)}), ("expand_dims", (A, 1), {}),
    ("squeeze", (A[:, None],), {}), ("squeeze", (A[None, :, None],), {"axis": 2}),
    ("concatenate", ([A, B],), {"axis": 1}), ("stack", ([A, B],), {"axis": 0}),
    ("zeros_like", (A,), {}), ("ones_like", (INTS,), {}), ("zeros", ((2, 3),), {}),
    ("ones", ((2,),), {"dtype": "int32"}), ("eye", (3,), {}), ("eye", (3, 4), {"k": 1}),
    ("matmul", (A, A.T), {}), ("dot", (A[0], B[0]), {}), ("one_hot", (LABELS, 3), {}),
    ("softmax", (A,), {}), ("softmax", (A,), {"axis": 0}), ("log_softmax", (A,), {}),
    ("cast", (A, "int32"), {}), ("cast", (INTS, "float32"), {}), ("convert_to_tensor", ([1.5, 2],), {}),
    ("convert_to_tensor", ([1, 2],), {}), ("convert_to_tensor", (A,), {"dtype": "float64"}),
    ("stop_gradient", (torch.tensor(A),), {}), ("arange", (5,), {}), ("arange", (1.0, 3.0, 0.5), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_each_function_gives_keras_s_values_shape_and_dtype(name, args, kwargs):
    ours = getattr(reglab.ops, name)(*args, **kwargs)
    theirs = getattr(keras.ops, name)(*args, **kwargs)
    assert isinstance(ours, torch.Tensor)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours.numpy(), keras.ops.convert_to_numpy(theirs), rtol=1e-6,
                               atol=1e-6)


GRADIENTS = [("sum", {}), ("mean", {"axis": 1}), ("abs", {}), ("square", {}), ("norm", {}),
             ("max", {"axis": 0}), ("logsumexp", {}), ("softmax", {}), ("sqrt", {}),
             ("maximum", {}), ("clip", {})]


@pytest.mark.parametrize(("name", "kwargs"), GRADIENTS, ids=[g[0] for g in GRADIENTS])
def test_gradients_flow_as_keras_s(name, kwargs):
    def run(ops):
        x = torch.tensor(POSITIVE if name == "sqrt" else A, requires_grad=True)
        extra = {"maximum": (0.2,), "clip": (-0.5, 0.5)}.get(name, ())
        ops.sum(getattr(ops, name)(x, *extra, **kwargs) * 1.5).backward()
        return x.grad.numpy()
    np.testing.assert_allclose(run(reglab.ops), run(keras.ops), rtol=1e-6, atol=1e-7)


def test_a_custom_regularizer_and_metric_written_with_ops_train_as_keras():
    x = np.random.default_rng(8).normal(size=(32, 5)).astype("float32")
    y = np.random.default_rng(9).integers(0, 3, 32)
    results = []
    for api in (keras, reglab):
        ops = api.ops

        def penalty(w, ops=ops):
            return 0.01 * ops.sum(ops.sqrt(ops.square(w) + 1e-3))

        def top_prob(y_true, y_pred, ops=ops):
            return ops.max(y_pred, axis=-1)

        keras.utils.set_random_seed(4)
        model = api.Sequential([api.Input((5,)),
                                api.layers.Dense(4, activation="tanh", kernel_regularizer=penalty),
                                api.layers.Dense(3, activation="softmax")])
        if results:
            model.set_weights(results[0][0])
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=[top_prob])
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
        results.append((start, history, model.get_weights()))
    (_, theirs, their_weights), (_, ours, our_weights) = results
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=2e-5)
    np.testing.assert_allclose(ours["top_prob"], theirs["top_prob"], rtol=2e-5)
    for a, b in zip(our_weights, their_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_missing_function_says_what_the_module_holds():
    with pytest.raises(AttributeError, match="reglab.ops has no 'fft'.*torch"):
        reglab.ops.fft  # noqa: B018


def test_numpy_scalars_stay_scalars_and_a_regularizer_using_them_trains():
    for name, args in [("sqrt", (np.float32(4.0),)), ("multiply", (np.float32(2.0), A)),
                       ("add", (np.array(1.5, "float32"), np.float32(2.0)))]:
        ours, theirs = getattr(reglab.ops, name)(*args), getattr(keras.ops, name)(*args)
        assert tuple(ours.shape) == tuple(theirs.shape)
        np.testing.assert_allclose(ours.numpy(), keras.ops.convert_to_numpy(theirs))
    ops = reglab.ops
    model = reglab.Sequential([reglab.Input((4,)), reglab.layers.Dense(
        3, kernel_regularizer=lambda w: ops.multiply(np.float32(0.01), ops.sum(ops.square(w))))])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(A, B[:, :3], epochs=1, verbose=0)


def test_integer_sums_and_mixed_products_as_keras():
    ints = INTS.astype("int32")
    for name, args in [("sum", (ints,)), ("matmul", (A, A.T.astype("float64"))),
                       ("dot", (A[0], B[0].astype("float64"))), ("matmul", (A, ints.T)),
                       ("matmul", (ints, ints.T))]:
        ours, theirs = getattr(reglab.ops, name)(*args), getattr(keras.ops, name)(*args)
        assert ours.dtype == theirs.dtype
        np.testing.assert_allclose(ours.numpy(), keras.ops.convert_to_numpy(theirs), rtol=1e-6)
