"""fit/evaluate/predict take the inputs Keras 3 takes: numpy views of any layout (negative
strides, slices, Fortran order), memory maps, bool/int/uint/float dtypes, lists and torch
tensors, each giving the numbers its plain float32 copy gives, leaving the user's array as it
was; and bad inputs raise a DataError that names the argument."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import reglab as keras
from model_factories import small_classifier
from reglab.engine.data import prepare
from reglab.errors import ConfigError, DataError
from reglab.layers import Dense, Flatten
from reglab.models import Sequential
from reglab.preprocessing.image import ImageDataGenerator

RNG = np.random.default_rng(11)
X = RNG.random((40, 6)).astype("float32")
Y = RNG.integers(0, 3, 40)


def _memmap_npy(tmp_path, array):
    path = tmp_path / "x.npy"
    np.save(path, array)
    return np.load(path, mmap_mode="r")


def _memmap_raw(tmp_path, array):
    path = tmp_path / "x.dat"
    array.tofile(path)
    return np.memmap(path, dtype=array.dtype, mode="r", shape=array.shape)


# Each kind: (build(tmp_path) -> the input holding X's samples in X's order).
X_KINDS = {
    "negative_stride_view": lambda tmp: X[::-1].copy()[::-1],
    "non_contiguous_slice": lambda tmp: np.repeat(X, 2, axis=1)[:, ::2],
    "fortran_order": lambda tmp: np.asfortranarray(X),
    "float64": lambda tmp: X.astype(np.float64),
    "float16": lambda tmp: X.astype(np.float16),
    "int64": lambda tmp: np.round(X * 10).astype(np.int64),
    "int32_strided": lambda tmp: np.round(X * 10).astype(np.int32)[::-1][::-1],
    "uint8": lambda tmp: (X * 255).astype(np.uint8),
    "bool": lambda tmp: X > 0.5,
    "read_only": lambda tmp: np.frombuffer(X.tobytes(), dtype=np.float32).reshape(X.shape),
    "npy_memmap": lambda tmp: _memmap_npy(tmp, X),
    "npy_memmap_float64": lambda tmp: _memmap_npy(tmp, X.astype(np.float64)),
    "np_memmap": lambda tmp: _memmap_raw(tmp, X),
    "list": lambda tmp: X.tolist(),
    "torch_float32": lambda tmp: torch.from_numpy(X.copy()),
    "torch_float64_transposed": lambda tmp: torch.from_numpy(X.T.astype(np.float64)).t(),
    "torch_bfloat16": lambda tmp: torch.from_numpy(X).to(torch.bfloat16),
    "torch_uint8": lambda tmp: torch.from_numpy((X * 255).astype(np.uint8)),
    "torch_requires_grad": lambda tmp: torch.from_numpy(X.copy()).requires_grad_(),
}


def _plain(value) -> np.ndarray:
    """The plain C-contiguous float32 array holding the same numbers."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().numpy().copy()
    return np.array(value, dtype=np.float32, order="C")


def _snapshot(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return np.array(value, copy=True)


def _unchanged(value, before) -> bool:
    if isinstance(value, torch.Tensor):
        return torch.equal(value.detach(), before)
    return np.array_equal(np.asarray(value), before)


@pytest.mark.parametrize("kind", list(X_KINDS))
def test_every_input_kind_gives_the_numbers_of_its_plain_float32_copy(kind, tmp_path):
    value = X_KINDS[kind](tmp_path)
    reference = _plain(value)
    before = _snapshot(value)
    model, twin = small_classifier(), small_classifier()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's warning on read-only arrays among others
        np.testing.assert_allclose(model.predict(value, verbose=0),
                                   twin.predict(reference, verbose=0), rtol=1e-6)
        assert model.evaluate(value, Y, verbose=0) == pytest.approx(
            twin.evaluate(reference, Y, verbose=0), rel=1e-6)
        history = model.fit(value, Y, epochs=2, batch_size=16, validation_data=(value, Y),
                            verbose=0)
        expected = twin.fit(reference, Y, epochs=2, batch_size=16,
                            validation_data=(reference, Y), verbose=0)
        model.fit(value, Y, epochs=1, validation_split=0.25, verbose=0)
        twin.fit(reference, Y, epochs=1, validation_split=0.25, verbose=0)
    for key, values in expected.history.items():
        np.testing.assert_allclose(history.history[key], values, rtol=1e-6, err_msg=key)
    for mine, theirs in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6)
    assert _unchanged(value, before)


Y_KINDS = {
    "negative_stride_view": lambda: Y[::-1].copy()[::-1],
    "uint8": lambda: Y.astype(np.uint8),
    "int32_column": lambda: Y.astype(np.int32)[:, None],
    "float64": lambda: Y.astype(np.float64),
    "list": lambda: Y.tolist(),
    "torch_int64": lambda: torch.from_numpy(Y.copy()),
    "torch_uint8": lambda: torch.from_numpy(Y.astype(np.uint8)),
    "torch_float32": lambda: torch.from_numpy(Y.astype(np.float32)),
}


@pytest.mark.parametrize("kind", list(Y_KINDS))
def test_every_label_kind_gives_the_numbers_of_int64_labels(kind):
    labels = Y_KINDS[kind]()
    before = _snapshot(labels)
    weights = np.linspace(0.5, 1.5, len(X))
    model, twin = small_classifier(), small_classifier()
    assert model.evaluate(X, labels, verbose=0) == pytest.approx(twin.evaluate(X, Y, verbose=0))
    model.fit(X, labels, epochs=2, batch_size=16, class_weight={0: 1.0, 1: 2.0, 2: 0.5},
              sample_weight=torch.from_numpy(weights) if kind.startswith("torch") else
              weights[::-1].copy()[::-1], verbose=0)
    twin.fit(X, Y, epochs=2, batch_size=16, class_weight={0: 1.0, 1: 2.0, 2: 0.5},
             sample_weight=weights, verbose=0)
    for mine, theirs in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6)
    assert _unchanged(labels, before)


def test_binary_labels_as_bool_or_uint8_columns_match_float_labels():
    positive = (X[:, 0] > 0.5)

    def binary():
        model = Sequential([Dense(1, activation="sigmoid", input_shape=(6,))], seed=0)
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model
    reference = binary().evaluate(X, positive.astype(np.float32), verbose=0)
    for labels in (positive, positive.astype(np.uint8)[:, None], torch.from_numpy(positive),
                   positive.astype(np.float64)[::-1].copy()[::-1]):
        assert binary().evaluate(X, labels, verbose=0) == pytest.approx(reference)


def test_a_contiguous_float32_array_is_shared_not_copied(tmp_path):
    population = small_classifier()._build()
    data = prepare(population, X, Y, None, "fit")
    assert data.x.data_ptr() == X.ctypes.data
    mapped = _memmap_npy(tmp_path, X)  # read-only: shared too, without torch's warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = prepare(population, mapped, Y, None, "fit")
    assert data.x.data_ptr() == mapped.ctypes.data
    tensor = torch.from_numpy(X)
    assert prepare(population, tensor, Y, None, "fit").x.data_ptr() == tensor.data_ptr()
    strided = X[::-1]
    assert prepare(population, strided, None, None, "predict").x.is_contiguous()


def test_generators_of_torch_batches_train_as_numpy_batches_do():
    def batches(as_tensors):
        while True:
            for lo in (0, 16):
                x, y = X[lo:lo + 16], Y[lo:lo + 16]
                yield (torch.from_numpy(x), torch.from_numpy(y)) if as_tensors else (x, y)
    model, twin = small_classifier(), small_classifier()
    model.fit(batches(True), steps_per_epoch=2, epochs=2, verbose=0)
    twin.fit(batches(False), steps_per_epoch=2, epochs=2, verbose=0)
    for mine, theirs in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6)
    assert model.evaluate(batches(True), steps=2, verbose=0) == pytest.approx(
        twin.evaluate(batches(False), steps=2, verbose=0))


@pytest.mark.parametrize("kind", ["negative_stride_view", "uint8", "npy_memmap", "torch"])
def test_image_data_generator_flows_take_the_same_kinds(kind, tmp_path):
    images = RNG.random((24, 4, 4, 1)).astype("float32")
    labels = RNG.integers(0, 3, 24)
    value = {"negative_stride_view": lambda: images[::-1].copy()[::-1],
             "uint8": lambda: (images * 255).astype(np.uint8),
             "npy_memmap": lambda: _memmap_npy(tmp_path, images),
             "torch": lambda: torch.from_numpy(images.copy())}[kind]()
    reference = _plain(value)
    before = _snapshot(value)

    def model():
        m = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(3, activation="softmax")], seed=0)
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m
    generator = ImageDataGenerator(rescale=1 / 255, rotation_range=10)
    mine, theirs = model(), model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mine.fit(generator.flow(value, labels[::-1].copy()[::-1], batch_size=8, seed=3),
                 epochs=1, verbose=0)
        theirs.fit(generator.flow(reference, labels, batch_size=8, seed=3), epochs=1, verbose=0)
    for a, b in zip(mine.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert _unchanged(value, before)


BAD_INPUTS = [
    ("predict", dict(x=np.array([object()] * 40)), r"predict: 'x' must be an array of numbers "
     r"\(bool, int or float\).*Got a numpy array of dtype object"),
    ("predict", dict(x=np.array(["a"] * 40)), r"predict: 'x'.*Got a numpy array of dtype <U1"),
    ("predict", dict(x=[[1.0, 2.0], [3.0]]), r"predict: 'x'.*Got a list that is not one "
     r"rectangular array \(nested sequences of different lengths\)"),
    ("predict", dict(x=3.0), r"predict: 'x' must have a leading sample axis. Got the scalar 3.0"),
    ("predict", dict(x=X[:0]), r"predict: 'x' must hold at least one sample. Got shape \(0, 6\)"),
    ("predict", dict(x=torch.zeros(4, 6, dtype=torch.complex64)),
     r"predict: 'x'.*Got a torch tensor of dtype torch.complex64"),
    ("predict", dict(x={"features": X}), r"predict: 'x'.*Got a dict"),
    ("fit", dict(x=X.astype(str), y=Y), r"fit: 'x'.*Got a numpy array of dtype <U"),
    ("fit", dict(x=X, y=Y.astype(str)), r"fit: 'y'.*Got a numpy array of dtype <U"),
    ("fit", dict(x=X, y=[[0], [1, 2]] * 20), r"fit: 'y'.*not one rectangular array"),
    ("fit", dict(x=X, y=np.where(Y == 1, np.nan, Y)),
     r"fit: 'y' must hold finite numbers. Got NaN, infinite values or values beyond "
     r"float32's range \(±3\.4e\+38\) in \d+ samples"),
    ("fit", dict(x=X, y=np.where(Y == 1, np.nan, Y), class_weight={0: 1, 1: 1, 2: 1}),
     r"fit: 'y' must hold finite numbers"),
    ("evaluate", dict(x=X, y=np.where(Y == 1, np.inf, Y)), r"evaluate: 'y' must hold finite"),
    # finite float64 past float32's range: overflows when cast, said so
    ("fit", dict(x=np.full_like(X, 1e300, dtype=np.float64), y=Y),
     r"fit: 'x' must hold finite numbers. Got NaN, infinite values or values beyond "
     r"float32's range"),
    ("fit", dict(x=X, y=Y, sample_weight=["heavy"] * 40), r"fit: 'sample_weight'.*Got a list "
     r"that numpy reads as dtype <U5"),
    ("fit", dict(x=X, y=Y, sample_weight=np.full(40, np.nan)),
     r"fit: 'sample_weight' must hold finite numbers"),
    ("evaluate", dict(x=X, y=Y, sample_weight=torch.zeros(40, dtype=torch.complex64)),
     r"evaluate: 'sample_weight'.*torch.complex64"),
    ("fit", dict(x=X, y=Y, validation_data=(X, np.array([None] * 40))),
     r"fit: validation_data: 'y'.*dtype object"),
    ("fit", dict(x=X, y=Y, validation_data=([[1.0] * 6, [1.0]], [0, 1])),
     r"fit: validation_data: 'x'.*not one rectangular array"),
    ("fit", dict(x=X, y=Y, validation_data=(X, np.full(40, np.nan))),
     r"fit: validation_data: 'y' must hold finite numbers"),
    ("fit", dict(x=np.where(np.arange(6) == 2, np.nan, X), y=Y),
     r"fit: 'x' must hold finite numbers. Got 40 NaN or infinite value\(s\), the first at "
     r"index \(0, 2\) \(nan\)"),
    ("fit", dict(x=torch.tensor(X).index_fill(0, torch.tensor([7]), float("inf")), y=Y),
     r"fit: 'x' must hold finite numbers. Got 6 .* index \(7, 0\) \(inf\)"),
    ("fit", dict(x=X, y=Y, validation_data=(np.where(X > 0.99, -np.inf, X), Y)),
     r"fit: validation_data: 'x' must hold finite numbers"),
]


@pytest.mark.parametrize(("method", "arguments", "match"), BAD_INPUTS,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD_INPUTS)])
def test_bad_inputs_raise_a_data_error_naming_the_argument(method, arguments, match):
    model = small_classifier()
    with pytest.raises(DataError, match=match) as raised:
        getattr(model, method)(**arguments, verbose=0)
    assert raised.value.__cause__ is None or isinstance(raised.value.__cause__, DataError)


def test_a_bad_generator_batch_raises_a_data_error():
    def batches():
        yield X[:8], Y[:8]
        yield X[:8, :5], Y[:8]
    with pytest.raises(DataError, match=r"generator's batches must share one sample shape for "
                                        r"'x'. Got samples of shapes \[\(5,\), \(6,\)\]"):
        small_classifier().fit(batches(), steps_per_epoch=2, verbose=0)

    def strings():
        while True:
            yield X[:8], np.array(["a"] * 8)
    with pytest.raises(DataError, match=r"fit: generator batch 0: 'y'.*dtype <U1"):
        small_classifier().fit(strings(), steps_per_epoch=2, verbose=0)


def test_a_one_element_list_is_the_models_one_input_and_a_weight_column_is_taken():
    a, b = small_classifier(), small_classifier()
    weights = np.linspace(0.1, 2.0, 40)
    a.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0, sample_weight=weights)
    b.fit([X], Y, epochs=1, batch_size=8, shuffle=False, verbose=0,
          sample_weight=weights[:, None], validation_data=([X[:8]], Y[:8]))
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.predict([X], verbose=0), b.predict(X, verbose=0))
    assert a.evaluate([X], Y, sample_weight=weights[:, None], verbose=0) == \
        a.evaluate(X, Y, sample_weight=weights, verbose=0)


@pytest.mark.parametrize("fraction", ["0.2", True, [0.2], 1.0, -0.1])
def test_validation_split_of_another_type_is_refused_by_name(fraction):
    with pytest.raises(ConfigError, match=r"'validation_split' must be a float in \[0, 1\)"):
        small_classifier().fit(X, Y, epochs=1, verbose=0, validation_split=fraction)


def test_automatic_layer_names_count_unnamed_layers_only_as_a_fresh_keras_session():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="hidden"),
                              keras.layers.Dense(3), keras.layers.Dense(2)])
    assert [layer.name for layer in model.layers] == ["hidden", "dense", "dense_1"]
    assert model.get_layer("dense") is model.layers[1]
    with pytest.raises(ConfigError, match="unique names"):  # as Keras refuses it
        keras.Sequential([keras.Input((6,)), keras.layers.Dense(8),
                          keras.layers.Dense(3, name="dense")])


def test_input_takes_keras_batch_shape_and_refuses_it_beside_shape():
    declared = keras.Input(batch_shape=(None, 6))
    assert declared.shape == (None, 6) and declared.sample_shape == (6,)
    assert keras.Input(batch_shape=(32, 4, 4, 2)).shape == (32, 4, 4, 2)
    model = keras.Sequential([keras.Input(batch_shape=(None, 6)), Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    assert model.predict(X[:5], verbose=0).shape == (5, 3)
    with pytest.raises(ConfigError, match="'shape' or 'batch_shape', not both"):
        keras.Input(shape=(6,), batch_shape=(None, 6))
    with pytest.raises(ConfigError, match="'batch_shape' must be a tuple with the batch size"):
        keras.Input(batch_shape=(None,))


@pytest.mark.parametrize("x", [
    np.full((40, 6), 3e38, dtype=np.float32),  # finite, but their sum overflows float32
    np.asfortranarray(np.full((40, 6), -6e4, dtype=np.float16)),
    torch.full((40, 6), 3e38),
    np.full((40, 6), 1.5e308),
], ids=["float32-overflowing-sum", "float16-fortran", "tensor-overflowing-sum", "float64"])
def test_large_finite_inputs_are_not_taken_for_infinite(x):
    from reglab.models.fit_data import refuse_non_finite
    refuse_non_finite("fit", "x", x)  # the fast check's overflow falls back to the full one
    bad = x.copy() if isinstance(x, np.ndarray) else x.clone()
    bad[5, 1] = np.nan
    with pytest.raises(DataError, match=r"fit: 'x' must hold finite numbers. Got 1 NaN or "
                                        r"infinite value\(s\), the first at index \(5, 1\)"):
        refuse_non_finite("fit", "x", bad)


def test_the_engine_s_data_check_is_fast_and_still_names_the_samples():
    # the engine's own check (studies, Population.fit) takes the sum's one pass first
    from reglab.engine import Member, Population
    from reglab.layers import Dense

    population = Population([Member([Dense(3, activation="softmax", input_shape=(6,))],
                                    "sgd", seed=0)])
    y = np.zeros(40, dtype=np.int64)
    big = np.full((40, 6), 3e38, dtype=np.float32)  # finite; the sum overflows
    population.fit(big * 0 + 1, y, epochs=1, batch_size=8)
    population.evaluate(big, y)
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = np.ones((40, 6), dtype=np.float32)
        bad[[7, 9], 2] = bad_value
        with pytest.raises(DataError, match=r"'x' must hold finite numbers. Got NaN, "
                                            r"infinite values or values beyond float32's "
                                            r"range \(±3\.4e\+38\) in 2 samples, the "
                                            r"first at index 7"):
            population.fit(bad, y, epochs=1, batch_size=8)
