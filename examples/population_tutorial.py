"""The slides' regularization techniques on Fashion-MNIST, trained as populations.

Each technique is one member per seed; members of one structure train together
(penalties, dropout rates and early stopping differ in values only), and batch
normalization and data augmentation get populations of their own. Prints test
accuracy and generalization gap (train - test accuracy) per technique.

    python examples/population_tutorial.py [--epochs 10] [--seeds 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reglab.augment import AffineSpec
from reglab.datasets import fashion_mnist
from reglab.engine import EarlyStoppingRule, Member, Population
from reglab.layers import BatchNormalization, Dense, Dropout, Flatten, Input
from reglab.regularizers import l1, l1_l2, l2


def dense_model(reg=None, rate=0.0):
    return [Dense(64, activation="relu", kernel_regularizer=reg, input_shape=(784,)),
            Dropout(rate), Dense(10, activation="softmax", kernel_regularizer=reg)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    (x, y), (x_test, y_test) = fashion_mnist.load_data()
    x = x.reshape(-1, 784).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
    # Keras's validation_split=1/6: the last 10,000 training samples, taken before shuffling.
    x_train, y_train, x_val, y_val = x[:50000], y[:50000], x[50000:], y[50000:]
    stop = EarlyStoppingRule(monitor="val_loss", patience=5)
    seeds = range(args.seeds)

    techniques = {
        "baseline": dict(), "l1(0.01)": dict(reg=l1(0.01)), "l2(0.01)": dict(reg=l2(0.01)),
        "l1_l2(0.01, 0.01)": dict(reg=l1_l2(0.01, 0.01)), "early stopping": dict(es=stop),
        "dropout(0.5)": dict(rate=0.5), "l2 + dropout + early stopping":
            dict(reg=l2(0.01), rate=0.5, es=stop),
    }
    populations = [
        ("dense", [Member(dense_model(t.get("reg"), t.get("rate", 0.0)), "adam", seed,
                          t.get("es"), name=name) for name, t in techniques.items()
                   for seed in seeds], {}, (x_train, x_val, x_test)),
        ("batch norm", [Member([Dense(64, activation="relu", input_shape=(784,)),
                                BatchNormalization(), Dense(10, activation="softmax")],
                               "adam", seed, name="batch norm") for seed in seeds],
         {}, (x_train, x_val, x_test)),
        ("augmentation", [Member([Input(shape=(28, 28, 1)), Flatten(),
                                  Dense(64, activation="relu"), Dense(10, activation="softmax")],
                                 "adam", seed, name="augmentation") for seed in seeds],
         {"augment": AffineSpec(rotation_range=20, width_shift_range=0.2,
                                height_shift_range=0.2, horizontal_flip=True)},
         tuple(a.reshape(-1, 28, 28, 1) for a in (x_train, x_val, x_test))),
    ]
    rows: dict[str, list[tuple[float, float, int]]] = {}
    for label, members, options, (xt, xv, xs) in populations:
        started = time.perf_counter()
        population = Population(members)
        result = population.fit(xt, y_train, batch_size=args.batch_size, epochs=args.epochs,
                                validation_data=(xv, y_val), **options)
        test = population.evaluate(xs, y_test)
        train = population.evaluate(xt, y_train)
        print(f"population '{label}': {len(members)} members, "
              f"{time.perf_counter() - started:.1f} s")
        for member, tr, te in zip(result.members, train, test):
            rows.setdefault(member.name, []).append(
                (te["accuracy"], tr["accuracy"] - te["accuracy"], member.epochs_run))
    print(f"\n{'technique':32s} {'test accuracy':>14s} {'gap':>8s} {'epochs':>7s}")
    for name, values in sorted(rows.items(), key=lambda kv: -np.mean([v[0] for v in kv[1]])):
        acc, gap, epochs = (np.mean([v[i] for v in values]) for i in range(3))
        print(f"{name:32s} {acc:14.4f} {gap:8.4f} {epochs:7.1f}")


if __name__ == "__main__":
    main()
