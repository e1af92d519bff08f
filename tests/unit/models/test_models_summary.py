"""``Sequential.summary()``: Keras 3's table, with parameter counts checked against their closed
forms and the rows against what Keras itself prints for the same model."""

from __future__ import annotations

import math

import numpy as np
import pytest

import reglab as keras
from reglab import layers


def summary_of(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


def rows(text: str) -> list[tuple[str, str, str]]:
    """The table's body rows as (layer (type), output shape, param #), a row's wrapped
    lines joined (a long name goes on over lines, as in Keras's table)."""
    found, row = [], None
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.split("│")[1:4]]
            row = cells if row is None else [" ".join(filter(None, pair))
                                             for pair in zip(row, cells)]
        elif row is not None:
            found.append(tuple(row))
            row = None
    return found


def totals(text: str) -> dict[str, tuple[int, str]]:
    out = {}
    for line in text.splitlines():
        for kind in ("Total", "Trainable", "Non-trainable", "Optimizer"):
            prefix = f" {kind} params: "
            if line.startswith(prefix):
                count, size = line[len(prefix):].split(" ", 1)
                out[kind] = (int(count.replace(",", "")), size)
    return out


def size(count: int) -> str:
    """Keras's readable size of ``count`` float32 weights: bytes, scaled by 1024."""
    value = 4.0 * count
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"({value:.2f} {unit})"
        value /= 1024
    return f"({value:.2f} TB)"


def dense(inputs: int, units: int, bias: bool = True) -> int:
    return inputs * units + (units if bias else 0)


def conv2d(kernel: tuple[int, int], channels: int, filters: int) -> int:
    return kernel[0] * kernel[1] * channels * filters + filters


def test_the_keras_mnist_convnet_prints_keras_s_rows_and_totals():
    """keras.io's "Simple MNIST convnet" example, whose summary (Keras 3) reads:

        conv2d (Conv2D)                 (None, 26, 26, 32)         320
        max_pooling2d (MaxPooling2D)    (None, 13, 13, 32)           0
        conv2d_1 (Conv2D)               (None, 11, 11, 64)      18,496
        max_pooling2d_1 (MaxPooling2D)  (None, 5, 5, 64)             0
        flatten (Flatten)               (None, 1600)                 0
        dropout (Dropout)               (None, 1600)                 0
        dense (Dense)                   (None, 10)              16,010
        Total params: 34,826 (136.04 KB)
        Trainable params: 34,826 (136.04 KB)
        Non-trainable params: 0 (0.00 B)
    """
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    text = summary_of(model)
    assert text.splitlines()[0] == 'Model: "sequential"'
    header = text.splitlines()[2]
    assert [c.strip() for c in header.split("┃")[1:4]] == ["Layer (type)", "Output Shape",
                                                         "Param #"]
    # the closed forms: (kh * kw * channels + 1) * filters, (inputs + 1) * units
    first, second = conv2d((3, 3), 1, 32), conv2d((3, 3), 32, 64)
    flat = 5 * 5 * 64
    last = dense(flat, 10)
    assert rows(text) == [
        ("conv2d (Conv2D)", "(None, 26, 26, 32)", f"{first:,}"),
        ("max_pooling2d (MaxPooling2D)", "(None, 13, 13, 32)", "0"),
        ("conv2d_1 (Conv2D)", "(None, 11, 11, 64)", f"{second:,}"),
        ("max_pooling2d_1 (MaxPooling2D)", "(None, 5, 5, 64)", "0"),
        ("flatten (Flatten)", f"(None, {flat})", "0"),
        ("dropout (Dropout)", "(None, 1600)", "0"),
        ("dense (Dense)", "(None, 10)", f"{last:,}"),
    ]
    assert (first, second, last) == (320, 18_496, 16_010)  # Keras's numbers
    total = first + second + last
    assert total == 34_826
    assert totals(text) == {"Total": (total, "(136.04 KB)"),
                            "Trainable": (total, "(136.04 KB)"),
                            "Non-trainable": (0, "(0.00 B)")}
    assert model.count_params() == total
    # the numbers are right-aligned in their column, as Keras's table has them
    body = [line for line in text.splitlines() if line.startswith("│")]
    assert len({line.rindex(" │") for line in body}) == 1


def test_batch_normalization_s_moving_statistics_are_non_trainable():
    """The slides' MLP with batch normalization: gamma and beta train, the moving mean and
    variance do not (2 + 2 numbers per feature); Dropout has no parameters."""
    model = keras.Sequential()
    model.add(layers.Dense(64, activation="relu", input_shape=(784,)))
    model.add(layers.BatchNormalization())
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(10, activation="softmax"))
    text = summary_of(model)
    first, normalization, last = dense(784, 64), 4 * 64, dense(64, 10)
    assert rows(text) == [
        ("dense (Dense)", "(None, 64)", f"{first:,}"),
        ("batch_normalization (BatchNormalization)", "(None, 64)", f"{normalization:,}"),
        ("dropout (Dropout)", "(None, 64)", "0"),
        ("dense_1 (Dense)", "(None, 10)", f"{last:,}"),
    ]
    total, frozen = first + normalization + last, 2 * 64
    assert totals(text) == {"Total": (total, size(total)),
                            "Trainable": (total - frozen, size(total - frozen)),
                            "Non-trainable": (frozen, size(frozen))}
    assert size(frozen) == "(512.00 B)" and size(total) == "(199.79 KB)"  # 51,146 weights


def test_strides_padding_no_bias_and_frozen_layers():
    """Output shapes from the convolution arithmetic, a kernel without bias, a batch
    normalization over channels, and a frozen layer counted as non-trainable."""
    model = keras.Sequential([
        layers.Conv2D(8, 3, strides=2, padding="same", input_shape=(15, 17, 3)),
        layers.Conv2D(5, (3, 2), strides=(2, 1), use_bias=False),
        layers.BatchNormalization(),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(7, trainable=False),
        layers.Dense(2, use_bias=False),
    ])
    text = summary_of(model)
    # 'same': ceil(n / stride); 'valid': floor((n - k) / stride) + 1; pooling 2x2 halves
    h1, w1 = math.ceil(15 / 2), math.ceil(17 / 2)            # 8, 9
    h2, w2 = (h1 - 3) // 2 + 1, (w1 - 2) // 1 + 1            # 3, 8
    h3, w3 = h2 // 2, w2 // 2                                # 1, 4
    flat = h3 * w3 * 5
    counts = [conv2d((3, 3), 3, 8), 3 * 2 * 8 * 5, 4 * 5, 0, 0, dense(flat, 7),
              dense(7, 2, bias=False)]
    assert rows(text) == [
        ("conv2d (Conv2D)", f"(None, {h1}, {w1}, 8)", f"{counts[0]:,}"),
        ("conv2d_1 (Conv2D)", f"(None, {h2}, {w2}, 5)", f"{counts[1]:,}"),
        ("batch_normalization (BatchNormalization)", f"(None, {h2}, {w2}, 5)", f"{counts[2]}"),
        ("max_pooling2d (MaxPooling2D)", f"(None, {h3}, {w3}, 5)", "0"),
        ("flatten (Flatten)", f"(None, {flat})", "0"),
        ("dense (Dense)", "(None, 7)", f"{counts[5]:,}"),
        ("dense_1 (Dense)", "(None, 2)", f"{counts[6]:,}"),
    ]
    total = sum(counts)
    frozen = 2 * 5 + counts[5]  # the moving statistics and the whole frozen Dense
    assert totals(text) == {"Total": (total, size(total)),
                            "Trainable": (total - frozen, size(total - frozen)),
                            "Non-trainable": (frozen, size(frozen))}


@pytest.mark.parametrize("count, shown", [(0, "(0.00 B)"), (252, "(1008.00 B)"),
                                          (256, "(1.00 KB)"),
                                          (262_144, "(1.00 MB)"), (300_000, "(1.14 MB)")])
def test_sizes_are_four_bytes_a_weight_in_binary_units(count, shown):
    model = keras.Sequential([layers.Dense(count // 4 or 1, use_bias=False,
                                           input_shape=(4 if count else 1,))])
    if count == 0:
        model.layers[0].trainable = False
        assert totals(summary_of(model))["Trainable"] == (0, shown)
    else:
        assert totals(summary_of(model))["Total"] == (count, shown)


def _trained(optimizer):
    """Dense(3) -> BatchNormalization -> Dense(1) on 4 inputs (25 trainable numbers, the
    normalization's 6 moving statistics not), compiled with ``optimizer`` and fitted once."""
    import numpy as np

    model = keras.Sequential([keras.Input((4,)), layers.Dense(3),
                              layers.BatchNormalization(), layers.Dense(1)])
    model.compile(optimizer, "mse")
    before = totals(summary_of(model))
    rng = np.random.default_rng(0)
    model.fit(rng.random((8, 4)), rng.random(8), verbose=0)
    return before, totals(summary_of(model))


TRAINABLE = dense(4, 3) + 2 * 3 + dense(3, 1)


@pytest.mark.parametrize("optimizer, slots, scalars", [
    # Keras 3.15 on torch prints these counts for the same model (iterations + the
    # learning rate + slots per trainable number; Nadam's running product; no rate
    # variable under a schedule; SGD without momentum has no slot)
    ("sgd", 0, 2), (keras.optimizers.SGD(momentum=0.9), 1, 2), ("adam", 2, 2),
    (keras.optimizers.Adam(amsgrad=True), 3, 2), ("rmsprop", 1, 2),
    (keras.optimizers.RMSprop(momentum=0.9, centered=True), 3, 2), ("adagrad", 1, 2),
    ("adadelta", 2, 2), ("adamw", 2, 2), ("nadam", 2, 3), ("adamax", 2, 2), ("lion", 1, 2),
    (keras.optimizers.Adam(use_ema=True), 3, 2),
    (keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)), 2, 1),
])
def test_the_optimizer_s_numbers_count_once_it_is_built(optimizer, slots, scalars):
    before, after = _trained(optimizer)
    assert "Optimizer" not in before  # Keras builds its optimizer in the first fit
    assert before["Total"] == (TRAINABLE + 6, size(TRAINABLE + 6))
    held = slots * TRAINABLE + scalars
    assert after["Optimizer"] == (held, size(held))
    assert after["Total"] == (TRAINABLE + 6 + held, size(TRAINABLE + 6 + held))
    assert after["Trainable"] == (TRAINABLE, size(TRAINABLE))


def test_rows_are_ruled_apart_as_keras_3_rules_them():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Dense(1)])
    lines = summary_of(model).splitlines()
    body = lines[lines.index(next(line for line in lines if line.startswith("┡"))) + 1:]
    kinds = [line[0] for line in body[:4]]
    assert kinds == ["│", "├", "│", "└"]
    assert body[1].count("┼") == 2 and len(body[1]) == len(body[0])


@pytest.mark.parametrize("call, built", [
    # Keras 3 builds the optimizer wherever it builds the model's compiled state
    (lambda m, x, y: m.evaluate(x, y, verbose=0), True),
    (lambda m, x, y: m.test_on_batch(x, y), True),
    (lambda m, x, y: m.train_on_batch(x, y), True),
    (lambda m, x, y: m.fit(x, y, epochs=0, verbose=0), True),
    (lambda m, x, y: m.predict(x, verbose=0), False),
])
def test_the_optimizer_is_built_where_keras_builds_it(call, built):
    import numpy as np

    model = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Dense(1)])
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    call(model, rng.random((8, 4)), rng.random(8))
    trainable = dense(4, 3) + dense(3, 1)
    expected = 2 * trainable + 2 if built else None
    assert totals(summary_of(model)).get("Optimizer", (None,))[0] == expected
    assert model.optimizer.built is built


def test_a_model_loaded_compiled_has_its_optimizer_built(tmp_path):
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Dense(1)])
    model.compile(keras.optimizers.SGD(momentum=0.5), "mse")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    held = dense(4, 3) + dense(3, 1) + 2
    assert totals(summary_of(loaded))["Optimizer"] == (held, size(held))
    # a model frozen whole still holds its optimizer's step count and rate
    loaded.trainable = False
    loaded.compile("adam", "mse")
    assert "Optimizer" not in totals(summary_of(loaded))  # a new optimizer: not built
    loaded.fit(np.ones((4, 4)), np.ones(4), verbose=0)
    assert totals(summary_of(loaded))["Optimizer"] == (2, size(2))


def test_a_fit_refused_for_its_data_leaves_the_optimizer_unbuilt():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Dense(1)])
    model.compile("adam", "mse")
    from reglab.errors import DataError

    with pytest.raises(DataError):
        model.fit(np.ones((8, 5)), np.ones(8), verbose=0)  # five features for four inputs
    assert not model.optimizer.built and "Optimizer" not in totals(summary_of(model))


def test_a_callback_raising_before_the_first_step_finds_the_optimizer_built():
    """Keras 3's fit builds the optimizer once the data passed, before it calls any callback
    (checked in Keras 3.15: a callback raising in on_train_begin leaves it built)."""
    from reglab.callbacks import LambdaCallback

    def refuse(logs):
        raise RuntimeError("stop before training")
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Dense(1)])
    model.compile("adam", "mse")
    with pytest.raises(RuntimeError, match="stop before training"):
        model.fit(np.ones((8, 4)), np.ones(8), verbose=0,
                  callbacks=[LambdaCallback(on_train_begin=refuse)])
    assert model.optimizer.built and "Optimizer" in totals(summary_of(model))


@pytest.mark.parametrize("name", ["adafactor", "lamb", "ftrl", "loss_scaled_adafactor"])
def test_the_optimizer_s_numbers_are_keras_s_count_of_its_variables(name):
    """Adafactor's slots are not the weights' shapes (a kernel's row and column averages, a
    scalar in their place for a vector): the count is of Keras's own variables."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    real = pytest.importorskip("keras")
    if real.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
        pytest.skip("the comparison runs Keras on its torch backend")
    reference = real.Sequential([real.Input((4,)), real.layers.Dense(3),
                                 real.layers.BatchNormalization(), real.layers.Dense(1)])
    def make(api):
        if name == "loss_scaled_adafactor":
            return api.optimizers.LossScaleOptimizer(api.optimizers.Adafactor())
        return getattr(api.optimizers, {"adafactor": "Adafactor", "lamb": "Lamb",
                                        "ftrl": "Ftrl"}[name])()
    reference.compile(make(real), "mse")
    reference.optimizer.build(reference.trainable_variables)
    held = sum(math.prod(v.shape) for v in reference.optimizer.variables)
    assert _trained(make(keras))[1]["Optimizer"] == (held, size(held))


def test_keras_s_layout_arguments_are_taken_and_the_others_refused_by_name():
    """summary(line_length=100) had been a TypeError; Keras's layout arguments are taken
    (the table the same), show_trainable and layer_range refused by name."""
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Dense(1)])
    plain = summary_of(model)
    lines = []
    model.summary(line_length=100, positions=[0.4, 0.7, 1.0], print_fn=lines.append,
                  expand_nested=True)
    assert "\n".join(lines) == plain
    from reglab.errors import ConfigError

    with pytest.raises(ConfigError, match="summary: 'show_trainable' is not supported yet"):
        model.summary(show_trainable=True)
    with pytest.raises(ConfigError, match="summary: 'layer_range' is not supported yet"):
        model.summary(layer_range=["dense", "dense_1"])
    with pytest.raises(ConfigError, match="summary: 'line_length' must be a positive int"):
        model.summary(line_length=0)


def test_the_table_is_keras_s_character_for_character_long_names_wrapped():
    """Keras's table keeps its columns' widths and wraps a cell over lines at its spaces (a
    word longer than the column cut short with '…'): the slides' BatchNormalization row
    takes two lines; a functional model has its own four columns (it had been widened to
    the longest name)."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    real_keras = pytest.importorskip("keras")

    def sequential(api):
        return api.Sequential([
            api.Input((5,)), api.layers.Dense(4), api.layers.BatchNormalization(),
            api.layers.Dense(3, name="a_very_long_layer_name_that_exceeds_the_column_width"),
            api.layers.Dense(2, name="short name with spaces in it that is long enough")],
            name="net")

    def functional(api):
        x = api.Input((5,), name="the_input_layer_with_a_long_name")
        a = api.layers.Dense(4, name="first_dense_layer_long")(x)
        b = api.layers.Dense(4, name="second_dense_layer_long")(x)
        return api.Model(x, api.layers.Add(name="add")([a, b]), name="f")

    def table(model):
        lines = []
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        return [row.rstrip() for line in lines for row in line.splitlines()
                if row[:1] in "┏┃┡│├└"]
    for make in (sequential, functional):
        real_keras.backend.clear_session()  # Keras counts names over its session
        ours, theirs = table(make(keras)), table(make(real_keras))
        assert ours == theirs, "\n".join(ours + theirs)
