"""The slides' regularization techniques on Fashion-MNIST, written with the Keras API.

Each technique is the slides' code with `keras` replaced by `reglab`, trained on the
same 50,000 images (the last 10,000 of the training set validate, as Keras's
validation_split would take them) and tested on the 10,000 test images. Prints test
accuracy and the generalization gap (train - test accuracy) per technique.

    python examples/tutorial.py [--epochs 10] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import reglab as keras
from reglab.callbacks import EarlyStopping
from reglab.datasets import fashion_mnist
from reglab.layers import BatchNormalization, Dense, Dropout, Flatten
from reglab.preprocessing.image import ImageDataGenerator
from reglab.regularizers import l1, l1_l2, l2


def dense(reg=None, dropout=None, batch_norm=False, images=False):
    """The slides' 784-64-10 network with the technique's pieces."""
    first = ([Flatten(input_shape=(28, 28, 1)), Dense(64, activation="relu", kernel_regularizer=reg)]
             if images else
             [Dense(64, activation="relu", kernel_regularizer=reg, input_shape=(784,))])
    middle = ([Dropout(dropout)] if dropout else []) + ([BatchNormalization()] if batch_norm else [])
    return keras.Sequential(first + middle +
                            [Dense(10, activation="softmax", kernel_regularizer=reg)], seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    (x, y), (x_test, y_test) = fashion_mnist.load_data()
    x = x.reshape(-1, 784).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
    X_train, y_train, X_val, y_val = x[:50000], y[:50000], x[50000:], y[50000:]

    def early_stop():
        return EarlyStopping(monitor="val_loss", patience=5)

    techniques = {
        "baseline": (dense(), {}),
        "l1(0.01)": (dense(l1(0.01)), {}),
        "l2(0.01)": (dense(l2(0.01)), {}),
        "l1_l2(0.01, 0.01)": (dense(l1_l2(l1=0.01, l2=0.01)), {}),
        "early stopping": (dense(), {"callbacks": [early_stop()]}),
        "dropout(0.5)": (dense(dropout=0.5), {}),
        "data augmentation": (dense(images=True), {"augment": True}),
        "batch normalization": (dense(batch_norm=True), {}),
        "l2 + dropout + early stopping": (dense(l2(0.01), dropout=0.5),
                                          {"callbacks": [early_stop()]}),
    }
    rows = []
    for name, (model, options) in techniques.items():
        started = time.perf_counter()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        if options.get("augment"):
            as_images = (X_train.reshape(-1, 28, 28, 1), X_val.reshape(-1, 28, 28, 1),
                         x_test.reshape(-1, 28, 28, 1))
            datagen = ImageDataGenerator(rotation_range=20, width_shift_range=0.2,
                                         height_shift_range=0.2, horizontal_flip=True)
            history = model.fit(datagen.flow(as_images[0], y_train, batch_size=args.batch_size),
                                epochs=args.epochs, validation_data=(as_images[1], y_val),
                                verbose=0)
            train_x, test_x = as_images[0], as_images[2]
        else:
            history = model.fit(X_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                                validation_data=(X_val, y_val), verbose=0,
                                callbacks=options.get("callbacks"))
            train_x, test_x = X_train, x_test
        _, test_accuracy = model.evaluate(test_x, y_test, verbose=0)
        _, train_accuracy = model.evaluate(train_x, y_train, verbose=0)
        epochs = len(history.history["loss"])
        rows.append((name, test_accuracy, train_accuracy - test_accuracy, epochs))
        print(f"{name:32s} trained {epochs:2d} epochs in {time.perf_counter() - started:5.1f} s")
    print(f"\n{'technique':32s} {'test accuracy':>14s} {'gap':>8s} {'epochs':>7s}")
    for name, accuracy, gap, epochs in sorted(rows, key=lambda row: -row[1]):
        print(f"{name:32s} {accuracy:14.4f} {gap:8.4f} {epochs:7d}")


if __name__ == "__main__":
    main()
