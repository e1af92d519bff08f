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


def cross_entropy_and_accuracy(model, x, y) -> tuple[float, float]:
    """Data cross-entropy (no penalty) and accuracy of ``model`` on ``(x, y)``, from its
    predictions, in numpy."""
    probs = model.predict(x, verbose=0).astype(np.float64)
    picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(axis=1) == y).mean())


def teacher_data(seed: int = 0, n: int = 192):
    """784 features of which the first 10 decide the class: most inputs are irrelevant."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784)).astype("float32")
    return x, (x[:, :10] @ rng.normal(size=(10, 10))).argmax(axis=1)


def compile_and_fit(model, epochs=2, **fit_args):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(X_train, y_train, epochs=epochs, verbose=0, **fit_args)


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
    target = RNG.random((192, 64)).astype("float32")
    model.compile(optimizer="adam", loss="mse")
    model.fit(X_train, target, epochs=1, verbose=0)
    # the loss is the data loss plus both penalties of the added layer, by hand in numpy
    k1, _, k2, _, k3, _ = (w.astype(np.float64) for w in model.get_weights())
    penalty = (0.01 * (k1**2).sum() + 0.01 * (k2**2).sum()
               + 0.01 * np.abs(k3).sum() + 0.01 * (k3**2).sum())
    data = ((model.predict(X_train, verbose=0).astype(np.float64) - target) ** 2).mean()
    loss = model.evaluate(X_train, target, verbose=0)
    assert loss == pytest.approx(data + penalty, rel=1e-5)
    assert 0.01 * np.abs(k3).sum() > 1e-2 * loss  # the L1 term is not negligible here


def test_slide_4_l1_drives_weights_to_zero_l2_only_shrinks_them():
    """The slide's claim: L1 gives sparse weights, L2 small but non-zero ones. Three models
    start from the same weights and see the same batches (plain SGD, where L1's subgradient
    moves a weight by a constant step and L2's by a fraction of it); they differ only in
    the penalty."""
    from reglab.layers import Dense
    from reglab.models import Sequential
    from reglab.optimizers import SGD
    from reglab.regularizers import l1, l2
    from reglab.utils import set_random_seed

    x, y = teacher_data()
    kernels = {}
    for name, penalty in (("none", None), ("l1", l1(0.01)), ("l2", l2(0.01))):
        set_random_seed(0)
        model = Sequential()
        model.add(Dense(64, activation='relu', kernel_regularizer=penalty, input_shape=(784,)))
        model.add(Dense(10, activation='softmax', kernel_regularizer=penalty))
        model.compile(optimizer=SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=30, batch_size=32, verbose=0)
        kernels[name] = model.get_weights()[0].astype(np.float64)

    def near_zero(k):
        return float(np.mean(np.abs(k) < 1e-3))

    # measured: none 1.2 %, l1 97 %, l2 1.7 % of the 784 x 64 weights below 1e-3
    assert near_zero(kernels["l1"]) > 0.8
    assert near_zero(kernels["l1"]) > 20 * near_zero(kernels["none"])
    assert near_zero(kernels["l2"]) < 0.05 and np.all(kernels["l2"] != 0)
    norm = {name: float(np.linalg.norm(k)) for name, k in kernels.items()}
    assert norm["l2"] < 0.8 * norm["none"]  # measured 7.8 against 11.1


def test_slide_5_early_stopping():
    from reglab.layers import Dense
    from reglab.models import Sequential
    from reglab.utils import set_random_seed

    def fresh_model():
        set_random_seed(0)  # the same initial weights and batches for every model here
        model = Sequential([Dense(64, activation="relu", input_shape=(784,)),
                            Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    model = fresh_model()

    from reglab.callbacks import EarlyStopping

    early_stop = EarlyStopping(monitor='val_loss', patience=5)
    history = model.fit(X_train, y_train, validation_data=(X_val, y_val), callbacks=[early_stop],
                        verbose=0)

    assert list(history.history) == ["loss", "val_loss"]
    assert early_stop.stopped_epoch == 0  # Keras's default is one epoch: nothing to stop

    # With room to overfit (the labels are random: the validation loss soon rises), early
    # stopping ends training 5 epochs after the best validation loss, long before the end.
    unstopped = fresh_model()
    full = unstopped.fit(X_train, y_train, validation_data=(X_val, y_val), epochs=100,
                         verbose=0).history["val_loss"]
    model = fresh_model()
    early_stop = EarlyStopping(monitor='val_loss', patience=5)
    val_loss = model.fit(X_train, y_train, validation_data=(X_val, y_val), epochs=100,
                         callbacks=[early_stop], verbose=0).history["val_loss"]
    best = int(np.argmin(val_loss))
    assert len(val_loss) == best + 1 + 5 < 100
    assert early_stop.stopped_epoch == len(val_loss) - 1
    assert min(val_loss[best + 1:]) >= val_loss[best]
    # the callback only watches: until it stops, training is the same as without it
    np.testing.assert_array_equal(val_loss, full[:len(val_loss)])
    # and it stopped before overfitting: the model trained to the end fits the random
    # training labels far better and the validation data far worse (measured validation
    # cross-entropy 2.38 vs 2.95, training 1.27 vs 0.02)
    stopped_train, _ = cross_entropy_and_accuracy(model, X_train, y_train)
    ended_train, _ = cross_entropy_and_accuracy(unstopped, X_train, y_train)
    stopped_val, _ = cross_entropy_and_accuracy(model, X_val, y_val)
    ended_val, _ = cross_entropy_and_accuracy(unstopped, X_val, y_val)
    assert stopped_val < ended_val - 0.3
    assert ended_train < 0.5 * stopped_train


def test_slide_6_dropout():
    from reglab.layers import Dense, Dropout
    from reglab.models import Sequential
    from reglab.utils import set_random_seed

    set_random_seed(0)
    model = Sequential()
    model.add(Dense(64, activation='relu', input_shape=(784,)))
    model.add(Dropout(0.5))
    model.add(Dense(10, activation='softmax'))

    compile_and_fit(model, epochs=20)
    # Inference is the network without dropout: no unit dropped, none rescaled (Keras's
    # inverted dropout scales by 1 / (1 - rate) in training instead), by hand in numpy.
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    logits = np.maximum(X_val @ w1 + b1, 0.0) @ w2 + b2
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(X_val, verbose=0), expected, rtol=1e-4, atol=1e-6)

    # The slide's claim: dropout prevents overfitting. The same network without it, from
    # the same weights and batches, memorizes the random training labels; with it, far less
    # (measured: training cross-entropy 0.75 against 1.60, train - validation accuracy gap
    # 0.89 against 0.63).
    set_random_seed(0)
    plain = Sequential()
    plain.add(Dense(64, activation='relu', input_shape=(784,)))
    plain.add(Dense(10, activation='softmax'))
    compile_and_fit(plain, epochs=20)
    dropout_train, dropout_train_accuracy = cross_entropy_and_accuracy(model, X_train, y_train)
    plain_train, plain_train_accuracy = cross_entropy_and_accuracy(plain, X_train, y_train)
    _, dropout_val_accuracy = cross_entropy_and_accuracy(model, X_val, y_val)
    _, plain_val_accuracy = cross_entropy_and_accuracy(plain, X_val, y_val)
    assert dropout_train > 1.5 * plain_train
    assert (dropout_train_accuracy - dropout_val_accuracy
            < plain_train_accuracy - plain_val_accuracy - 0.1)


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
    from reglab.utils import set_random_seed

    set_random_seed(0)
    # Example: Combining L2 regularization, dropout, and early stopping
    model = Sequential()
    model.add(Dense(64, activation='relu', kernel_regularizer=l2(0.01), input_shape=(784,)))
    model.add(Dropout(0.5))
    model.add(Dense(10, activation='softmax', kernel_regularizer=l2(0.01)))

    early_stop = EarlyStopping(monitor='val_loss', patience=5)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    # 100 epochs, not Keras's default of one, in which early stopping cannot act
    history = model.fit(X_train, y_train, validation_data=(X_val, y_val), epochs=100,
                        callbacks=[early_stop], verbose=0)

    # the same network without any of the three, from the same weights and batches
    set_random_seed(0)
    plain = Sequential()
    plain.add(Dense(64, activation='relu', input_shape=(784,)))
    plain.add(Dense(10, activation='softmax'))
    plain.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    plain.fit(X_train, y_train, validation_data=(X_val, y_val), epochs=100, verbose=0)

    val_loss = history.history["val_loss"]
    assert len(val_loss) == int(np.argmin(val_loss)) + 1 + 5 < 100  # early stopping acted
    # L2 (with dropout) kept the weights small: measured norm 6.3 against 13.0
    norm = np.linalg.norm(model.get_weights()[0])
    assert norm < 0.7 * np.linalg.norm(plain.get_weights()[0])
    # and together they kept the network from memorizing the random labels, to the benefit
    # of the validation data (measured cross-entropy: training 1.34 vs 0.02, validation
    # 2.46 vs 2.95)
    combined_train, _ = cross_entropy_and_accuracy(model, X_train, y_train)
    plain_train, _ = cross_entropy_and_accuracy(plain, X_train, y_train)
    combined_val, _ = cross_entropy_and_accuracy(model, X_val, y_val)
    plain_val, _ = cross_entropy_and_accuracy(plain, X_val, y_val)
    assert combined_train > 10 * plain_train
    assert combined_val < plain_val - 0.25


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
    from reglab.callbacks import LambdaCallback
    from reglab.layers import Dense, Flatten
    from reglab.models import Sequential
    from reglab.utils import set_random_seed

    # Images, as the slide needs: class 0 has a bright square left of the centre, class 1
    # right of it, on faint noise.
    rng = np.random.default_rng(1)
    y_train = rng.integers(0, 2, 96)
    X_train = rng.random((96, 28, 28, 1)).astype("float32") * 0.1
    for i, label in enumerate(y_train):
        X_train[i, 12:16, (5, 19)[label]:(9, 23)[label], 0] = 1.0

    def fresh_model():
        set_random_seed(0)
        model = Sequential([Flatten(input_shape=(28, 28, 1)), Dense(64, activation="relu"),
                            Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    model = fresh_model()

    from reglab.preprocessing.image import ImageDataGenerator

    datagen = ImageDataGenerator(
        rotation_range=20,
        width_shift_range=0.2,
        height_shift_range=0.2,
        horizontal_flip=True
    )

    train_generator = datagen.flow(X_train, y_train, batch_size=32)
    batches = []
    counter = LambdaCallback(on_train_batch_end=lambda batch, logs: batches.append(batch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # warned once per process
        history = model.fit_generator(train_generator, epochs=10, verbose=0,
                                      callbacks=[counter])
    assert len(history.history["loss"]) == 10
    assert batches == [0, 1, 2] * 10  # 96 images in batches of 32, each epoch

    # What the generator yields: the images randomly moved, turned and mirrored, the labels
    # kept. The square sits 7 pixels left or right of the centre; a shift (at most
    # 0.2 * 28 = 5.6 pixels) and a turn (at most 20 degrees) keep it on its side, so its
    # side tells whether the image was mirrored.
    def column_of_mass(images):
        weights = np.clip(images[..., 0] - 0.5, 0.0, None).sum(axis=1)  # the bright square
        return (weights * np.arange(28)).sum(axis=1) / weights.sum(axis=1)

    flow = datagen.flow(X_train, y_train, batch_size=96, shuffle=False, seed=0)
    first, labels = next(flow)
    second, again = next(flow)
    np.testing.assert_array_equal(labels, y_train)
    np.testing.assert_array_equal(again, y_train)
    assert first.shape == X_train.shape and first.dtype == np.float32
    assert all(not np.allclose(a, x) for a, x in zip(first, X_train))  # each one changed
    assert all(not np.allclose(a, b) for a, b in zip(first, second))  # anew at each pass
    original_side = column_of_mass(X_train) > 13.5
    mirrored = (column_of_mass(first) > 13.5) != original_side
    assert 0.3 < mirrored.mean() < 0.7  # horizontal_flip: half of them, at random

    # Training saw those images: with mirroring, the square's side no longer tells the
    # class, and the model trained on the generator cannot tell it either, while the same
    # model trained on the same images unaugmented learns it (measured loss 0.03 vs 0.76).
    plain = fresh_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        plain.fit_generator(ImageDataGenerator().flow(X_train, y_train, batch_size=32),
                            epochs=10, verbose=0)
    augmented_loss = model.evaluate(X_train, y_train, verbose=0, return_dict=True)["loss"]
    plain_loss = plain.evaluate(X_train, y_train, verbose=0, return_dict=True)["loss"]
    assert plain_loss < 0.2 and augmented_loss > 0.5


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
