"""Each code block of the slides (../shared/seed/), with `keras` replaced by `reglab`.

The slides use X_train/X_val/y_* without defining them; small synthetic data of the
slides' shapes stands in (784 features, 10 classes), and a compile call precedes fit as
the slides assume.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

RNG = np.random.default_rng(0)
X_train = RNG.random((192, 784)).astype("float32")
y_train = RNG.integers(0, 10, 192)
X_val = RNG.random((64, 784)).astype("float32")
y_val = RNG.integers(0, 10, 64)


def compile_and_fit(model, **fit_args):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(X_train, y_train, epochs=2, verbose=0, **fit_args)


def test_slide_2_l1():
    from reglab.layers import Dense
    from reglab.models import Sequential
    from reglab.regularizers import l1

    model = Sequential()
    model.add(Dense(64, activation='relu', kernel_regularizer=l1(0.01), input_shape=(784,)))
    model.add(Dense(10, activation='softmax', kernel_regularizer=l1(0.01)))

    history = compile_and_fit(model)
    kernels = [w for w in model.get_weights() if w.ndim == 2]
    penalty = 0.01 * sum(float(np.abs(k.astype(np.float64)).sum()) for k in kernels)
    probs = model.predict(X_train, verbose=0).astype(np.float64)
    data = -np.log(np.clip(probs[np.arange(len(y_train)), y_train], 1e-7, 1 - 1e-7)).mean()
    logs = model.evaluate(X_train, y_train, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(data + penalty, rel=1e-5)
    assert len(history.history["loss"]) == 2
    assert history.penalties["penalty"][-1] > 0


def test_slide_3_l2():
    from reglab.layers import Dense
    from reglab.models import Sequential
    from reglab.regularizers import l2

    model = Sequential()
    model.add(Dense(64, activation='relu', kernel_regularizer=l2(0.01), input_shape=(784,)))
    model.add(Dense(10, activation='softmax', kernel_regularizer=l2(0.01)))

    compile_and_fit(model)
    kernels = [w for w in model.get_weights() if w.ndim == 2]
    expected = 0.01 * sum(float((k.astype(np.float64) ** 2).sum()) for k in kernels)
    probs = model.predict(X_train, verbose=0).astype(np.float64)
    data = -np.log(np.clip(probs[np.arange(len(y_train)), y_train], 1e-7, 1 - 1e-7)).mean()
    loss = model.evaluate(X_train, y_train, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(data + expected, rel=1e-5)


def test_slide_4_l1_l2_added_to_the_previous_model():
    from reglab.layers import Dense
    from reglab.models import Sequential
    from reglab.regularizers import l2

    model = Sequential()
    model.add(Dense(64, activation='relu', kernel_regularizer=l2(0.01), input_shape=(784,)))
    model.add(Dense(10, activation='softmax', kernel_regularizer=l2(0.01)))

    # Example: Using both L1 and L2 regularization
    from reglab.regularizers import l1_l2

    model.add(Dense(64, activation='relu', kernel_regularizer=l1_l2(l1=0.01, l2=0.01), input_shape=(784,)))

    # As in Keras, input_shape on a later layer is ignored: it takes the 10 outputs.
    assert [w.shape for w in model.get_weights()][-2:] == [(10, 64), (64,)]
    model.compile(optimizer="adam", loss="mse")
    model.fit(X_train, np.zeros((192, 64)), epochs=1, verbose=0)


def test_slide_5_early_stopping():
    from reglab.layers import Dense
    from reglab.models import Sequential

    model = Sequential([Dense(64, activation="relu", input_shape=(784,)),
                        Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    from reglab.callbacks import EarlyStopping

    early_stop = EarlyStopping(monitor='val_loss', patience=5)
    history = model.fit(X_train, y_train, validation_data=(X_val, y_val), callbacks=[early_stop],
                        verbose=0)

    assert list(history.history) == ["loss", "val_loss"]
    assert early_stop.stopped_epoch == 0


def test_slide_6_dropout():
    from reglab.layers import Dense, Dropout
    from reglab.models import Sequential

    model = Sequential()
    model.add(Dense(64, activation='relu', input_shape=(784,)))
    model.add(Dropout(0.5))
    model.add(Dense(10, activation='softmax'))

    compile_and_fit(model)
    # Inference is deterministic (no dropout), training is not.
    np.testing.assert_array_equal(model.predict(X_val, verbose=0), model.predict(X_val, verbose=0))


def test_slide_8_batch_normalization():
    from reglab.layers import BatchNormalization, Dense
    from reglab.models import Sequential

    model = Sequential()
    model.add(Dense(64, activation='relu', input_shape=(784,)))
    model.add(BatchNormalization())
    model.add(Dense(10, activation='softmax'))

    compile_and_fit(model)
    gamma, beta, moving_mean, moving_variance = model.layers[1].get_weights()
    assert gamma.shape == beta.shape == moving_mean.shape == moving_variance.shape == (64,)
    assert np.abs(moving_mean).sum() > 0  # the moving statistics moved


def test_slide_9_combined():
    from reglab.callbacks import EarlyStopping
    from reglab.layers import Dense, Dropout
    from reglab.models import Sequential
    from reglab.regularizers import l2

    # Example: Combining L2 regularization, dropout, and early stopping
    model = Sequential()
    model.add(Dense(64, activation='relu', kernel_regularizer=l2(0.01), input_shape=(784,)))
    model.add(Dropout(0.5))
    model.add(Dense(10, activation='softmax', kernel_regularizer=l2(0.01)))

    early_stop = EarlyStopping(monitor='val_loss', patience=5)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X_train, y_train, validation_data=(X_val, y_val), callbacks=[early_stop], verbose=0)


def test_import_reglab_as_keras():
    import reglab as keras

    model = keras.Sequential([keras.Input(shape=(784,)),
                              keras.layers.Dense(64, activation="relu",
                                                 kernel_regularizer=keras.regularizers.L2(0.01)),
                              keras.layers.Dropout(0.5),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(X_train, y_train, batch_size=64, epochs=1, validation_split=0.25,
                        callbacks=[keras.callbacks.EarlyStopping(patience=1)], verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_slide_7_data_augmentation():
    from reglab.layers import Dense, Flatten
    from reglab.models import Sequential

    X_train = RNG.random((96, 28, 28, 1)).astype("float32")  # images, as the slide needs
    y_train = RNG.integers(0, 10, 96)
    model = Sequential([Flatten(input_shape=(28, 28, 1)), Dense(64, activation="relu"),
                        Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    from reglab.preprocessing.image import ImageDataGenerator

    datagen = ImageDataGenerator(
        rotation_range=20,
        width_shift_range=0.2,
        height_shift_range=0.2,
        horizontal_flip=True
    )

    train_generator = datagen.flow(X_train, y_train, batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # warned once per process
        history = model.fit_generator(train_generator, epochs=10, verbose=0)

    assert len(history.history["loss"]) == 10
    assert np.isfinite(history.history["loss"]).all()


def test_slide_7_flat_images_get_a_reshape_hint():
    from reglab.errors import DataError
    from reglab.preprocessing.image import ImageDataGenerator

    with pytest.raises(DataError, match=r"reshape\(-1, 28, 28, 1\)"):
        ImageDataGenerator(rotation_range=20).flow(X_train, y_train, batch_size=32)


def test_augmentation_changes_training_but_not_the_data():
    """fit consumes a flow iterator on tensors: the same model with and without
    augmentation trains differently, and the generator's arrays stay untouched."""
    from reglab.layers import Dense, Flatten
    from reglab.models import Sequential
    from reglab.preprocessing.image import ImageDataGenerator

    images = RNG.random((64, 8, 8, 1)).astype("float32")
    labels = RNG.integers(0, 3, 64)
    copy = images.copy()
    results = []
    for generator in (ImageDataGenerator(), ImageDataGenerator(rotation_range=30)):
        model = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(3, activation="softmax")],
                           seed=0)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(generator.flow(images, labels, batch_size=16, shuffle=False), epochs=1,
                  verbose=0)
        results.append(model.get_weights()[0])
    assert not np.allclose(results[0], results[1])
    np.testing.assert_array_equal(images, copy)
